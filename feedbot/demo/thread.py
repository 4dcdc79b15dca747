"""A release's DM thread, reassembled from what the notifier delivered (pure: no I/O).

Posts without a thread are thread heads; replies name their head's receipt; updates replace a
head's text (the status line). Messages are matched to a release by their outbox key
(``release:<id>:…``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feedbot.demo.recorder import Delivered
from feedbot.notify.base import Receipt


@dataclass
class Thread:
    """One thread: its head as last updated, and its replies (messages and files) in order."""

    receipt: Receipt
    key: str
    head: str
    head_blocks: tuple[Mapping[str, Any], ...]
    replies: list[Delivered] = field(default_factory=list)
    updated: bool = False

    @property
    def messages(self) -> list[Delivered]:
        """The replies that are messages, without the files (charts) uploaded between them."""
        return [reply for reply in self.replies if reply.message.file is None]


def threads(delivered: Sequence[Delivered]) -> list[Thread]:
    """Every thread in the order its head was sent; messages outside any thread are heads."""
    found: dict[Receipt, Thread] = {}
    for item in delivered:
        message = item.message
        if item.updated and item.receipt in found:
            thread = found[item.receipt]
            thread.head, thread.head_blocks, thread.updated = message.text, message.blocks, True
        elif message.thread is not None and message.thread in found:
            found[message.thread].replies.append(item)
        elif not item.updated:
            found[item.receipt] = Thread(item.receipt, message.key, message.text, message.blocks)
    return list(found.values())


def release_thread(delivered: Sequence[Delivered], release_id: int) -> Thread | None:
    """The thread whose head is release ``release_id``'s parent message."""
    key = f"release:{release_id}:parent"
    return next((t for t in threads(delivered) if t.key == key), None)
