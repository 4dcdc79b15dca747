from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from feedbot.clock import Clock, FixedClock, SystemClock


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2026, 1, 1, 10, tzinfo=UTC)
    clock.advance(timedelta(minutes=15))
    assert clock.now() == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)


def test_fixed_clock_refuses_naive_time() -> None:
    with pytest.raises(ValueError):
        FixedClock(datetime(2026, 1, 1))


def test_system_clock_is_aware_and_a_clock() -> None:
    assert SystemClock().now().tzinfo is not None
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FixedClock(datetime(2026, 1, 1, tzinfo=UTC)), Clock)
