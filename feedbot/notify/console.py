"""The default notifier when no Slack token is configured: readable text on a stream.

It needs nothing outside the standard library, so it is also the fast test double for delivery.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TextIO

from feedbot.notify.base import Attachment, Message, Receipt


class ConsoleNotifier:
    """Writes each message as a short block of text to ``stream`` (usually ``sys.stdout``).

    Differences from the contract: :meth:`find` always answers None, because a stream cannot be
    read back; after a crash between writing and recording a receipt, the outbox writes the
    message again (at-least-once, which is harmless on a console). :meth:`lookup_user` knows no
    users. Receipts are ``Receipt(channel=recipient, ts="console-<n>")``, counting from 1.

    A message with a file (a chart) is written as a line naming the file; with ``files_dir``
    the file itself is saved there under its name, next to the text.

    Args:
        stream: where to write; flushed after every message.
        files_dir: where uploaded files are saved; nowhere when None.
    """

    name: str = "console"

    def __init__(self, stream: TextIO, *, files_dir: Path | None = None) -> None:
        self._stream = stream
        self._files_dir = files_dir
        self._count = 0
        self._lock = threading.Lock()

    def post(self, message: Message) -> Receipt:
        """Write the recipient, a thread marker for replies, and the text (or the file)."""
        recipient = message.recipient or "console"
        lines = [f"=== feedbot -> {recipient} ==="]
        if message.thread is not None:
            also = ", also sent to the channel" if message.broadcast else ""
            lines.append(f"(reply in thread {message.thread.channel}/{message.thread.ts}{also})")
        if message.file is not None:
            lines.append(f"[image: {self._save(message.file)} — {message.file.title}]")
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

    def _save(self, file: Attachment) -> str:
        """Save ``file`` under ``files_dir``; its path, or its name when not saved."""
        name = Path(file.name).name  # never a path of the sender's choosing
        if self._files_dir is None:
            return name
        path = self._files_dir / name
        path.write_bytes(file.data)
        return str(path)

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
