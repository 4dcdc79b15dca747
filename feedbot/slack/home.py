"""The App Home: each person's Home tab, built from the store and the config.

:class:`HomeService` gathers what :func:`feedbot.digest.home.home_view` draws: the releases the
person shipped lately (author or resolved recipient), each with its latest finished check's
report, and the services whose ``owners`` name them. It is used twice: by the
``app_home_opened`` listener (publish when the person opens the tab) and by the outbox sender
(publish when a check of one of their releases finished; see :mod:`feedbot.notify.outbox`).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock
from feedbot.config import Settings
from feedbot.digest.home import MAX_RELEASES, HomeRelease, OwnedService, home_view
from feedbot.digest.links import PageLinks
from feedbot.digest.text import VERDICT_WORDS
from feedbot.store import acknowledgements as state
from feedbot.store import queries
from feedbot.store.models import Release

_SAFE_URL = re.compile(r"^https?://[^\s<>|]+$")


def thread_link(channel: str, ts: str) -> str:
    """A link to a Slack message: ``https://slack.com/archives/<channel>/p<ts without dot>``.

    slack.com resolves it to the workspace the person is signed in to, the way the permalinks
    ``chat.getPermalink`` answers do; building it saves a Web API call per release.
    """
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


class HomeService:
    """Builds a person's Home tab view from the store.

    Args:
        sessions: session factory of the store.
        settings: for the services and their owners.
        clock: time source (whether a mute still runs).
    """

    def __init__(
        self, *, sessions: sessionmaker[Session], settings: Settings, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._links = PageLinks.from_settings(settings)

    def view(self, user_id: str) -> dict[str, Any]:
        """The Home tab view of ``user_id`` (a ``home`` view of at most 100 blocks)."""
        with self._sessions() as session:
            return self.render(session, user_id)

    def render(self, session: Session, user_id: str) -> dict[str, Any]:
        """:meth:`view` in the caller's session (the outbox sender's: one connection, which
        SQLite needs while the sender's transaction holds its write lock)."""
        shipped = queries.releases_shipped_by(session, user_id, limit=MAX_RELEASES + 1)
        releases = [self._release(session, r) for r in shipped]
        owned = [self._service(session, name) for name in self._owned_by(user_id)]
        meeting = self._links.meeting(self._clock.now())
        return home_view(user_id, releases, owned, meeting=meeting)

    def _owned_by(self, user_id: str) -> list[str]:
        return sorted(n for n, s in self._settings.services.items() if user_id in s.owners)

    def _release(self, session: Session, release: Release) -> HomeRelease:
        return HomeRelease(
            release_id=release.id,
            service=release.service,
            version=release.version,
            environment=release.environment,
            deployed_at=release.deployed_at,
            report=latest_report(release),
            acknowledged=frozenset(state.acknowledged(session, release.id)),
            link=_link(session, release),
            muted_until=state.muted_until(session, release.service, self._clock.now()),
            page=self._links.release(release.id, self._clock.now()),
        )

    def _service(self, session: Session, name: str) -> OwnedService:
        latest = None
        for release in queries.releases_of(session, name, limit=5):
            report = latest_report(release)
            if report is not None:
                verdict = str(report.get("verdict") or "")
                latest = f"{release.version} · {VERDICT_WORDS.get(verdict, verdict)}"
                break
        config = self._settings.services.get(name)
        return OwnedService(
            name=name,
            channel=config.channel if config is not None else None,
            latest=latest,
            muted_until=state.muted_until(session, name, self._clock.now()),
        )


def latest_report(release: Release) -> dict[str, Any] | None:
    """The report of the release's latest finished check (by offset), or None."""
    done = [c for c in release.checks if c.state == "done" and c.result]
    if not done:
        return None
    report = (max(done, key=lambda c: c.offset_seconds).result or {}).get("report")
    return report if isinstance(report, dict) else None


def _link(session: Session, release: Release) -> str | None:
    parent = queries.parent_delivery(session, release.id)
    if parent is not None and parent.state == "sent" and parent.channel and parent.ts:
        return thread_link(parent.channel, parent.ts)
    if release.url and _SAFE_URL.match(release.url) and len(release.url) <= 2000:
        return release.url
    return None
