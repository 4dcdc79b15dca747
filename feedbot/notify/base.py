"""The notifier contract: where rendered feedback goes.

Delivery is exactly-once through an outbox in the store: the message is recorded before it is
sent and its receipt after. A notifier that can look back (Slack, through message metadata)
implements :meth:`Notifier.find`, so a crash between sending and recording never sends twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Receipt:
    """Where a message landed: the real channel id (``D…`` for a DM) and its timestamp id."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Attachment:
    """A file that a message uploads instead of posting text (a chart in the thread).

    Args:
        name: file name, unique per message key: how a notifier finds it again after a lost
            answer.
        title: shown above the file.
        data: the file's bytes (a PNG).
    """

    name: str
    title: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Message:
    """One message to deliver.

    Args:
        key: unique idempotency key (``release:12:check:3``); carried in the message metadata.
        recipient: a Slack user id (``U…``; the DM with that user), a channel id or ``#name``.
        text: plain-text fallback and notification text; always set.
        blocks: Block Kit blocks, already within Slack's limits.
        thread: reply in this thread (the release's parent message) when set.
        broadcast: with ``thread``, also show the reply in the channel.
        file: upload this file into the thread (or to the recipient) instead of posting
            ``text``, which becomes its description for screen readers.
    """

    key: str
    recipient: str
    text: str
    blocks: tuple[Mapping[str, Any], ...] = field(default=())
    thread: Receipt | None = None
    broadcast: bool = False
    file: Attachment | None = None


@runtime_checkable
class Notifier(Protocol):
    """Sends messages. Failures raise :class:`feedbot.errors.DeliveryError`."""

    name: str

    def post(self, message: Message) -> Receipt:
        """Send a new message (or thread reply) and return where it landed.

        A message with a ``file`` uploads the file; its receipt's ``ts`` may then name the
        file (Slack's ``F…`` id) rather than a message.
        """
        ...

    def update(self, receipt: Receipt, message: Message) -> None:
        """Replace the text and blocks of an earlier message (the release's status line)."""
        ...

    def find(self, message: Message) -> Receipt | None:
        """The receipt of ``message`` if it was already sent (matched by ``key``), else None."""
        ...

    def lookup_user(self, email: str) -> str | None:
        """Return the user id for an e-mail address, or None when there is no such user."""
        ...


@runtime_checkable
class HomePublisher(Protocol):
    """A notifier that can also publish a person's Home tab (Slack's ``views.publish``).

    Publishing replaces the whole view, so publishing the same view twice is harmless: the
    outbox delivers Home tab publications at least once (see :mod:`feedbot.notify.outbox`).
    """

    def publish_home(self, user_id: str, view: Mapping[str, Any]) -> None:
        """Make ``view`` the Home tab of ``user_id``; failures raise ``DeliveryError``."""
        ...
