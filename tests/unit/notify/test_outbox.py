"""The outbox sender claims disjoint batches, counts attempts before sending, keeps thread order.

Tests that need several connections at once (concurrent senders) commit to a fresh database;
the others run inside the test's rolled-back transaction. Both kinds run on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import FixedClock
from feedbot.errors import DeliveryError
from feedbot.notify.base import Attachment, Message, Receipt
from feedbot.notify.outbox import OutboxSender, enqueue
from feedbot.store import queries
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Delivery, Release
from tests.factories import DEPLOYED

LEASE = timedelta(minutes=2)


class RecordingNotifier:
    """Records every post; a post can be made to wait for ``go`` or to raise."""

    name = "recording"

    def __init__(self, *, hold: bool = False, fail_on: str | None = None) -> None:
        self.posts: list[Message] = []
        self.found: list[str] = []
        self.entered = threading.Event()
        self.go = threading.Event()
        self._hold = hold
        self._fail_on = fail_on

    def post(self, message: Message) -> Receipt:
        if self._hold and not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(30), "never let go"
        if message.key == self._fail_on:
            raise RuntimeError("the process dies here")
        self.posts.append(message)
        return Receipt(channel="C1", ts=f"{len(self.posts)}.0")

    def update(self, receipt: Receipt, message: Message) -> None:
        self.posts.append(message)

    def find(self, message: Message) -> Receipt | None:
        self.found.append(message.key)
        return None

    def lookup_user(self, email: str) -> str | None:
        return None

    @property
    def keys(self) -> list[str]:
        return [m.key for m in self.posts]


def sender(
    sessions: sessionmaker[Session], notifier: object, clock: FixedClock, worker: str
) -> OutboxSender:
    return OutboxSender(
        sessions=sessions,
        notifier=notifier,  # type: ignore[arg-type]
        clock=clock,
        worker=worker,
        lease=LEASE,
    )


def add_digests(session: Session, n: int, clock: FixedClock) -> list[int]:
    """``n`` due deliveries outside any thread; their ids, oldest first."""
    rows = [
        enqueue(session, key=f"d{i}", kind="digest", recipient="#c", text="t", now=clock.now())
        for i in range(n)
    ]
    session.commit()
    return [row.id for row in rows]


def add_release(session: Session, clock: FixedClock, replies: int, name: str = "") -> Release:
    """A release with its thread head (key ``{name}p``) and replies (``{name}r0``, …), all due."""
    release = Release(
        service=f"vault{name}",
        version="1",
        environment="production",
        source="test",
        deployed_at=DEPLOYED,
        received_at=DEPLOYED,
    )
    session.add(release)
    session.flush()
    now = clock.now()
    enqueue(
        session, key=f"{name}p", kind="parent", recipient="U1", text="p", now=now, release=release
    )
    for i in range(replies):
        enqueue(
            session,
            key=f"{name}r{i}",
            kind="reply",
            recipient="U1",
            text="r",
            now=now,
            release=release,
        )
    session.commit()
    return release


def rows(session: Session) -> dict[str, Delivery]:
    session.expire_all()
    return {d.key: d for d in session.scalars(select(Delivery))}


@pytest.fixture
def store(fresh_database_url: str) -> Iterator[Engine]:
    """An engine on a migrated, empty database that tests commit to for real."""
    engine = make_engine(fresh_database_url)
    yield engine
    engine.dispose()


# --- claiming a batch -------------------------------------------------------------------------


def test_a_batch_is_the_oldest_due_free_rows_and_counts_no_attempt(
    db_session: Session, clock: FixedClock
) -> None:
    ids = add_digests(db_session, 6, clock)
    later = db_session.get(Delivery, ids[0])
    assert later is not None
    later.next_attempt_at = clock.now() + timedelta(seconds=1)  # in backoff
    db_session.get(Delivery, ids[1]).state = "sent"  # type: ignore[union-attr]
    db_session.commit()

    first = queries.claim_deliveries(db_session, now=clock.now(), worker="a", lease=LEASE, limit=2)
    second = queries.claim_deliveries(db_session, now=clock.now(), worker="b", lease=LEASE)

    assert (first, second) == (ids[2:4], ids[4:])
    claimed = rows(db_session)
    assert [claimed[f"d{i}"].claimed_by for i in range(2, 6)] == ["a", "a", "b", "b"]
    assert {claimed[f"d{i}"].lease_until for i in range(2, 6)} == {clock.now() + LEASE}
    assert {d.attempts for d in claimed.values()} == {0}


def test_a_crashed_senders_batch_is_claimable_again_once_its_lease_runs_out(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    ids = add_digests(db_session, 3, clock)
    # The sender dies right after claiming: nothing releases its batch.
    assert queries.claim_deliveries(db_session, now=clock.now(), worker="dead", lease=LEASE) == ids

    clock.advance(LEASE)
    assert queries.claim_deliveries(db_session, now=clock.now(), worker="b", lease=LEASE) == []
    clock.advance(timedelta(seconds=1))
    notifier = RecordingNotifier()
    report = sender(db_sessions, notifier, clock, "b").send_due()

    assert report.sent == 3 and notifier.keys == ["d0", "d1", "d2"]
    assert {(d.state, d.attempts, d.claimed_by) for d in rows(db_session).values()} == {
        ("sent", 1, "b")
    }


def test_a_claim_lost_after_its_lease_ran_out_is_not_attempted(
    db_session: Session, clock: FixedClock
) -> None:
    [delivery_id] = add_digests(db_session, 1, clock)
    held_a = clock.now() + LEASE
    queries.claim_deliveries(db_session, now=clock.now(), worker="a", lease=LEASE)
    clock.advance(LEASE + timedelta(seconds=1))  # a stalls past its lease; b takes the row over
    queries.claim_deliveries(db_session, now=clock.now(), worker="b", lease=LEASE)
    held_b = clock.now() + LEASE

    lost = queries.start_delivery(
        db_session, delivery_id, worker="a", held_until=held_a, now=clock.now(), lease=LEASE
    )
    released = queries.release_deliveries(db_session, [delivery_id], worker="a", held_until=held_a)
    won = queries.start_delivery(
        db_session, delivery_id, worker="b", held_until=held_b, now=clock.now(), lease=LEASE
    )

    assert (lost, released) == (None, 0)
    assert won is not None and (won.attempts, won.claimed_by) == (1, "b")


# --- concurrent senders -----------------------------------------------------------------------


def test_concurrent_claims_get_disjoint_batches_that_cover_every_due_row(
    store: Engine, clock: FixedClock
) -> None:
    sessions = make_sessions(store)
    with sessions() as session:
        ids = add_digests(session, 90, clock)
    start = threading.Barrier(3)

    def claim_all(worker: str) -> list[int]:
        start.wait()
        mine: list[int] = []
        while True:
            with sessions() as session:
                batch = queries.claim_deliveries(
                    session, now=clock.now(), worker=worker, lease=LEASE, limit=7
                )
            if not batch:
                return mine
            mine += batch

    with ThreadPoolExecutor(3) as pool:
        batches = list(pool.map(claim_all, ["a", "b", "c"]))

    claimed = [i for batch in batches for i in batch]
    assert sorted(claimed) == ids  # all of them, none twice
    with sessions() as session:
        owners = {d.id: d.claimed_by for d in session.scalars(select(Delivery))}
    for worker, batch in zip(["a", "b", "c"], batches, strict=True):
        assert {owners[i] for i in batch} <= {worker}


def test_a_sender_busy_with_its_batch_keeps_it_while_another_sends_the_rest(
    store: Engine, clock: FixedClock
) -> None:
    sessions = make_sessions(store)
    with sessions() as session:
        add_digests(session, 10, clock)
    busy, other = RecordingNotifier(hold=True), RecordingNotifier()

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(sender(sessions, busy, clock, "a").send_due, 5)
        assert busy.entered.wait(30)  # a is sending its first delivery
        second = sender(sessions, other, clock, "b").send_due(5)
        busy.go.set()
        assert first.result(30).sent == 5

    # Before, b read the same five oldest rows and took the four a had not reached yet.
    assert busy.keys == ["d0", "d1", "d2", "d3", "d4"]
    assert (second.sent, other.keys) == (5, ["d5", "d6", "d7", "d8", "d9"])
    with sessions() as session:
        assert {d.attempts for d in session.scalars(select(Delivery))} == {1}


def test_three_concurrent_senders_send_every_delivery_once(
    store: Engine, clock: FixedClock
) -> None:
    sessions = make_sessions(store)
    with sessions() as session:
        add_digests(session, 60, clock)
    notifiers = [RecordingNotifier() for _ in range(3)]
    start = threading.Barrier(3)

    def run(n: int) -> int:
        start.wait()
        one = sender(sessions, notifiers[n], clock, f"s{n}")
        sent = 0
        while (report := one.send_due(limit=8)).sent:
            sent += report.sent
        return sent

    with ThreadPoolExecutor(3) as pool:
        sent = list(pool.map(run, range(3)))

    keys = [key for n in notifiers for key in n.keys]
    assert sorted(keys) == sorted(f"d{i}" for i in range(60)) and sum(sent) == 60
    with sessions() as session:
        assert {(d.state, d.attempts) for d in session.scalars(select(Delivery))} == {("sent", 1)}


@pytest.mark.parametrize("fresh_database_url", ["postgresql"], indirect=True)
def test_postgres_claims_skip_rows_another_claim_has_locked(
    store: Engine, clock: FixedClock
) -> None:
    sessions = make_sessions(store)
    with sessions() as session:
        ids = add_digests(session, 6, clock)
    with store.connect() as other, sessions() as session:
        other.execute(text("SELECT id FROM deliveries WHERE id <= :id FOR UPDATE"), {"id": ids[2]})
        # Without SKIP LOCKED the claim would wait for the other transaction; make that an error.
        session.execute(text("SET LOCAL lock_timeout = '2s'"))
        try:
            claimed = queries.claim_deliveries(session, now=clock.now(), worker="b", lease=LEASE)
        except OperationalError as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"the claim waited for locked rows: {exc}")
        other.rollback()

    assert claimed == ids[3:]


# --- what a round attempts and what it gives back ---------------------------------------------


def test_the_thread_head_goes_before_its_replies_in_one_batch(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    add_release(db_session, clock, replies=2)
    notifier = RecordingNotifier()

    report = sender(db_sessions, notifier, clock, "a").send_due()

    assert (report.sent, report.waiting) == (3, 0)
    assert notifier.keys == ["p", "r0", "r1"]
    assert [m.thread for m in notifier.posts] == [None, *[Receipt(channel="C1", ts="1.0")] * 2]


def test_replies_whose_thread_head_cannot_go_now_are_left_for_later_rows(
    db_session: Session, clock: FixedClock
) -> None:
    add_release(db_session, clock, replies=2, name="held")
    add_release(db_session, clock, replies=2, name="retry")
    add_release(db_session, clock, replies=1, name="free")
    state = rows(db_session)
    state["retryp"].attempts, state["retryp"].next_attempt_at = 1, clock.now() + LEASE
    db_session.commit()
    # The first thread head is in another sender's batch.
    assert queries.claim_deliveries(
        db_session, now=clock.now(), worker="other", lease=LEASE, limit=1
    ) == [state["heldp"].id]

    claimed = queries.claim_deliveries(
        db_session, now=clock.now(), worker="a", lease=LEASE, limit=2
    )

    # Before, the oldest due rows were the four replies that could not be sent.
    assert claimed == [state["freep"].id, state["freer0"].id]


def test_replies_of_a_thread_head_that_failed_this_round_burn_no_attempt_and_are_released(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    add_release(db_session, clock, replies=2)

    class HeadDown(RecordingNotifier):
        def post(self, message: Message) -> Receipt:
            raise DeliveryError("slack is down", retryable=True)

    report = sender(db_sessions, HeadDown(), clock, "a").send_due()

    assert (report.retried, report.waiting) == (1, 2)
    state = rows(db_session)
    assert (state["p"].attempts, state["p"].state) == (1, "pending")
    assert [(state[k].attempts, state[k].lease_until) for k in ("r0", "r1")] == [(0, None)] * 2
    # Released at once, not held for a lease: claimable as soon as their head can go again.
    clock.set(state["p"].next_attempt_at)
    assert queries.claim_deliveries(db_session, now=clock.now(), worker="b", lease=LEASE) == [
        state[k].id for k in ("p", "r0", "r1")
    ]


def test_a_round_stopped_by_an_error_gives_back_what_it_did_not_attempt(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    ids = add_digests(db_session, 5, clock)
    dying = RecordingNotifier(fail_on="d1")

    with pytest.raises(RuntimeError):
        sender(db_sessions, dying, clock, "a").send_due()

    state = rows(db_session)
    assert (state["d0"].state, state["d0"].attempts) == ("sent", 1)
    # d1 may have reached the notifier: it stays leased, then the next sender looks for it.
    assert (state["d1"].attempts, state["d1"].lease_until) == (1, clock.now() + LEASE)
    assert {(state[k].attempts, state[k].lease_until) for k in ("d2", "d3", "d4")} == {(0, None)}
    assert queries.claim_deliveries(db_session, now=clock.now(), worker="b", lease=LEASE) == ids[2:]
    queries.release_deliveries(db_session, ids[2:], worker="b", held_until=clock.now() + LEASE)

    clock.advance(LEASE + timedelta(seconds=1))
    notifier = RecordingNotifier()
    assert sender(db_sessions, notifier, clock, "c").send_due().sent == 4
    assert notifier.found == ["d1"] and notifier.keys == ["d1", "d2", "d3", "d4"]


def test_a_retryable_failure_counts_one_attempt_and_frees_the_row(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    add_digests(db_session, 1, clock)

    class Down(RecordingNotifier):
        def post(self, message: Message) -> Receipt:
            raise DeliveryError("slack is down", retryable=True)

    report = sender(db_sessions, Down(), clock, "a").send_due()

    [row] = rows(db_session).values()
    assert report.retried == 1
    assert (row.state, row.attempts, row.lease_until) == ("pending", 1, None)
    assert row.next_attempt_at > clock.now()


def test_a_reply_waits_for_the_earlier_replies_of_its_thread(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    add_release(db_session, clock, replies=3)
    state = rows(db_session)
    state["p"].state, state["p"].channel, state["p"].ts = "sent", "C1", "1.0"
    # The +20s reply is in its backoff (a failed try, or a crashed sender's lease).
    state["r0"].attempts, state["r0"].next_attempt_at = 1, clock.now() + LEASE
    state["r2"].state = "failed"  # a reply that failed for good holds nothing back
    db_session.commit()
    notifier = RecordingNotifier()

    report = sender(db_sessions, notifier, clock, "a").send_due()

    assert (notifier.keys, report.waiting) == ([], 1)  # +40s does not overtake +20s
    assert rows(db_session)["r1"].attempts == 0
    clock.set(state["r0"].next_attempt_at)
    sender(db_sessions, notifier, clock, "a").send_due()
    assert notifier.keys == ["r0", "r1"]


def test_a_status_update_waits_for_the_earlier_ones_of_its_release(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    # Each replaces the parent's text: one sent out of order leaves the parent saying less than
    # the checks did ("3 of 4 checks done" after all 4 ran).
    release = add_release(db_session, clock, replies=0)
    for i in range(2):
        enqueue(db_session, key=f"s{i}", kind="status", recipient="U1", text=f"status {i}",
                now=clock.now(), release=release)  # fmt: skip
    state = rows(db_session)
    state["p"].state, state["p"].channel, state["p"].ts = "sent", "C1", "1.0"
    # The first is in its backoff (Slack answered 429, or a crashed sender's lease ran out).
    state["s0"].attempts, state["s0"].next_attempt_at = 1, clock.now() + LEASE
    db_session.commit()
    notifier = RecordingNotifier()

    report = sender(db_sessions, notifier, clock, "a").send_due()

    assert (notifier.keys, report.waiting) == ([], 1)  # the newer one does not overtake it
    clock.set(state["s0"].next_attempt_at)
    sender(db_sessions, notifier, clock, "a").send_due()
    assert notifier.keys == ["s0", "s1"]  # the parent ends with the latest status
    assert [m.text for m in notifier.posts] == ["status 0", "status 1"]


def test_a_chart_waits_for_the_reply_before_it_and_carries_its_file(
    db_session: Session, db_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    release = add_release(db_session, clock, replies=1)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    enqueue(
        db_session,
        key="c0",
        kind="chart",
        recipient="U1",
        text="alt text",
        file=Attachment("c0.png", "GET /x: 1 → 2", png),
        now=clock.now(),
        release=release,
    )
    state = rows(db_session)
    state["p"].state, state["p"].channel, state["p"].ts = "sent", "C1", "1.0"
    state["r0"].attempts, state["r0"].next_attempt_at = 1, clock.now() + LEASE  # in its backoff
    db_session.commit()
    notifier = RecordingNotifier()

    assert sender(db_sessions, notifier, clock, "a").send_due().waiting == 1
    assert notifier.keys == []  # the chart does not overtake the reply it belongs to
    clock.set(state["r0"].next_attempt_at)
    sender(db_sessions, notifier, clock, "a").send_due()
    assert notifier.keys == ["r0", "c0"]
    chart = notifier.posts[1]
    assert chart.file == Attachment("c0.png", "GET /x: 1 → 2", png)
    assert (chart.text, chart.thread) == ("alt text", Receipt("C1", "1.0"))
    assert rows(db_session)["c0"].state == "sent"
