"""When a release's checks are due: pure, it takes the deploy time and the offsets.

Like APScheduler's ``Trigger.next()``, planning reads no clock; the due, claimed and done states
live in the store, so a test advances a ``FixedClock`` instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class PlannedCheck:
    """One check to create: how long after the deploy, and when that is."""

    offset: timedelta
    due_at: datetime


def plan_checks(deployed_at: datetime, offsets: Sequence[timedelta]) -> list[PlannedCheck]:
    """One check per offset after ``deployed_at``, earliest first, duplicates dropped."""
    return [PlannedCheck(offset, deployed_at + offset) for offset in sorted(set(offsets))]
