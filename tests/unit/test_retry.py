"""The one backoff formula every retry loop uses (feedbot.retry)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from feedbot.retry import backoff

HOUR = timedelta(hours=1)


def test_the_first_retry_waits_first() -> None:
    assert backoff(0.5, 1) == 0.5
    assert backoff(timedelta(seconds=30), 1, cap=HOUR) == timedelta(seconds=30)


def test_each_retry_waits_twice_as_long_as_the_one_before() -> None:
    assert [backoff(0.5, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert [backoff(timedelta(seconds=5), n) for n in (1, 2, 3)] == [
        timedelta(seconds=5),
        timedelta(seconds=10),
        timedelta(seconds=20),
    ]


def test_the_wait_keeps_the_type_of_first() -> None:
    assert isinstance(backoff(timedelta(seconds=1), 3, cap=HOUR), timedelta)
    assert isinstance(backoff(1.0, 3, cap=8.0), float)


def test_the_wait_stops_growing_at_the_cap() -> None:
    # The outbox: 5 s doubled, at most an hour (5 s * 2**9 = 2560 s is still under it).
    waits = [backoff(timedelta(seconds=5), n, cap=HOUR) for n in range(1, 14)]
    assert waits[9] == timedelta(seconds=2560)
    assert waits[10:] == [HOUR, HOUR, HOUR]
    assert backoff(0.5, 5, cap=8.0) == 8.0  # reaches it exactly
    assert backoff(0.5, 6, cap=8.0) == 8.0
    assert backoff(0.5, 60, cap=8.0) == 8.0


def test_without_a_cap_the_wait_keeps_doubling() -> None:
    assert backoff(1.0, 20) == 2.0**19


def test_jitter_scales_the_wait_into_its_upper_half() -> None:
    draws = random.Random(20261207)
    for attempt in range(1, 8):
        length = min(8.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(200):
            wait = backoff(0.5, attempt, cap=8.0, jitter=draws.random)
            assert length / 2 <= wait < length


def test_jitter_at_its_ends() -> None:
    assert backoff(1.0, 3, cap=5.0, jitter=lambda: 0.0) == 2.0
    assert backoff(1.0, 4, cap=5.0, jitter=lambda: 0.5) == 3.75  # capped first, then scaled
    assert backoff(1.0, 1, jitter=lambda: 0.999) == pytest.approx(0.9995)
    assert backoff(timedelta(seconds=10), 1, jitter=lambda: 0.0) == timedelta(seconds=5)


def test_jitter_draws_once_per_wait() -> None:
    calls: list[None] = []

    def draw() -> float:
        calls.append(None)
        return 0.25

    assert backoff(2.0, 2, jitter=draw) == 2.5
    assert len(calls) == 1
