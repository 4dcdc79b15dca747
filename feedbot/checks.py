"""Running due checks: claim → query the trace backend → render → queue the messages.

A check's result and the messages it causes are committed in one transaction, and only by the
replica that still holds the check's lease; messages leave through the outbox, so a crash at any
point neither loses a check nor sends anything twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from feedbot import failpoints
from feedbot.backends.base import SpanGroupStats, SpanQuery, TraceBackend
from feedbot.clock import Clock
from feedbot.config import Settings, format_duration
from feedbot.digest import text
from feedbot.errors import BackendError
from feedbot.notify.outbox import enqueue
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
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._settings = settings
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

    def _fetch(self, session: Session, release: Release, now: datetime) -> dict[str, Any]:
        window = self._settings.checks.baseline_window
        cand = self._side(
            release.service,
            release.version,
            release.environment,
            release.deployed_at,
            max(now, release.deployed_at),
        )
        previous = (
            session.get(Release, release.previous_release_id)
            if release.previous_release_id
            else None
        )
        base = None
        if previous is not None:
            base = self._side(
                previous.service,
                previous.version,
                previous.environment,
                release.deployed_at - window,
                release.deployed_at,
            )
        return {"backend": self._backend.name, "candidate": cand, "baseline": base}

    def _side(
        self, service: str, version: str, env: str, start: datetime, end: datetime
    ) -> dict[str, Any]:
        query = SpanQuery(service=service, version=version, start=start, end=end, environment=env)
        groups = self._backend.collect(query).groups
        return {
            "version": version,
            "window": f"{start:%Y-%m-%d %H:%M} – {end:%H:%M} UTC",
            "spans": sum(g.count for g in groups),
            "groups": [_group_summary(g) for g in groups],
        }

    def _owns(self, session: Session, check: Check) -> bool:
        """Re-assert the lease atomically; False when another replica took the check over."""
        result = session.execute(
            update(Check)
            .where(Check.id == check.id, Check.state == "running", Check.claimed_by == self._worker)
            .values(lease_until=self._clock.now() + self._settings.checks.lease)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def _finish(self, session: Session, check: Check, result: dict[str, Any]) -> None:
        if not self._owns(session, check):
            session.rollback()
            return
        now = self._clock.now()
        release = check.release
        check.state, check.finished_at, check.result = "done", now, result
        check.lease_until = None
        enqueue(
            session,
            key=f"release:{release.id}:check:{check.id}",
            kind="reply",
            recipient=release.owner or "console",
            text=text.check_reply(release, timedelta(seconds=check.offset_seconds), result),
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
        status = text.status_line(done, len(checks), failed)
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


def _group_summary(group: SpanGroupStats) -> dict[str, Any]:
    return {"name": group.name, "kind": group.kind, "count": group.count, "errors": group.errors}
