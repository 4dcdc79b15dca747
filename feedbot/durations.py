"""Durations as people write them in the config and in Slack: ``20s``, ``15m``, ``1h30m``, ``2w``.

The lowest layer: it imports nothing from feedbot, so the config, the detection policy and the
Slack listeners share one spelling of a duration.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(\d+)\s*(ms|s|m|h|d|w)")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


def parse_duration(text: str) -> timedelta:
    """Parse ``20s``, ``15m``, ``1h``, ``1d``, ``2w`` or a sum such as ``1h30m``.

    Raises:
        ValueError: with a message saying what a duration looks like.
    """
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or _DURATION.sub("", cleaned).strip():
        raise ValueError(f"{text!r} is not a duration like 20s, 15m, 1h or 1d")
    try:
        total = sum((int(n) * _UNITS[unit] for n, unit in parts), timedelta())
    except (OverflowError, ValueError):
        raise ValueError(f"{text!r} is too long a duration") from None
    if total <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest ``1d``/``4h``/``15m``/``20s`` spelling of ``value``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
