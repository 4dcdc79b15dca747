"""The default notifier when no Slack token is configured: readable text on a stream.

It needs nothing outside the standard library, so it is also the fast test double for delivery.
"""

from __future__ import annotations

import threading
from typing import TextIO

from feedbot.notify.base import Message, Receipt


class ConsoleNotifier:
    """Writes each message as a short block of text to ``stream`` (usually ``sys.stdout``).

    Differences from the contract: :meth:`find` always answers None, because a stream cannot be
    read back; after a crash between writing and recording a receipt, the outbox writes the
    message again (at-least-once, which is harmless on a console). :meth:`lookup_user` knows no
    users. Receipts are ``Receipt(channel=recipient, ts="console-<n>")``, counting from 1.

    Args:
        stream: where to write; flushed after every message.
    """

    name: str = "console"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._count = 0
        self._lock = threading.Lock()

    def post(self, message: Message) -> Receipt:
        """Write the recipient, a thread marker for replies, and the text."""
        recipient = message.recipient or "console"
        lines = [f"=== feedbot -> {recipient} ==="]
        if message.thread is not None:
            also = ", also sent to the channel" if message.broadcast else ""
            lines.append(f"(reply in thread {message.thread.channel}/{message.thread.ts}{also})")
        lines.append(message.text)
        with self._lock:
            self._count += 1
            receipt = Receipt(channel=recipient, ts=f"console-{self._count}")
            self._write("\n".join(lines) + "\n\n")
        return receipt

    def update(self, receipt: Receipt, message: Message) -> None:
        """Write the new text as a status line naming the earlier message."""
        with self._lock:
            self._write(f"[status update] {receipt.channel}/{receipt.ts}: {message.text}\n")

    def find(self, message: Message) -> Receipt | None:
        """Always None: the console cannot look back at what it wrote."""
        return None

    def lookup_user(self, email: str) -> str | None:
        """Always None: the console knows no users."""
        return None

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
