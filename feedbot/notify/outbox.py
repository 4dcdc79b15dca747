"""Exactly-once delivery through an outbox table.

A message becomes a :class:`~feedbot.store.models.Delivery` row in the same transaction as the
work that produced it (a registered release, a finished check). :class:`OutboxSender` then:

1. claims a batch of due rows with a lease, in one statement, so concurrent senders get disjoint
   batches; then, for each row whose thread head is out, counts the attempt (committed *before*
   sending); rows it did not attempt are released at the end of the round;
2. when an earlier attempt may have reached the notifier, asks it whether the message is already
   there (:meth:`Notifier.find`, by the message key);
3. sends, and records where it landed.

A crash before step 3's record leaves ``attempts > 0``, so the next sender finds the message
instead of sending it twice. Slack 429/5xx and outages leave the row pending with a backoff.

A ``home`` row (queued when a check of someone's release finished) publishes that person's
Home tab. It carries no view: the sender renders the view when it sends (``home=``), so a row
retried after a 429 never publishes an older view over a newer one. Publishing replaces the
whole view, so these rows are delivered at least once (no :meth:`Notifier.find`); a row with a
newer pending one for the same person is marked sent without a call, and once one is published
the older pending ones are too (coalesced), so a burst of checks does not flood Slack.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from feedbot import failpoints, logs
from feedbot.clock import Clock
from feedbot.errors import DeliveryError
from feedbot.metrics import Metrics
from feedbot.notify.base import Attachment, HomePublisher, Message, Notifier, Receipt
from feedbot.releases.owners import split_lazy
from feedbot.retry import backoff
from feedbot.store import queries
from feedbot.store.models import Delivery, Release
from feedbot.telemetry import NullTracer, Tracer

log = logging.getLogger(__name__)
#: Renders a person's Home tab view from the store: (session, user id) → ``{"type": "home", …}``.
HomeRenderer = Callable[[Session, str], Mapping[str, Any]]


@dataclass(frozen=True)
class Outgoing:
    """A message to add to the outbox: :func:`enqueue`'s arguments, for :func:`enqueue_all`."""

    key: str
    kind: str
    recipient: str
    text: str
    release: Release | None = None
    check_id: int | None = None
    blocks: Sequence[Mapping[str, Any]] = ()
    broadcast: bool = False
    file: Attachment | None = None


def enqueue(
    session: Session,
    *,
    key: str,
    kind: str,
    recipient: str,
    text: str,
    now: datetime,
    release: Release | None = None,
    check_id: int | None = None,
    blocks: Sequence[Mapping[str, Any]] = (),
    broadcast: bool = False,
    file: Attachment | None = None,
) -> Delivery:
    """Add a message to the outbox (the caller commits); an existing key is returned as is.

    A ``file`` is stored with the row, so it leaves exactly once like any message; ``text``
    is then its description (alt text).
    """
    existing = queries.delivery_by_key(session, key)
    if existing is not None:
        return existing
    message = Outgoing(key, kind, recipient, text, release, check_id, blocks, broadcast, file)
    delivery = Delivery(**_row(message, now))
    session.add(delivery)
    session.flush()
    return delivery


def enqueue_all(session: Session, messages: Sequence[Outgoing], *, now: datetime) -> None:
    """Add several messages to the outbox, in order, as :func:`enqueue` adds each one.

    The rows go in as one executemany of ``INSERT … ON CONFLICT (key) DO NOTHING``: a key
    already in the outbox keeps its row, and there is no look-up first (a pipeline of
    single-row INSERTs: one multi-row INSERT of this many columns costs psycopg more CPU to
    parse than the round trips it saves). The caller commits.
    """
    rows = []
    known: set[str] = set()
    for m in messages:
        if m.key not in known:
            known.add(m.key)
            rows.append(_row(m, now))
    queries.add_deliveries(session, rows)


def _row(m: Outgoing, now: datetime) -> dict[str, Any]:
    """The column values of a new outbox row for ``m``."""
    return {
        "key": m.key,
        "kind": m.kind,
        "recipient": m.recipient,
        "text": m.text,
        "blocks": [dict(b) for b in m.blocks],
        "broadcast": m.broadcast,
        "release_id": m.release.id if m.release is not None else None,
        "check_id": m.check_id,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "file_name": m.file.name if m.file else None,
        "file_title": m.file.title if m.file else None,
        "file_data": m.file.data if m.file else None,
    }


