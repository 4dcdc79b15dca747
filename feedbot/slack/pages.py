"""What the release, service and meeting pages show, gathered from the store and the config.

:class:`PageData` reads a release (its checks, charts, acknowledgements and thread), a service's
releases, or the releases that reached production in a meeting's period, and hands them to the
pure renderings of :mod:`feedbot.digest.pages`. The web routes (:mod:`feedbot.web.pages`) serve
the pages; ``/feedback meeting`` (:mod:`feedbot.slack.feedback`) tells the agenda in Slack.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock
from feedbot.config import Settings
from feedbot.digest import pages
from feedbot.digest.links import PageLinks
from feedbot.durations import format_duration
from feedbot.slack.home import _SAFE_URL, latest_report, thread_link
from feedbot.store import acknowledgements as state
from feedbot.store import queries
from feedbot.store.models import Release

#: Releases a service page lists, newest first.
MAX_SERVICE_RELEASES = 100
#: Releases a meeting page lists.
MAX_MEETING_RELEASES = 300


class PageData:
    """Gathers and renders the pages.

    Args:
        sessions: session factory of the store.
        settings: services (their environments), ``traces.ui_url``, ``slack.weekly_digest``.
        clock: time source (the meeting's period, the links' expiry).
    """

    def __init__(
        self, *, sessions: sessionmaker[Session], settings: Settings, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self.links = PageLinks.from_settings(settings)

    def release(self, release_id: int) -> str | None:
        """The release page, or None when there is no such release."""
        now = self._clock.now()
        with self._sessions() as session:
            release = queries.release_by_id(session, release_id)
            if release is None:
                return None
            checks = [
                pages.CheckRow(
                    label=f"+{format_duration(timedelta(seconds=c.offset_seconds))}",
                    due_at=c.due_at,
                    state=c.state,
                    verdict=str(_report_of(c.result).get("verdict") or "") or None,
                    headline=_headline(c.result),
                    error=c.last_error if c.state == "failed" else None,
                )
                for c in sorted(release.checks, key=lambda c: c.offset_seconds)
            ]
            charts = [pages.Chart(t, png) for t, png in queries.release_charts(session, release.id)]
            return pages.release_page(
                self._facts(session, release),
                latest_report(release),
                checks=checks,
                charts=charts,
                acknowledged=frozenset(state.acknowledged(session, release.id)),
                ui_url=self._settings.traces.ui_url,
                service_link=self.links.service(release.service, now),
                now=now,
            )

    def service(self, name: str) -> str | None:
        """The service page, or None when the service never released."""
        now = self._clock.now()
        with self._sessions() as session:
            rows = list(queries.releases_of(session, name, limit=MAX_SERVICE_RELEASES))
            if not rows:
                return None
            listed = [self._listed(session, r, now) for r in rows]
        meeting = self._settings.slack.weekly_digest.meeting_link
        return pages.service_page(name, listed, now=now, meeting_link=meeting)

    def meeting_period(self, until: datetime | None = None) -> tuple[datetime, datetime]:
        """The period a meeting covers: one cadence (a week, or two) up to ``until`` (now)."""
        end = until or self._clock.now()
        return end - self._settings.slack.weekly_digest.period, end

    def meeting_releases(self, until: datetime | None = None) -> list[pages.PageRelease]:
        """What reached production in the meeting's period, oldest first."""
        start, end = self.meeting_period(until)
        now = self._clock.now()
        with self._sessions() as session:
            rows = queries.releases_in(session, start, end)
            return [
                self._listed(session, r, now)
                for r in rows[:MAX_MEETING_RELEASES]
                if r.environment == self._production(r.service)
            ]

    def meeting(self, until: datetime | None = None) -> str:
        """The meeting page of the period up to ``until`` (now)."""
        start, end = self.meeting_period(until)
        conf = self._settings.slack.weekly_digest
        frame = pages.Meeting(start=start, end=end, cadence=conf.cadence, link=conf.meeting_link)
        return pages.meeting_page(frame, self.meeting_releases(until), now=self._clock.now())

    def _production(self, service: str) -> str:
        config = self._settings.services.get(service)
        return (config.environment if config else None) or "production"

    def _listed(self, session: Session, release: Release, now: datetime) -> pages.PageRelease:
        return pages.PageRelease(
            facts=self._facts(session, release),
            report=latest_report(release),
            acknowledged=frozenset(state.acknowledged(session, release.id)),
            link=self.links.release(release.id, now),
        )

    def _facts(self, session: Session, release: Release) -> pages.ReleaseFacts:
        parent = queries.parent_delivery(session, release.id)
        thread = None
        if parent is not None and parent.state == "sent" and parent.channel and parent.ts:
            thread = thread_link(parent.channel, parent.ts)
        url = release.url if release.url and _SAFE_URL.match(release.url) else None
        author = release.author_name or release.author_github or release.author_email
        return pages.ReleaseFacts(
            release_id=release.id,
            service=release.service,
            version=release.version,
            environment=release.environment,
            deployed_at=release.deployed_at,
            commit=release.commit or "",
            title=release.title,
            url=url,
            author=author,
            features=tuple(str(f) for f in release.features or ()),
            rollback=release.is_rollback,
            thread=thread,
        )


def _report_of(result: dict[str, object] | None) -> dict[str, object]:
    report = (result or {}).get("report")
    return report if isinstance(report, dict) else {}


def _headline(result: dict[str, object] | None) -> str | None:
    from feedbot.digest import story

    report = _report_of(result)
    return story.tell(report).headline if report else None
