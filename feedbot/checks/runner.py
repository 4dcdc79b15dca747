"""Running due checks: claim → query the trace backend → render → queue the messages.

A check's result and the messages it causes are committed in one transaction, and only by the
replica that still holds the check's lease (:mod:`feedbot.checks.recorder`); messages leave through
the outbox, so a crash at any point neither loses a check nor sends anything twice.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from feedbot import failpoints, logs
from feedbot.analysis.findings import KnownException
from feedbot.analysis.report import ReportContext
from feedbot.backends.base import TraceBackend
from feedbot.checks import charts, pipeline
from feedbot.checks.pipeline import Finished, Plan
from feedbot.checks.recorder import CheckRecorder, previous_reply
from feedbot.clock import Clock
from feedbot.config import Settings
from feedbot.digest import story
from feedbot.errors import BackendError
from feedbot.metrics import Metrics
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change as ChangeEvent
from feedbot.store import acknowledgements, queries
from feedbot.store.models import Check, Release
from feedbot.telemetry import NullTracer, Tracer

log = logging.getLogger(__name__)


class CheckRunner:
    """Claims and runs due checks for one replica.

    Args:
        sessions: session factory of the store.
        backend: the trace backend to query.
        settings: validated configuration (check offsets, windows, retries).
        clock: time source.
        worker: this replica's name, recorded on claimed checks.
        policy: the detection policy; the defaults when None.
        metrics: where each run's outcome is counted; a private one when None.
        tracer: where each run becomes a span; none when None.
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
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._settings = settings
        self._policy = policy or DetectionPolicy()
        self._clock = clock
        self._worker = worker
        self._metrics = metrics or Metrics()
        self._tracer = tracer or NullTracer()
        self._recorder = CheckRecorder(settings=settings, clock=clock, worker=worker)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Finish the checks already claimed and claim no more (shutdown)."""
        self._stopping.set()

    def run_due(self, limit: int = 10, *, batches: int | None = None) -> int:
        """Claim and run due checks, ``limit`` at a time; returns how many ran.

        Args:
            limit: checks claimed at once.
            batches: stop after this many claims (None: until no check is due).
        """
        ran = 0
        for _ in itertools.count() if batches is None else range(batches):
            if self._stopping.is_set():
                break
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
                break
        return ran

    def run_one(self, check_id: int) -> None:
        """Run one claimed check to its end: done, retried later, or failed with a note.

        The store is read in one short transaction and written in another; no transaction is
        open while the trace backend is queried, so a slow backend never holds database locks
        (on SQLite, the single writer lock).
        """
        with self._sessions() as session:
            check = session.get(Check, check_id)
            if check is None or check.state != "running" or check.claimed_by != self._worker:
                return
            release_id = check.release_id
            plan = self._plan(session, check.release, self._clock.now())
            thread = _thread(session, check) if self._settings.slack.charts else None
        attributes: dict[str, str | int] = {
            "feedbot.check_id": check_id,
            "feedbot.release_id": release_id,
            "feedbot.service": plan.context.service,
        }
        with (
            logs.bind(release_id=release_id, check_id=check_id),
            self._tracer.span("feedbot.check", attributes) as span,
        ):
            outcome = self._run_claimed(check_id, plan, thread)
            if outcome is not None:
                span.set_attribute("feedbot.check.outcome", outcome)
                self._metrics.check_finished(outcome)

    def _run_claimed(self, check_id: int, plan: Plan, thread: _Thread | None) -> str | None:
        """Query, analyse and record; the outcome, or None when the check row is gone.

        ``thread``: what the release's thread already holds, for the charts; None when charts
        are off.
        """
        failpoints.hit("check-claimed")
        try:
            done: Finished | str = self._run(plan, thread)
        except BackendError as exc:
            done = str(exc)
        except Exception as exc:  # a bug must not stop the other checks
            log.exception("check %s crashed", check_id)
            done = f"internal error: {type(exc).__name__}: {exc}"
        with self._sessions() as session:
            check = session.get(Check, check_id)
            if check is None:
                return None
            if isinstance(done, str):
                return self._recorder.fail(session, check, done)
            return self._recorder.finish(session, check, done)

    def _plan(self, session: Session, release: Release, now: datetime) -> Plan:
        """Everything the check needs from the store, read before any backend call."""
        previous = (
            session.get(Release, release.previous_release_id)
            if release.previous_release_id
            else None
        )
        end = max(now, release.deployed_at)
        candidate_window = (release.deployed_at, end)
        baseline_window = search = None
        since = release.deployed_at - self._settings.checks.baseline_window
        if previous is not None:
            # Versions are told apart by service.version, never by a time cut, so the baseline
            # window runs up to now: during a rolling deploy both versions serve at once, and
            # where they did, only that overlap is compared (pipeline.collect).
            baseline_window = (since, end)
        else:
            # No earlier release registered (the first deploy after install, or versions
            # shipped by another pipeline): the baseline is the version the traces show.
            search = (since, release.deployed_at)
        look, looks, held = _look_of(session, release, now)
        policy = pipeline.policy_for(self._settings, release.service, self._policy)
        history = policy.new_types
        known = queries.exception_history(
            session,
            service=release.service,
            environment=release.environment,
            versions=history.history_versions,
            since=now - timedelta(days=history.history_days),
            exclude=(release.version, release.deployed_at),
        )
        spreads = pipeline.spread_history(
            session,
            service=release.service,
            environment=release.environment,
            version=release.version,
            deployed_before=release.deployed_at,
            now=now,
            policy=policy,
        )
        return Plan(
            policy=policy,
            context=ReportContext(
                service=release.service,
                version=release.version,
                baseline_version=previous.version if previous else None,
                environment=release.environment,
                candidate_window=candidate_window,
                baseline_window=baseline_window,
            ),
            changes=_changes(release),
            look=look,
            looks=looks,
            held=tuple(held),
            known_exceptions=tuple(
                KnownException(k.span, k.type, k.version, k.last_seen) for k in known
            ),
            baseline_search=search,
            tau_records=spreads,
        )

    def _run(self, plan: Plan, thread: _Thread | None = None) -> Finished:
        """Query both versions, analyse, and render (charts too, unless ``thread`` is None);
        no database access here."""
        why = " No earlier release of the service was registered, so it was found in the traces."
        plan = pipeline.baseline_from_data(self._backend, plan, why=why)
        with collections_spaced():
            collected = pipeline.collect(self._backend, plan)
        done = pipeline.analyse(plan, collected)
        ctx = plan.context
        if thread is None or ctx.baseline_version is None:
            return done
        try:
            # The chapters this check's reply shows (told as the recorder will tell them).
            told = story.tell(
                done.report, previous=thread.previous, acknowledged=thread.acknowledged
            ).chapters
            drawn = charts.draw(
                done.analysis,
                candidate=collected.candidate,
                baseline=collected.baseline,
                versions=(ctx.baseline_version, ctx.version),
                charted=thread.charted,
                told=[c.where for c in told],
            )
        except Exception:  # a picture that cannot be drawn must not cost the check its reply
            log.exception("charts of %s %s could not be drawn", ctx.service, ctx.version)
            return done
        return replace(done, charts=drawn)


#: The youngest generation's threshold while a check reads spans (Python's default is 2,000).
SPACED_THRESHOLD = 100_000
_spacing = threading.Lock()
_spaced: list[tuple[int, int, int]] = []  # the thresholds to restore, one per check reading


@contextmanager
def collections_spaced() -> Iterator[None]:
    """Run the body with the cyclic garbage collector's passes far apart, then restore them.

    Reading a window's spans allocates millions of short-lived, acyclic objects (rows, their
    values); each pass they trigger also walks what the process holds (the aggregator's tables,
    every module): measured, a check in ``serve`` took half as long again as in ``report``,
    which turns the collector off. A server must keep it on, so it is only spaced out, for every
    thread, while any check reads (nested and concurrent checks restore it once, at the last).
    """
    with _spacing:
        if not _spaced:
            _spaced.append(gc.get_threshold())
            first, *rest = gc.get_threshold()
            gc.set_threshold(max(first, SPACED_THRESHOLD), *rest)
        else:
            _spaced.append(_spaced[0])
    try:
        yield
    finally:
        with _spacing:
            restore = _spaced.pop()
            if not _spaced:
                gc.set_threshold(*restore)


def _changes(release: Release) -> list[ChangeEvent]:
    return [
        ChangeEvent(
            file=c.file,
            functions=tuple(c.functions or ()),
            lines=tuple((int(a), int(b)) for a, b in (c.lines or ())),
            traced=tuple(c.traced or ()),
        )
        for c in release.changes
    ]


@dataclass(frozen=True)
class _Thread:
    """What a release's thread holds before a check, for the check's charts.

    Attributes:
        charted: The chart identities earlier checks queued (see :mod:`.charts`).
        previous: The findings of the last reply posted, which this one tells what changed
            since (None for the first).
        acknowledged: Finding keys marked expected: left out of the reply.
    """

    charted: set[str]
    previous: list[dict[str, Any]] | None
    acknowledged: frozenset[str]


def _thread(session: Session, check: Check) -> _Thread:
    release = check.release
    charted = {
        ident
        for c in queries.release_checks(session, release.id)
        if c.state == "done" and c.result
        for ident in c.result.get("charts", [])
    }
    earlier = previous_reply(session, release, check)
    previous = earlier.result["report"].get("findings", []) if earlier else None  # type: ignore[index]
    return _Thread(charted, previous, frozenset(acknowledgements.acknowledged(session, release.id)))


def _look_of(session: Session, release: Release, now: datetime) -> tuple[int, int, list[str]]:
    """Which look this is, how many are scheduled, and what the previous look found."""
    checks = list(queries.release_checks(session, release.id))
    done = [c for c in checks if c.state == "done" and c.result]
    held = list(done[-1].result.get("held", [])) if done and done[-1].result else []
    return len(done) + 1, max(len(checks), len(done) + 1), held
