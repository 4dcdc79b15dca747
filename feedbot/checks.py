"""Running due checks: claim → query the trace backend → render → queue the messages.

A check's result and the messages it causes are committed in one transaction, and only by the
replica that still holds the check's lease; messages leave through the outbox, so a crash at any
point neither loses a check nor sends anything twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from feedbot import failpoints
from feedbot.analysis.compare import Analysis, analyse
from feedbot.analysis.policy import DetectionPolicy
from feedbot.analysis.report import ReportContext, to_json, to_text
from feedbot.backends.base import SpanQuery, TraceBackend
from feedbot.clock import Clock
from feedbot.config import Settings, format_duration
from feedbot.digest import text
from feedbot.errors import BackendError
from feedbot.notify.outbox import enqueue
from feedbot.releases.event import Change as ChangeEvent
from feedbot.store import queries
from feedbot.store.models import Check, Release

log = logging.getLogger(__name__)


class CheckRunner:
    """Claims and runs due checks for one replica.

    Args:
        sessions: session factory of the store.
        backend: the trace backend to query.
        settings: validated configuration (check offsets, windows, retries).
        clock: time source.
        worker: this replica's name, recorded on claimed checks.
    """

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        backend: TraceBackend,
        settings: Settings,
        clock: Clock,
        worker: str,
        policy: DetectionPolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._settings = settings
        self._policy = policy or DetectionPolicy()
        self._clock = clock
        self._worker = worker

    def run_due(self, limit: int = 10) -> int:
        """Claim and run every due check, ``limit`` at a time; returns how many ran."""
        ran = 0
        while True:
            with self._sessions() as session:
                ids = queries.claim_due_checks(
                    session,
                    now=self._clock.now(),
                    worker=self._worker,
                    lease=self._settings.checks.lease,
                    limit=limit,
                )
            for check_id in ids:
                self.run_one(check_id)
            ran += len(ids)
            if len(ids) < limit:
                return ran

    def run_one(self, check_id: int) -> None:
        """Run one claimed check to its end: done, retried later, or failed with a note."""
        with self._sessions() as session:
            check = session.get(Check, check_id)
            if check is None or check.state != "running" or check.claimed_by != self._worker:
                return
            failpoints.hit("check-claimed")
            try:
                result = self._fetch(session, check.release, self._clock.now())
            except BackendError as exc:
                self._failed(session, check, str(exc))
                return
            except Exception as exc:  # a bug must not stop the other checks
                log.exception("check %s crashed", check_id)
                self._failed(session, check, f"internal error: {type(exc).__name__}: {exc}")
                return
            self._finish(session, check, result)

    def _fetch(self, session: Session, release: Release, now: datetime) -> Finished:
        """Query both versions, analyse, and render; nothing is written here."""
        previous = (
            session.get(Release, release.previous_release_id)
            if release.previous_release_id
            else None
        )
        end = max(now, release.deployed_at)
        candidate_window = (release.deployed_at, end)
        cand = self._backend.collect(self._query(release, release.version, candidate_window))
        base, baseline_window = None, None
        if previous is not None:
            # Versions are told apart by service.version, never by a time cut, so the baseline
            # window runs up to now: during a rolling deploy both versions serve at once.
            baseline_window = (release.deployed_at - self._settings.checks.baseline_window, end)
            base = self._backend.collect(self._query(release, previous.version, baseline_window))
        look, looks, held = _look_of(session, release, now)
        analysis = analyse(
            cand,
            base,
            changes=_changes(release),
            policy=self._policy,
            look=look,
            looks=looks,
            held=held,
        )
        context = ReportContext(
            service=release.service,
            version=release.version,
            baseline_version=previous.version if previous else None,
            environment=release.environment,
            candidate_window=candidate_window,
            baseline_window=baseline_window,
            notes=(f"traces from the {self._backend.name} backend", *cand.notes),
        )
        return Finished(analysis, to_json(analysis, context), to_text(analysis, context))

    def _query(
        self, release: Release, version: str, window: tuple[datetime, datetime]
    ) -> SpanQuery:
        return SpanQuery(
            service=release.service,
            version=version,
            start=window[0],
            end=window[1],
            environment=release.environment,
        )

    def _owns(self, session: Session, check: Check) -> bool:
        """Re-assert the lease atomically; False when another replica took the check over."""
        result = session.execute(
            update(Check)
            .where(Check.id == check.id, Check.state == "running", Check.claimed_by == self._worker)
            .values(lease_until=self._clock.now() + self._settings.checks.lease)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def _finish(self, session: Session, check: Check, done: Finished) -> None:
        if not self._owns(session, check):
            session.rollback()
            return
        now = self._clock.now()
        release = check.release
        held = [f.key for f in done.analysis.findings if f.tested]
        check.state, check.finished_at = "done", now
        check.result = {"report": done.report, "held": held}
        check.lease_until = None
        enqueue(
            session,
            key=f"release:{release.id}:check:{check.id}",
            kind="reply",
            recipient=release.owner or "console",
            text=text.check_reply(release, timedelta(seconds=check.offset_seconds), done.text),
            now=now,
            release=release,
            check_id=check.id,
        )
        self._queue_status(session, release, check, now)
        failpoints.hit("check-before-commit")
        session.commit()
        log.info("check %d of release %d done by %s", check.id, release.id, self._worker)
        failpoints.hit("check-committed")

    def _failed(self, session: Session, check: Check, error: str) -> None:
        session.rollback()
        if not self._owns(session, check):
            session.rollback()
            return
        now = self._clock.now()
        check.attempts += 1
        check.last_error = error[:2000]
        check.lease_until = None
        if check.attempts < self._settings.checks.max_attempts:
            backoff = self._settings.checks.retry_backoff * 2 ** (check.attempts - 1)
            check.state, check.due_at = "pending", now + min(backoff, timedelta(hours=1))
            log.warning(
                "check %s failed (try %d), again at %s: %s",
                check.id,
                check.attempts,
                check.due_at,
                error,
            )
            session.commit()
            return
        check.state, check.finished_at = "failed", now
        release = check.release
        offset = timedelta(seconds=check.offset_seconds)
        enqueue(
            session,
            key=f"release:{release.id}:check:{check.id}:failed",
            kind="reply",
            recipient=release.owner or "console",
            text=text.check_failed(release, offset, check.attempts, error),
            now=now,
            release=release,
            check_id=check.id,
        )
        self._queue_status(session, release, check, now)
        log.error("check %s (+%s) failed for good: %s", check.id, format_duration(offset), error)
        session.commit()

    def _queue_status(
        self, session: Session, release: Release, check: Check, now: datetime
    ) -> None:
        checks = queries.release_checks(session, release.id)
        done = sum(c.state == "done" for c in checks)
        failed = sum(c.state == "failed" for c in checks)
        if done + failed == len(checks) and release.state == "active":
            release.state = "done"
        finished = [c for c in checks if c.state == "done" and c.result]
        verdict = finished[-1].result["report"].get("verdict") if finished else None  # type: ignore[index]
        status = text.status_line(verdict, done, len(checks), failed)
        parent = text.release_parent(release, [timedelta(seconds=c.offset_seconds) for c in checks])
        enqueue(
            session,
            key=f"release:{release.id}:status:{check.id}",
            kind="status",
            recipient=release.owner or "console",
            text=f"{parent}\n{status}",
            now=now,
            release=release,
            check_id=check.id,
        )


@dataclass(frozen=True)
class Finished:
    """A check's outcome before it is recorded: the analysis, its JSON report, its text."""

    analysis: Analysis
    report: dict[str, Any]
    text: str


def _changes(release: Release) -> list[ChangeEvent]:
    return [
        ChangeEvent(
            file=c.file,
            functions=tuple(c.functions or ()),
            lines=tuple((int(a), int(b)) for a, b in (c.lines or ())),
        )
        for c in release.changes
    ]


def _look_of(session: Session, release: Release, now: datetime) -> tuple[int, int, list[str]]:
    """Which look this is, how many are scheduled, and what the previous look found."""
    checks = list(queries.release_checks(session, release.id))
    done = [c for c in checks if c.state == "done" and c.result]
    held = list(done[-1].result.get("held", [])) if done and done[-1].result else []
    return len(done) + 1, max(len(checks), len(done) + 1), held
