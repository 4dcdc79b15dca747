"""Named crash points for the crash tests (the ``fail`` points of FoundationDB and TiKV).

``FEEDBOT_FAILPOINTS=delivery-sent`` makes the process kill itself with SIGKILL the first time it
reaches :func:`hit` with that name, exactly as ``kill -9`` would at that step;
``delivery-sent:3`` the third time. Unset (always, in production), :func:`hit` is a dictionary
lookup.
"""

from __future__ import annotations

import os
import signal


def _armed(spec: str) -> dict[str, int]:
    armed = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition(":")
        armed[name] = int(nth) if nth.isdigit() else 1
    return armed


_ARMED = _armed(os.environ.get("FEEDBOT_FAILPOINTS", ""))
_SEEN: dict[str, int] = {}


def hit(name: str) -> None:
    """Die here with SIGKILL when the failpoint ``name`` is armed and its count is reached."""
    if name not in _ARMED:
        return
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] >= _ARMED[name]:
        os.kill(os.getpid(), signal.SIGKILL)
