"""The demo's running commentary: one timestamped line per step, coloured on a terminal."""

from __future__ import annotations

import threading
import time
from typing import TextIO

RESET = "\033[0m"
STYLES = {
    "bold": "\033[1m",
    "dim": "\033[2m",
    "red": "\033[31m",
    "green": "\033[32m",
    "yellow": "\033[33m",
    "blue": "\033[34m",
    "magenta": "\033[35m",
    "cyan": "\033[36m",
}


class Palette:
    """ANSI styles when ``enabled``, plain text otherwise.

    Args:
        enabled: whether to emit escape codes (a terminal that was not told ``--no-color``).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        """``text`` in ``styles`` (names of :data:`STYLES`)."""
        if not self.enabled or not styles:
            return text
        return "".join(STYLES[s] for s in styles) + text + RESET


class Progress:
    """Writes ``[  12.3s] text`` lines to ``stream``, from any thread.

    Args:
        stream: where to write (flushed after every line).
        palette: the colours to use.
    """

    def __init__(self, stream: TextIO, palette: Palette) -> None:
        self.stream = stream
        self.palette = palette
        self._start = time.monotonic()
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self._start

    def step(self, text: str) -> None:
        """A new phase of the demo."""
        self._line(self.palette("▶ " + text, "bold", "cyan"))

    def info(self, text: str, *styles: str) -> None:
        """A detail of the current phase."""
        self._line("  " + self.palette(text, *styles))

    def write(self, text: str) -> None:
        """Text as is, without a timestamp (the final thread and instructions)."""
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def _line(self, text: str) -> None:
        stamp = self.palette(f"[{self.elapsed:6.1f}s]", "dim")
        self.write(f"{stamp} {text}\n")
