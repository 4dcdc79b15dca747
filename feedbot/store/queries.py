"""Every statement feedbot runs against its store, except registering deploys
(:mod:`feedbot.store.registration`). Functions take a Session; callers commit.

Claiming is a compare-and-swap (``UPDATE … WHERE state = … AND lease expired``) that works on
every database; on PostgreSQL the candidates are also picked with ``FOR UPDATE SKIP LOCKED`` so
replicas do not queue behind each other's rows. The exception history is written with each
dialect's ``INSERT … ON CONFLICT DO UPDATE`` (both spell it alike), so concurrent checks of one
service never collide on its unique key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    any_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from feedbot.store.models import (
    Check,
    Delivery,
    Digest,
    ExceptionType,
    Release,
    WebhookDelivery,
)


def _skip_locked(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def release_for_delivery(session: Session, source: str, delivery_id: str) -> Release | None:
    """The release a source's delivery id registered before, if any."""
    row = session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.source == source, WebhookDelivery.delivery_id == delivery_id
        )
    ).first()
    if row is None or row.release_id is None:
        return None
    return session.get(Release, row.release_id)


def claim_delivery(session: Session, *, source: str, delivery_id: str, now: datetime) -> bool:
    """Record a delivery id; True for the first caller, False when any caller recorded it before.

    ``INSERT … ON CONFLICT DO NOTHING`` on the ``(source, delivery_id)`` key: of several
    replicas that receive the same redelivered request at once, exactly one gets True.

    Args:
        session: the store (the caller commits).
        source: who delivers (``"slack"`` for Socket Mode envelopes).
        delivery_id: the delivery's own id, the same on every redelivery.
        now: when it was received.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(WebhookDelivery).values(
        source=source, delivery_id=delivery_id, release_id=None, received_at=now
    )
    stmt = stmt.on_conflict_do_nothing(index_elements=["source", "delivery_id"])
    return session.execute(stmt.returning(WebhookDelivery.id)).first() is not None


def find_release(
    session: Session, *, service: str, version: str, environment: str, commit: str
) -> Release | None:
    """The release with exactly this identity."""
    return session.scalars(
        select(Release).where(
            Release.service == service,
            Release.version == version,
            Release.environment == environment,
            Release.commit == commit,
        )
    ).first()


def claim_due_checks(
    session: Session, *, now: datetime, worker: str, lease: timedelta, limit: int = 10
) -> list[int]:
    """Claim up to ``limit`` due checks for ``worker``; returns their ids (already committed).

    A check is due when it is pending and its time has come, or when it is running under a
    lease that ran out (its replica died).
    """
    due = or_(
        and_(Check.state == "pending", Check.due_at <= now),
        and_(Check.state == "running", Check.lease_until < now),
    )
    stmt = select(Check.id).where(due).order_by(Check.due_at, Check.id).limit(limit)
    if _skip_locked(session):
        stmt = stmt.with_for_update(skip_locked=True)
    claimed = []
    for check_id in session.scalars(stmt).all():
        result = session.execute(
            update(Check)
            .where(Check.id == check_id, due)
            .values(state="running", claimed_by=worker, lease_until=now + lease)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(check_id)
    session.commit()
    return claimed


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(Delivery.lease_until.is_(None), Delivery.lease_until < now)


def claim_deliveries(
    session: Session, *, now: datetime, worker: str, lease: timedelta, limit: int = 50
) -> list[int]:
    """Claim up to ``limit`` due deliveries that no live sender holds, oldest first (committed).

    One ``UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING id``, so concurrent senders get
    disjoint batches: on PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``
    (another sender's candidates are skipped, not waited for), on SQLite writers take turns.
    The due and lease conditions are repeated on the ``UPDATE``, a compare-and-swap. Claiming
    counts no attempt; :func:`start_delivery` does, just before sending.

    A reply whose thread head cannot go out now (another sender holds it, or it waits for a
    retry) is not claimed: it could not be sent this round, and the oldest ``limit`` rows of
    the outbox would otherwise fill with such replies.

    Returns:
        The claimed ids, ascending. Each is held by ``worker`` until ``now + lease``.
    """
    due = and_(Delivery.state == "pending", Delivery.next_attempt_at <= now, _lease_free(now))
    # The releases whose thread head cannot go out now, looked up once (not per row).
    head = aliased(Delivery)
    held_back = select(head.release_id).where(
        head.kind == "parent",
        head.state == "pending",
        head.release_id.is_not(None),
        or_(head.next_attempt_at > now, head.lease_until >= now),
    )
    ready = or_(Delivery.release_id.is_(None), Delivery.release_id.not_in(held_back))
    picked = select(Delivery.id).where(due, ready).order_by(Delivery.id).limit(limit)
    if _skip_locked(session):
        # ``id = ANY(ARRAY(SELECT …))``: the candidates are picked once, an init plan. As a
        # plain ``IN (SELECT …)`` PostgreSQL may rescan the subquery for every row it updates,
        # and each rescan skips the rows just claimed and locks the next ones (one claim of 50
        # took all 10,000 due rows, in 17 s).
        locked = picked.with_for_update(skip_locked=True).scalar_subquery()
        chosen = Delivery.id == any_(func.array(locked))
    else:
        # SQLite computes an uncorrelated ``IN (SELECT …)`` once.
        chosen = Delivery.id.in_(picked)
    stmt = (
        update(Delivery)
        .where(chosen, due)
        .values(claimed_by=worker, lease_until=now + lease)
        .returning(Delivery.id)
    )
    ids = session.scalars(stmt, execution_options={"synchronize_session": False}).all()
    session.commit()
    return sorted(ids)


def start_delivery(
    session: Session,
    delivery_id: int,
    *,
    worker: str,
    held_until: datetime,
    now: datetime,
    lease: timedelta,
) -> Delivery | None:
    """Count an attempt at a claimed delivery before anything is sent (committed).

    The claim must still be ``worker``'s own, the one that holds the row until ``held_until``:
    when that lease ran out and another sender claimed the row, this one lost it. The attempt
    gets a fresh lease (``now + lease``).

    Returns:
        The delivery with ``attempts`` already incremented, or None when the claim was lost.
    """
    stmt = (
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.state == "pending",
            Delivery.claimed_by == worker,
            Delivery.lease_until == held_until,
        )
        .values(attempts=Delivery.attempts + 1, lease_until=now + lease)
        .returning(Delivery)
    )
    delivery = session.scalars(stmt, execution_options={"populate_existing": True}).first()
    session.commit()
    return delivery


def release_deliveries(
    session: Session, ids: Iterable[int], *, worker: str, held_until: datetime
) -> int:
    """Give back claimed deliveries that were not attempted, so any sender may claim them now.

    Only the rows still under this claim (``worker`` until ``held_until``) are released.

    Returns:
        How many rows were released.
    """
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id.in_(list(ids)),
            Delivery.state == "pending",
            Delivery.claimed_by == worker,
            Delivery.lease_until == held_until,
        )
        .values(lease_until=None),
        execution_options={"synchronize_session": False},
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def parent_delivery(session: Session, release_id: int) -> Delivery | None:
    """The thread head of a release (its first, ``parent`` message)."""
    return session.scalars(
        select(Delivery).where(Delivery.release_id == release_id, Delivery.kind == "parent")
    ).first()


#: Delivery kinds that are replies in a release's thread, sent in the order they were queued.
THREAD_REPLIES = ("reply", "chart")


def earlier_pending(session: Session, delivery: Delivery, *, kinds: Collection[str]) -> bool:
    """Whether a delivery of one of ``kinds`` queued before ``delivery`` for its release is
    still to be sent (replies and charts: its thread; status updates: its parent)."""
    stmt = select(Delivery.id).where(
        Delivery.release_id == delivery.release_id,
        Delivery.kind.in_(list(kinds)),
        Delivery.state == "pending",
        Delivery.id < delivery.id,
    )
    return session.scalars(stmt.limit(1)).first() is not None


def delivery_by_key(session: Session, key: str) -> Delivery | None:
    """The outbox row with this idempotency key."""
    return session.scalars(select(Delivery).where(Delivery.key == key)).first()


_ADD_DELIVERIES = {
    name: dialect.insert(Delivery.__table__).on_conflict_do_nothing(index_elements=["key"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def add_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert outbox rows given as column values, in order, skipping keys already there.

    One executemany of ``INSERT … ON CONFLICT (key) DO NOTHING`` (both dialects spell it
    alike) on the session's connection: a key that exists keeps its row, as a look-up first
    would, with one round trip fewer and no window between the look-up and the insert. Rows
    are not loaded into the session and nothing is flushed first: the rows they refer to must
    be flushed already. The caller commits.
    """
    if rows:
        connection = session.connection()
        connection.execute(_ADD_DELIVERIES[connection.dialect.name], list(rows))


def release_checks(session: Session, release_id: int) -> Sequence[Check]:
    """All checks of a release, in due order."""
    return session.scalars(
        select(Check).where(Check.release_id == release_id).order_by(Check.due_at)
    ).all()


#: One observed exception type: (version, span group, type, spans that raised it).
Observed = tuple[str, str, str, int]


def record_exception_types(
    session: Session, *, service: str, environment: str, seen: Iterable[Observed], now: datetime
) -> None:
    """Add or refresh the exception history of a service: one row per (version, span, type).

    A row already there keeps its ``first_seen``, gets ``last_seen = now`` and the larger count.
    """
    limits = {c.name: getattr(c.type, "length", None) for c in ExceptionType.__table__.columns}
    rows = [
        {
            "service": service[: limits["service"]],
            "environment": environment[: limits["environment"]],
            "version": version[: limits["version"]],
            "span": span[: limits["span"]],
            "type": kind[: limits["type"]],
            "first_seen": now,
            "last_seen": now,
            "count": count,
        }
        for version, span, kind, count in seen
    ]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(ExceptionType)
    stmt = stmt.on_conflict_do_update(
        index_elements=["service", "environment", "version", "span", "type"],
        set_={
            "last_seen": stmt.excluded.last_seen,
            "count": func.max(ExceptionType.count, stmt.excluded.count)
            if dialect is sqlite
            else func.greatest(ExceptionType.count, stmt.excluded.count),
        },
    )
    # One statement per row: a batch that names one key twice fails on PostgreSQL.
    for row in {(r["version"], r["span"], r["type"]): r for r in rows}.values():
        session.execute(stmt, row)


def exception_history(
    session: Session,
    *,
    service: str,
    environment: str,
    versions: int,
    since: datetime,
    exclude: tuple[str, datetime] | None = None,
) -> Sequence[ExceptionType]:
    """Exception types of the service's last ``versions`` versions, or seen since ``since``.

    Args:
        session: the store.
        service: the service.
        environment: its environment.
        versions: how many of the most recently seen versions count.
        since: rows seen at or after this time count whatever their version.
        exclude: (version, time): leave out that version's rows first seen at or after the time,
            which are the release's own findings from its earlier looks.

    Returns:
        The rows, most recently seen first.
    """
    mine = and_(ExceptionType.service == service, ExceptionType.environment == environment)
    if exclude is not None:
        version, after = exclude
        mine = and_(mine, or_(ExceptionType.version != version, ExceptionType.first_seen < after))
    recent = (
        select(ExceptionType.version)
        .where(mine)
        .group_by(ExceptionType.version)
        .order_by(func.max(ExceptionType.last_seen).desc())
        .limit(versions)
    )
    rows = select(ExceptionType).where(
        mine,
        or_(ExceptionType.version.in_(recent.scalar_subquery()), ExceptionType.last_seen >= since),
    )
    return session.scalars(rows.order_by(ExceptionType.last_seen.desc())).all()


def host_spread_history(
    session: Session,
    *,
    service: str,
    environment: str,
    version: str,
    deployed_before: datetime,
    since: datetime,
    releases: int,
) -> list[tuple[str, dict[str, Any]]]:
    """The host spread recorded by the service's earlier releases, newest first.

    One entry per release, from its latest finished check that recorded one (``result["tau"]``,
    see :func:`feedbot.checks.pipeline.tau_json`), for at most ``releases`` releases of another
    version than ``version`` deployed at or before ``deployed_before`` whose check finished at
    or after ``since``.

    Returns:
        (release version, recorded spread) pairs.
    """
    rows = session.execute(
        # Only the recorded spread, not the whole report each check stored beside it.
        select(Release.id, Release.version, Check.result["tau"])
        .join(Check, Check.release_id == Release.id)
        .where(
            Release.service == service,
            Release.environment == environment,
            Release.version != version,
            Release.deployed_at <= deployed_before,
            Check.state == "done",
            Check.finished_at >= since,
        )
        .order_by(Release.deployed_at.desc(), Release.id.desc(), Check.finished_at.desc())
    )
    out: list[tuple[str, dict[str, Any]]] = []
    taken: set[int] = set()
    for release_id, version, tau in rows:
        if release_id in taken or not isinstance(tau, dict):
            continue
        taken.add(release_id)
        out.append((version, tau))
        if len(out) >= releases:
            break
    return out


def lock_release(session: Session, release_id: int) -> None:
    """Hold the release's row until the transaction ends (``SELECT … FOR UPDATE``).

    Two replicas recording checks of one release take turns, so the second counts the first's
    check finished. On SQLite, whose write transactions already take turns, it only reads.
    """
    session.execute(select(Release.id).where(Release.id == release_id).with_for_update())


def renew_check_lease(session: Session, check: Check, *, worker: str, until: datetime) -> bool:
    """Extend ``worker``'s lease on a running check atomically; False when it lost the check."""
    result = session.execute(
        update(Check)
        .where(Check.id == check.id, Check.state == "running", Check.claimed_by == worker)
        .values(lease_until=until)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def releases_between(session: Session, start: datetime, end: datetime) -> Sequence[Release]:
    """Releases deployed in ``[start, end)``, oldest first (the weekly digest's week)."""
    stmt = (
        select(Release)
        .where(Release.deployed_at >= start, Release.deployed_at < end)
        .order_by(Release.deployed_at)
    )
    return session.scalars(stmt).all()


def add_digest(session: Session, *, channel: str, period: str, now: datetime) -> Digest:
    """Record a channel's digest of a period; the unique (channel, period) key makes it once.

    Raises:
        sqlalchemy.exc.IntegrityError: another replica recorded it first (at flush).
    """
    row = Digest(channel=channel, period=period, created_at=now)
    session.add(row)
    session.flush()
    return row


def service_names(session: Session) -> Sequence[str]:
    """Every service that registered a release."""
    return session.scalars(select(Release.service).distinct()).all()


def releases_of(
    session: Session, service: str, version: str | None = None, *, limit: int | None = None
) -> Iterator[Release]:
    """Releases of ``service`` (of ``version``), newest first."""
    stmt = select(Release).where(Release.service == service)
    if version is not None:
        stmt = stmt.where(Release.version == version)
    stmt = stmt.order_by(Release.deployed_at.desc(), Release.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    yield from session.scalars(stmt)


def store_counts(session: Session, now: datetime) -> dict[str, Any]:
    """What ``/metrics`` reports of the store: checks and deliveries by state, releases, lag."""
    return {
        "checks": _count_by(session, Check.state),
        "deliveries": _count_by(session, Delivery.state),
        "releases": session.scalar(select(func.count(Release.id))) or 0,
        "lagging": session.scalar(
            select(func.count(Check.id)).where(Check.state == "pending", Check.due_at < now)
        )
        or 0,
    }


def _count_by(session: Session, column: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    return {str(state): int(n) for state, n in rows}


def releases_shipped_by(session: Session, user_id: str, *, limit: int) -> list[Release]:
    """The newest ``limit`` releases whose author (or resolved recipient) is ``user_id``."""
    stmt = (
        select(Release)
        .where(or_(Release.author_slack == user_id, Release.owner == user_id))
        .order_by(Release.deployed_at.desc(), Release.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def newer_home_pending(session: Session, *, recipient: str, after_id: int) -> bool:
    """Whether a Home tab publication of ``recipient`` queued after ``after_id`` is pending."""
    stmt = select(Delivery.id).where(
        Delivery.kind == "home",
        Delivery.recipient == recipient,
        Delivery.state == "pending",
        Delivery.id > after_id,
    )
    return session.scalars(stmt.limit(1)).first() is not None


def coalesce_home_deliveries(
    session: Session, *, recipient: str, before_id: int, worker: str, now: datetime
) -> int:
    """Mark the pending Home tab publications of ``recipient`` older than ``before_id`` sent.

    A Home tab publication renders the whole view afresh, so once a newer one went out the older
    ones have nothing left to say. Rows another sender is attempting (a live lease not held by
    ``worker``) are left alone. The caller commits.

    Returns:
        How many rows were marked.
    """
    stmt = (
        update(Delivery)
        .where(
            Delivery.kind == "home",
            Delivery.recipient == recipient,
            Delivery.state == "pending",
            Delivery.id < before_id,
            or_(_lease_free(now), Delivery.claimed_by == worker),
        )
        .values(state="sent", sent_at=now, lease_until=None, last_error="coalesced")
    )
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def release_by_id(session: Session, release_id: int) -> Release | None:
    """One release by its id (the release page)."""
    return session.get(Release, release_id)


def release_charts(session: Session, release_id: int) -> list[tuple[str, bytes]]:
    """The charts queued for a release's thread, in order: ``(title, PNG)`` each."""
    stmt = (
        select(Delivery.file_title, Delivery.file_data)
        .where(
            Delivery.release_id == release_id,
            Delivery.kind == "chart",
            Delivery.file_data.is_not(None),
        )
        .order_by(Delivery.id)
    )
    return [(title or "chart", bytes(data)) for title, data in session.execute(stmt) if data]


def releases_in(
    session: Session, start: datetime, end: datetime, environments: Collection[str] | None = None
) -> Sequence[Release]:
    """Releases deployed in ``[start, end)``, oldest first, optionally in some environments."""
    stmt = select(Release).where(Release.deployed_at >= start, Release.deployed_at < end)
    if environments is not None:
        stmt = stmt.where(Release.environment.in_(list(environments)))
    return session.scalars(stmt.order_by(Release.deployed_at, Release.id)).all()