@dataclass
class _Batch:
    """The deliveries one round claimed: held until ``until`` and not attempted yet."""

    until: datetime
    held: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class SendReport:
    """What one pass of the sender did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    waiting: int = 0


class OutboxSender:
    """Sends due outbox rows through a notifier.

    Args:
        sessions: session factory of the store.
        notifier: where messages go.
        clock: time source.
        worker: this replica's name (recorded on claimed rows).
        max_attempts: tries before a delivery is given up as ``failed``.
        backoff: first retry delay; doubles with each attempt (capped at one hour).
        lease: how long a claimed row is this sender's before another may take it over.
        metrics: where each attempt's outcome is counted; a private one when None.
        tracer: where each attempt becomes a span; none when None.
        home: renders a person's Home tab for ``home`` rows; without it (or a notifier that
            cannot publish one) those rows are recorded as sent with nothing to do.
    """

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        notifier: Notifier,
        clock: Clock,
        worker: str,
        max_attempts: int = 8,
        backoff: timedelta = timedelta(seconds=5),
        lease: timedelta = timedelta(minutes=2),
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
        home: HomeRenderer | None = None,
    ) -> None:
        self._sessions = sessions
        self._home = home
        self._notifier = notifier
        self._clock = clock
        self._worker = worker
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._lease = lease
        self._metrics = metrics or Metrics()
        self._tracer = tracer or NullTracer()
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Finish the message being sent and send no more (shutdown); the rest stay due."""
        self._stopping.set()

    def send_due(self, limit: int = 50) -> SendReport:
        """Claim up to ``limit`` due deliveries that no other sender holds and send them.

        The batch is claimed in one statement, so concurrent senders (replicas) get disjoint
        batches instead of racing for the same rows. Deliveries go out oldest first, so a
        thread head goes before its replies. The ones this round does not attempt (waiting for
        their thread head, or left when an exception stops the round) are released at its end;
        if even that fails, their lease runs out.
        """
        counts = {"sent": 0, "retried": 0, "failed": 0, "waiting": 0}
        now = self._clock.now()
        with self._sessions() as session:
            ids = queries.claim_deliveries(
                session, now=now, worker=self._worker, lease=self._lease, limit=limit
            )
        batch = _Batch(until=now + self._lease, held=set(ids))
        try:
            for delivery_id in ids:
                if self._stopping.is_set():
                    break  # the rest of the batch is released below, still due
                with logs.bind(delivery_id=delivery_id):
                    outcome = self._send_one(delivery_id, batch)
                if outcome:
                    counts[outcome] += 1
                if outcome in ("sent", "retried", "failed"):
                    self._metrics.delivery_attempted(outcome)
        finally:
            self._release(batch)
        return SendReport(**counts)

    def _send_one(self, delivery_id: int, batch: _Batch) -> str | None:
        with self._sessions() as session:
            if not self._ready(session, delivery_id):
                return "waiting"
            delivery = queries.start_delivery(
                session,
                delivery_id,
                worker=self._worker,
                held_until=batch.until,
                now=self._clock.now(),
                lease=self._lease,
            )
            # Attempted (its lease now guards the send) or lost to another sender: either way
            # this round no longer holds it.
            batch.held.discard(delivery_id)
            if delivery is None:
                return None
            with (
                logs.bind(release_id=delivery.release_id, check_id=delivery.check_id),
                self._tracer.span("feedbot.delivery.send", _attributes(delivery)) as span,
            ):
                outcome = self._attempt(session, delivery)
                span.set_attribute("feedbot.delivery.outcome", outcome)
                return outcome

    def _release(self, batch: _Batch) -> None:
        """Give back the claimed deliveries this round did not attempt."""
        if not batch.held:
            return
        try:
            with self._sessions() as session:
                queries.release_deliveries(
                    session, sorted(batch.held), worker=self._worker, held_until=batch.until
                )
        except SQLAlchemyError as exc:
            # Not raised: it would hide why the round stopped, and the lease runs out anyway.
            log.warning(
                "could not release %d claimed deliveries; their lease runs out at %s: %s",
                len(batch.held),
                batch.until,
                exc,
            )

    def _attempt(self, session: Session, delivery: Delivery) -> str:
        """Send a claimed delivery and record the outcome: ``sent``, ``retried`` or ``failed``."""
        failpoints.hit("delivery-claimed")
        try:
            receipt, thread = self._deliver(session, delivery)
        except DeliveryError as exc:
            return self._record_failure(session, delivery, exc)
        failpoints.hit("delivery-sent")
        delivery.state, delivery.sent_at = "sent", self._clock.now()
        delivery.channel, delivery.ts = receipt.channel, receipt.ts
        delivery.thread_ts = thread.ts if thread else None
        delivery.lease_until = None
        session.commit()
        return "sent"

    def _ready(self, session: Session, delivery_id: int) -> bool:
        """Replies and status updates wait until their thread head has been sent (or failed),
        a reply until the earlier replies of its thread have, so a thread reads in order, and a
        status update until the earlier ones of its release have, so the parent ends with the
        latest: each replaces the parent's text. Both hold also when an earlier one is in its
        backoff (Slack 429/5xx) or held by a crashed sender's lease."""
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.kind == "parent" or delivery.release_id is None:
            return delivery is not None
        parent = queries.parent_delivery(session, delivery.release_id)
        if parent is not None and parent.state == "pending":
            return False
        if delivery.kind == "status":
            return not queries.earlier_pending(session, delivery, kinds=("status",))
        return delivery.kind not in queries.THREAD_REPLIES or not queries.earlier_pending(
            session, delivery, kinds=queries.THREAD_REPLIES
        )

    def _deliver(self, session: Session, delivery: Delivery) -> tuple[Receipt, Receipt | None]:
        if delivery.kind == "home":
            return self._publish_home(session, delivery), None
        thread = self._thread_of(session, delivery)
        if delivery.kind == "status":
            if thread is None:
                raise DeliveryError("no parent message to update", retryable=False)
            message = self._message(delivery, recipient=thread.channel, thread=None)
            self._notifier.update(thread, message)
            return thread, None
        message = self._message(delivery, recipient=self._recipient(delivery), thread=thread)
        receipt = self._notifier.find(message) if delivery.attempts > 1 else None
        if receipt is None:
            receipt = self._notifier.post(message)
        else:
            log.info("delivery %s was already sent; recorded, not resent", delivery.key)
        return receipt, thread

    def _publish_home(self, session: Session, delivery: Delivery) -> Receipt:
        """Render the person's Home tab now and publish it; older pending ones are coalesced."""
        user = delivery.recipient
        if queries.newer_home_pending(session, recipient=user, after_id=delivery.id):
            # The newer row renders the view afresh when it goes out: this one adds nothing.
            log.info(
                "home tab of %s: a newer publication is queued; %s skipped", user, delivery.key
            )
            return Receipt(channel=user, ts="")
        if self._home is not None and isinstance(self._notifier, HomePublisher):
            self._notifier.publish_home(user, self._home(session, user))
        coalesced = queries.coalesce_home_deliveries(
            session,
            recipient=user,
            before_id=delivery.id,
            worker=self._worker,
            now=self._clock.now(),
        )
        if coalesced:
            log.info("home tab of %s published; %d older publications coalesced", user, coalesced)
        return Receipt(channel=user, ts="")

    def _thread_of(self, session: Session, delivery: Delivery) -> Receipt | None:
        if delivery.kind == "parent" or delivery.release_id is None:
            return None
        parent = queries.parent_delivery(session, delivery.release_id)
        if parent is None or parent.state != "sent" or not parent.channel or not parent.ts:
            return None
        return Receipt(channel=parent.channel, ts=parent.ts)

    def _recipient(self, delivery: Delivery) -> str:
        lazy = split_lazy(delivery.recipient)
        if lazy is None:
            return delivery.recipient
        address, fallback = lazy
        user = self._notifier.lookup_user(address)
        delivery.recipient = user or fallback
        return delivery.recipient

    @staticmethod
    def _message(delivery: Delivery, *, recipient: str, thread: Receipt | None) -> Message:
        file = None
        if delivery.file_name is not None:
            title = delivery.file_title or delivery.file_name
            file = Attachment(delivery.file_name, title, delivery.file_data or b"")
        return Message(
            key=delivery.key,
            recipient=recipient,
            text=delivery.text,
            blocks=tuple(delivery.blocks or ()),
            thread=thread,
            broadcast=delivery.broadcast and thread is not None,
            file=file,
        )

    def _record_failure(self, session: Session, delivery: Delivery, exc: DeliveryError) -> str:
        delivery.last_error = str(exc)[:2000]
        delivery.lease_until = None
        if not exc.retryable or delivery.attempts >= self._max_attempts:
            delivery.state = "failed"
            log.error("delivery %s failed for good: %s", delivery.key, exc)
            session.commit()
            return "failed"
        delay = backoff(self._backoff, delivery.attempts, cap=timedelta(hours=1))
        delivery.next_attempt_at = self._clock.now() + delay
        log.warning(
            "delivery %s failed (attempt %d), retry in %s: %s",
            delivery.key,
            delivery.attempts,
            delay,
            exc,
        )
        session.commit()
        return "retried"


def _attributes(delivery: Delivery) -> dict[str, str | int]:
    """Span attributes of a claimed delivery: its ids, kind and attempt."""
    attributes: dict[str, str | int] = {
        "feedbot.delivery_id": delivery.id,
        "feedbot.delivery.kind": delivery.kind,
        "feedbot.delivery.attempt": delivery.attempts,
    }
    if delivery.release_id is not None:
        attributes["feedbot.release_id"] = delivery.release_id
    if delivery.check_id is not None:
        attributes["feedbot.check_id"] = delivery.check_id
    return attributes
