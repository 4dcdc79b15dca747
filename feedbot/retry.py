"""How long to wait before trying again: one exponential backoff for every retry loop.

The first retry waits ``first``, each later one twice as long as the one before, up to ``cap``;
with ``jitter`` the wait is scaled into the upper half of that length, so callers that failed
together do not retry together. Works on float seconds and on :class:`~datetime.timedelta`
alike.

This is the lowest layer: it imports nothing from feedbot.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

#: Seconds as a float, or a timedelta; ``first``, ``cap`` and the answer are of one type.
Delay = TypeVar("Delay", float, timedelta)


def backoff(
    first: Delay,
    attempt: int,
    *,
    cap: Delay | None = None,
    jitter: Callable[[], float] | None = None,
) -> Delay:
    """The wait before retry number ``attempt``: ``first * 2 ** (attempt - 1)``, at most ``cap``.

    Args:
        first: the wait before the first retry.
        attempt: which retry this is, 1 for the first.
        cap: the longest wait; none when None.
        jitter: returns a float in [0, 1) (``random.random``); when given, the wait is scaled
            into [50 %, 100 %] of its length ("equal jitter"): never shorter than half, so a
            retry loop keeps its pace, yet spread out.

    Returns:
        The wait, of the type of ``first``.

    Example:
        >>> backoff(0.5, 3, cap=8.0)
        2.0
        >>> backoff(timedelta(seconds=30), 9, cap=timedelta(hours=1))
        datetime.timedelta(seconds=3600)
    """
    factor: int = 2 ** (attempt - 1)
    length = first * factor
    if cap is not None:
        length = min(cap, length)
    if jitter is not None:
        length = length * (0.5 + jitter() / 2)
    return length
