"""``/feedback``: parse the command, resolve the name, and gather the stored checks to answer from.

No trace backend is queried: the answer comes from the checks feedbot already ran and stored
(``check.result["report"]``), so it is quick, and it is the same evidence the DM thread showed.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock, SystemClock
from feedbot.config import FeatureConfig, Settings
from feedbot.digest import answers
from feedbot.digest.blocks import Rendered
from feedbot.digest.pages import agenda_lines
from feedbot.slack.pages import PageData
from feedbot.store import acknowledgements as state
from feedbot.store import queries
from feedbot.store.models import Check, Release

HISTORY = 5
#: ``/feedback meeting``: the agenda (unless a service or feature is called that).
MEETING = "meeting"


@dataclass(frozen=True)
class Command:
    """A parsed ``/feedback`` command.

    Attributes:
        name: The service or feature asked about; None for help.
        version: The version after ``@``, if any.
        share: ``--share``: answer in the channel instead of only to the asker.
    """

    name: str | None
    version: str | None = None
    share: bool = False


def parse(text: str) -> Command:
    """Parse ``<feature|service|service@version|help> [--share]``."""
    words = text.split()
    share = "--share" in words
    names = [w for w in words if w != "--share"]
    if not names or names[0].lower() in ("help", "-h", "--help"):
        return Command(name=None, share=share)
    name, _, version = names[0].partition("@")
    return Command(name=name, version=version or None, share=share)


class FeedbackService:
    """Answers ``/feedback`` from the store.

    Args:
        sessions: session factory of the store.
        settings: for the features and services known from config.
    """

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        settings: Settings,
        clock: Clock | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock or SystemClock()

    def knows(self, command: Command) -> bool:
        """Whether the command names a service or feature feedbot knows (config or releases)."""
        with self._sessions() as session:
            return command.name in self._known(session)

    def answer(self, command: Command) -> Rendered:
        """The answer to a parsed command (not help): a report, or the names it knows."""
        if command.name == MEETING:
            with self._sessions() as session:
                named = MEETING in self._known(session)
            if not named:  # its own sessions: SQLite allows one writer transaction at a time
                return self.meeting()
        with self._sessions() as session:
            known = self._known(session)
            if command.name not in known:
                return answers.unknown(command.name or "", known, _close(command.name, known))
            feature = self._settings.features.get(command.name)
            service = feature.service if feature else command.name
            view = _view(session, service, command.version)
            if view is None:
                return answers.no_checks(service, command.version)
            return answers.feedback(
                view,
                feature_name=_name(command, feature),
                feature=feature,
                ui_url=self._settings.traces.ui_url,
            )

    def meeting(self) -> Rendered:
        """``/feedback meeting``: the agenda of the feedback meeting, now (the period of one
        cadence up to now), linking its page."""
        data = PageData(sessions=self._sessions, settings=self._settings, clock=self._clock)
        start, end = data.meeting_period()
        conf = self._settings.slack.weekly_digest
        return answers.meeting(
            agenda_lines(data.meeting_releases()),
            start=start,
            end=end,
            page=data.links.meeting(self._clock.now()),
            call=conf.meeting_link,
        )

    def _known(self, session: Session) -> list[str]:
        stored = queries.service_names(session)
        return sorted({*self._settings.services, *stored, *self._settings.features})


def _name(command: Command, feature: FeatureConfig | None) -> str | None:
    return command.name if feature is not None else None


def _close(name: str | None, known: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(name or "", known, n=3, cutoff=0.5)


def _view(session: Session, service: str, version: str | None) -> answers.View | None:
    """The newest release of ``service`` (of ``version``) with a finished check, and history."""
    for release in queries.releases_of(session, service, version):
        report = _latest_report(release)
        if report is not None:
            return answers.View(
                release_id=release.id,
                environment=release.environment,
                deployed_at=release.deployed_at,
                report=report,
                acknowledged=frozenset(state.acknowledged(session, release.id)),
                history=tuple(_history(session, service)),
            )
    return None


def _latest_report(release: Release) -> dict[str, Any] | None:
    done = [c for c in release.checks if c.state == "done" and c.result]
    if not done:
        return None
    latest = max(done, key=lambda c: c.offset_seconds)
    report = (latest.result or {}).get("report")
    return report if isinstance(report, dict) else None


def _history(session: Session, service: str) -> list[answers.Past]:
    """What the last releases of ``service`` did: version, when, the last verdict."""
    releases = queries.releases_of(session, service, limit=HISTORY)
    return [
        answers.Past(
            r.version, r.deployed_at, _verdict(r.checks), r.is_rollback, r.state == "superseded"
        )
        for r in releases
    ]


def _verdict(checks: Sequence[Check]) -> str | None:
    reports = [(c.offset_seconds, c.result) for c in checks if c.state == "done" and c.result]
    if not reports:
        return None
    verdict = max(reports, key=lambda pair: pair[0])[1].get("report", {}).get("verdict")
    return str(verdict) if verdict else None
