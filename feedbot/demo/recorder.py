"""A notifier that keeps what it delivered, so the demo can show the thread afterwards.

It wraps the real notifier (the console one writing to a file, or Slack) and tells the demo's
progress about each message as it leaves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from feedbot.notify.base import Message, Notifier, Receipt


@dataclass(frozen=True)
class Delivered:
    """One message as it left: a post (``updated`` False) or an update of ``receipt``."""

    receipt: Receipt
    message: Message
    updated: bool = False


class RecordingNotifier:
    """Passes every call to ``inner`` and records posts and updates, in order.

    Args:
        inner: the notifier that really delivers.
        on_delivered: called after each successful post or update.
    """

    def __init__(
        self, inner: Notifier, on_delivered: Callable[[Delivered], None] | None = None
    ) -> None:
        self.name = inner.name
        self._inner = inner
        self._on_delivered = on_delivered
        self._lock = threading.Lock()
        self._delivered: list[Delivered] = []

    @property
    def delivered(self) -> list[Delivered]:
        """Everything delivered so far, oldest first."""
        with self._lock:
            return list(self._delivered)

    def post(self, message: Message) -> Receipt:
        receipt = self._inner.post(message)
        self._record(Delivered(receipt, message))
        return receipt

    def update(self, receipt: Receipt, message: Message) -> None:
        self._inner.update(receipt, message)
        self._record(Delivered(receipt, message, updated=True))

    def find(self, message: Message) -> Receipt | None:
        return self._inner.find(message)

    def lookup_user(self, email: str) -> str | None:
        return self._inner.lookup_user(email)

    def _record(self, delivered: Delivered) -> None:
        with self._lock:
            self._delivered.append(delivered)
        if self._on_delivered is not None:
            self._on_delivered(delivered)
