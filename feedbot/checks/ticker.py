"""When checks are due, and the ticker that runs them.

Planning is pure (:func:`plan_checks`). APScheduler 3 only ticks: every replica runs one interval
job that claims due checks and sends due messages from the database, which is the source of truth
(APScheduler 3 does not support several schedulers sharing one job store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from feedbot.store import db

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedCheck:
    """One check to create: how long after the deploy, and when that is."""

    offset: timedelta
    due_at: datetime


def plan_checks(deployed_at: datetime, offsets: Sequence[timedelta]) -> list[PlannedCheck]:
    """One check per offset after ``deployed_at``, earliest first, duplicates dropped."""
    return [PlannedCheck(offset, deployed_at + offset) for offset in sorted(set(offsets))]


def start_ticker(tick: Callable[[], Any], every: timedelta) -> Any:
    """Start a background scheduler calling ``tick`` every ``every``; returns the scheduler.

    ``coalesce`` and ``max_instances=1`` keep a slow tick from piling up runs; the first tick
    runs at once, so checks missed while feedbot was down run on start.
    """
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        _guarded(tick),
        "interval",
        seconds=max(every.total_seconds(), 0.2),
        id="feedbot-tick",
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
