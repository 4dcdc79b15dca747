"""The ticker: one pass of a replica's background work, and the scheduler that repeats it.

APScheduler 3 only ticks: every replica runs one interval job that claims due checks and sends
due messages from the database, which is the source of truth (APScheduler 3 does not support
several schedulers sharing one job store). A pass alternates a batch of checks with a round of
sending, then prunes the embedded trace store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from feedbot.backends.base import TraceBackend
from feedbot.checks.runner import CheckRunner
from feedbot.clock import Clock
from feedbot.config import TracesConfig
from feedbot.errors import BackendError
from feedbot.notify.outbox import OutboxSender
from feedbot.store import db

log = logging.getLogger(__name__)

#: Checks claimed at once by a tick, between two rounds of sending.
CHECK_BATCH = 10
PRUNE_EVERY = timedelta(minutes=10)


class Ticker:
    """One replica's background work: run due checks, send due messages, prune old spans.

    Args:
        runner: claims and runs due checks.
        sender: sends due messages from the outbox.
        backend: the trace backend; pruned when it has a ``prune`` method (the embedded store).
        traces: ``traces.retention`` and ``traces.max_spans``.
        clock: time source.
    """

    def __init__(
        self,
        *,
        runner: CheckRunner,
        sender: OutboxSender,
        backend: TraceBackend,
        traces: TracesConfig,
        clock: Clock,
    ) -> None:
        self._runner = runner
        self._sender = sender
        self._backend = backend
        self._traces = traces
        self._clock = clock
        self._last_prune: datetime | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Let the running pass end after its current check or message; start no more work.

        Called on shutdown before the scheduler is waited for, so a SIGTERM does not wait for
        a backlog of messages to an unreachable Slack: what is left stays due for the next start.
        """
        self._stopping.set()
        self._runner.stop()
        self._sender.stop()

    def tick(self) -> None:
        """One pass: run due checks, send due messages, prune spans.

        Checks and sends alternate a batch at a time, so a backlog of due checks does not hold
        back the messages of the checks already done.
        """
        while not self._stopping.is_set():
            ran = self._runner.run_due(CHECK_BATCH, batches=1)
            self._sender.send_due()
            if ran < CHECK_BATCH:
                break
        if not self._stopping.is_set():
            self.prune_spans()

    def prune_spans(self) -> int:
        """Drop embedded spans past ``traces.retention`` or ``traces.max_spans``, every 10 min."""
        prune = getattr(self._backend, "prune", None)
        now = self._clock.now()
        if prune is None or (self._last_prune and now - self._last_prune < PRUNE_EVERY):
            return 0
        self._last_prune = now
        try:
            deleted = int(prune(now - self._traces.retention, max_spans=self._traces.max_spans))
        except BackendError as exc:
            log.warning("could not prune old spans: %s", exc)
            return 0
        if deleted:
            log.info("pruned %d spans older than %s", deleted, self._traces.retention)
        return deleted


class _SkippedTicks(logging.Filter):
    """Drops APScheduler's warning that a tick was skipped because the last one still runs.

    With ``max_instances=1`` that is the design, not a problem: a slow tick (a backlog of checks)
    would otherwise log one warning per interval until it ends.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (TICK_JOB in message and "maximum number of running instances" in message)


TICK_JOB = "feedbot-tick"
_SKIPPED_TICKS = _SkippedTicks()


def start_ticker(tick: Callable[[], Any], every: timedelta) -> Any:
    """Start a background scheduler calling ``tick`` every ``every``; returns the scheduler.

    ``coalesce`` and ``max_instances=1`` keep a slow tick from piling up runs (and from logging
    that it skipped them); the first tick runs at once, so checks missed while feedbot was down
    run on start.
    """
    from apscheduler.schedulers.background import BackgroundScheduler

    logging.getLogger("apscheduler.scheduler").addFilter(_SKIPPED_TICKS)

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        _guarded(tick),
        "interval",
        seconds=max(every.total_seconds(), 0.2),
        id=TICK_JOB,
        name=TICK_JOB,
        coalesce=True,
        max_instances=1,
        next_run_time=datetime.now().astimezone(),
    )
    scheduler.start()
    return scheduler


def _guarded(tick: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            tick()
        except db.UNAVAILABLE as exc:
            # Expected while the database restarts: work claimed but not recorded is taken up
            # again once its lease runs out, so one line per tick says enough.
            log.warning("tick skipped: database unavailable: %s", str(exc).partition("\n")[0])
        except Exception:  # the ticker must survive anything a tick raises
            log.exception("tick failed")

    return run
