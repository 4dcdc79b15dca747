"""``/feedback``: parse the command, resolve the name, and gather the stored checks to answer from.

No trace backend is queried: the answer comes from the checks feedbot already ran and stored
(``check.result["report"]``), so it is quick, and it is the same evidence the DM thread showed.

A name is, in this order, a feature from the config, a service, or code: a function, a file or
a route, answered from the code history (:mod:`feedbot.store.history`). A feature whose span
globs match no group of its service's newest check says so with the closest operations, and a
name that matches nothing says so with the closest known names: neither carries a verdict.
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
from feedbot.store import history, queries
from feedbot.store.models import Check, CodeKey, Release

HISTORY = 5
#: A short name many services share (``save``) is told for the 5 most recently seen of them.
MAX_KEYS = 5
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
    text: str = ""


def parse(text: str) -> Command:
    """Parse ``<feature|service|service@version|function|file|route|help> [--share]``.

    ``text`` keeps every word but ``--share`` (a route has a space: ``GET /vaults/{id}``).
    """
    words = text.split()
    share = "--share" in words
    names = [w for w in words if w != "--share"]
    if not names or names[0].lower() in ("help", "-h", "--help"):
        return Command(name=None, share=share)
    name, _, version = names[0].partition("@")
    return Command(name=name, version=version or None, share=share, text=" ".join(names))


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
        """Whether the command gets an answer: a known service, a feature that matches spans,
        or code the history knows (not "I don't know" nor "matches nothing")."""
        return self.reply(command)[1]

    def answer(self, command: Command) -> Rendered:
        """The answer to a parsed command (not help): a report, or the names it knows."""
        return self.reply(command)[0]

    def reply(self, command: Command) -> tuple[Rendered, bool]:
        """The answer to a parsed command (not help), and whether it is one (see :meth:`knows`)."""
        if command.name == MEETING:
            with self._sessions() as session:
                named = MEETING in self._known(session)
            if not named:  # its own sessions: SQLite allows one writer transaction at a time
                return self.meeting(), True
        with self._sessions() as session:
            known = self._known(session)
            if command.name not in known:
                return self._code(session, command, known)
            feature = self._settings.features.get(command.name)
            service = feature.service if feature else command.name
            view = _view(session, service, command.version)
            if view is None:
                return answers.no_checks(service, command.version), True
            if feature is not None and not answers.narrow(view.report, feature).get("groups"):
                names = [str(g["span"]) for g in view.report.get("groups", [])]
                close = _closest_spans(feature.spans, names)
                return answers.feature_matches_nothing(command.name or "", feature, close), False
            rendered = answers.feedback(
                view,
                feature_name=_name(command, feature),
                feature=feature,
                ui_url=self._settings.traces.ui_url,
            )
            return rendered, True

    def _code(
        self, session: Session, command: Command, known: Sequence[str]
    ) -> tuple[Rendered, bool]:
        """A function, file or route from the code history; else "I don't know" and the
        closest names, services and features first."""
        typed = command.text or command.name or ""
        keys = history.find(session, typed)
        if not keys:
            close = [*_close(command.name, known), *history.closest(session, typed)]
            return answers.unknown(typed, known, list(dict.fromkeys(close))[:5]), False
        # One kind is told, so a function and the span it opens are not counted twice.
        kind = next(k for k in ("function", "operation", "file") if any(x.kind == k for x in keys))
        same = sorted((k for k in keys if k.kind == kind), key=lambda k: k.last_seen, reverse=True)
        chosen = same[:MAX_KEYS]
        also = [f"{k.kind} {k.name}" for k in keys if k.kind != kind]
        if len(same) > MAX_KEYS:
            also.append(f"{len(same) - MAX_KEYS} more {kind}s (give the qualified name)")
        summary = history.summarise(
            session, typed, chosen, now=self._clock.now(), main_environment=self._main(chosen)
        )
        return answers.code_feedback(summary, also), True

    def _main(self, keys: Sequence[CodeKey]) -> str:
        """The environment a key's numbers are told for: its service's, else production."""
        for key in keys:
            conf = self._settings.services.get(key.service)
            if conf is not None and conf.environment:
                return conf.environment
        return "production"

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


def _closest_spans(patterns: Sequence[str], names: Sequence[str]) -> list[str]:
    """The span groups nearest to a feature's globs (wildcards left out), for "did you mean"."""
    close: list[str] = []
    for pattern in patterns:
        bare = pattern.replace("*", "").replace("?", "")
        for name in difflib.get_close_matches(bare, names, n=3, cutoff=0.3):
            if name not in close:
                close.append(name)
    return close[:5] or list(names[:5])


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
