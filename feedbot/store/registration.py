"""The statements that register deploys (:mod:`feedbot.checks.register`), a batch at a time.

Reads: what each new release follows and supersedes (:func:`registration_contexts`, one
statement for many keys), the releases of known delivery ids, the older releases' checks.
Writes: the new releases, their changes and checks and delivery ids (:func:`insert_releases`,
:func:`add_webhook_deliveries`), and the supersession of older ones (:func:`supersede`). Every
write is a Core statement run once for the whole batch (an executemany), not the ORM's flush:
for 50 deploys a flush spent more CPU sorting and tracking objects than the statements took.
Functions take a Session; callers commit.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BindParameter,
    DateTime,
    Select,
    String,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased

from feedbot.store.models import Change, Check, Release, WebhookDelivery

#: Column values of one row, as :func:`insert_releases` and :func:`add_webhook_deliveries` take.
Row = Mapping[str, Any]


@dataclass(frozen=True)
class ReleaseKey:
    """A release to be registered, as :func:`registration_contexts` looks it up."""

    service: str
    environment: str
    version: str
    commit: str
    deployed_at: datetime


#: (release with the key's identity, previous release, its version seen before, active ones)
RegistrationContext = tuple[Release | None, Release | None, bool, list[Release]]


def _context_part(i: int) -> Select[Any]:
    """The rows of :func:`registration_contexts`' key ``i`` (parameters ``service_i`` …),
    tagged with ``i``."""
    service: BindParameter[Any] = bindparam(f"service_{i}")
    environment: BindParameter[Any] = bindparam(f"environment_{i}")
    version: BindParameter[Any] = bindparam(f"version_{i}")
    commit: BindParameter[Any] = bindparam(f"commit_{i}")
    deployed_at: BindParameter[Any] = bindparam(f"at_{i}")
    ours = and_(Release.service == service, Release.environment == environment)
    until = Release.deployed_at <= deployed_at
    newest = (
        select(Release.id)
        .where(ours, until)
        .order_by(Release.deployed_at.desc(), Release.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    older = aliased(Release)
    seen = (
        select(older.id)
        .where(
            older.service == service,
            older.environment == environment,
            older.version == version,
            older.deployed_at < deployed_at,
        )
        .exists()
    )
    exact = and_(Release.version == version, Release.commit == commit)
    return select(literal(i).label("key"), seen.label("seen"), *Release.__table__.columns).where(
        ours, or_(exact, and_(until, or_(Release.state == "active", Release.id == newest)))
    )


@functools.cache
def _registration_contexts(n: int) -> Select[Any]:
    """:func:`registration_contexts`' statement for ``n`` keys, built once: building it costs
    more than running it."""
    parts = [_context_part(i) for i in range(n)]
    rows = union_all(*parts).subquery() if n > 1 else parts[0].subquery()
    release = aliased(Release, rows)
    return select(release, rows.c.key, rows.c.seen)


def _unnested_contexts() -> Select[Any]:
    """:func:`registration_contexts`' statement on PostgreSQL: the keys come as five arrays.

    One short statement for any number of keys, the same each time: psycopg converts a
    statement's text once and caches it only under 4096 characters and 50 parameters, and the
    union of 32 parts (57,000 characters, 160 parameters) cost it 2-3 ms of CPU a run.
    """
    k = (
        func.unnest(
            bindparam("services", type_=ARRAY(String)),
            bindparam("environments", type_=ARRAY(String)),
            bindparam("versions", type_=ARRAY(String)),
            bindparam("commits", type_=ARRAY(String)),
            bindparam("ats", type_=ARRAY(DateTime(timezone=True))),
        )
        .table_valued("service", "environment", "version", "commit", "at", with_ordinality="n")
        .render_derived(name="k")
    )
    # The newest release and whether the version was seen are looked up once per key, in a
    # materialized CTE: as subqueries beside the join, the planner ran them once per candidate
    # row (2,000 times for 20 keys: 115 ms).
    newer = aliased(Release)
    newest = (
        select(newer.id)
        .where(
            newer.service == k.c.service,
            newer.environment == k.c.environment,
            newer.deployed_at <= k.c.at,
        )
        .order_by(newer.deployed_at.desc(), newer.id.desc())
        .limit(1)
        .correlate(k)
        .scalar_subquery()
    )
    older = aliased(Release)
    seen = (
        select(older.id)
        .where(
            older.service == k.c.service,
            older.environment == k.c.environment,
            older.version == k.c.version,
            older.deployed_at < k.c.at,
        )
        .correlate(k)
        .exists()
    )
    keys = (
        select(k, newest.label("newest"), seen.label("seen"))
        .cte("keys")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    ours = and_(Release.service == keys.c.service, Release.environment == keys.c.environment)
    exact = and_(Release.version == keys.c.version, Release.commit == keys.c.commit)
    later = and_(
        Release.deployed_at <= keys.c.at,
        or_(Release.state == "active", Release.id == keys.c.newest),
    )
    return (
        select(Release, (keys.c.n - 1).label("key"), keys.c.seen)
        .select_from(keys)
        .join(Release, and_(ours, or_(exact, later)))
    )


_UNNESTED_CONTEXTS = _unnested_contexts()


def registration_contexts(
    session: Session, keys: Sequence[ReleaseKey]
) -> list[RegistrationContext]:
    """What registering each of several new releases reads, in one statement for all of them.

    For each key: the releases of its service and environment that are its exact identity
    (service, version, environment, commit), or the newest deployed at or before its
    ``deployed_at``, or active and deployed at or before it; and whether an earlier one had its
    version. Keys of one service see the same rows: whichever of them is registered first
    changes what the others would read, so look such keys up one after another.

    Returns:
        For each key in order: (the release with this identity, the release a new one
        follows, whether its version was deployed before (False without a previous release),
        the active releases a new one supersedes). Only the first is meaningful when it is
        not None.

    On PostgreSQL the keys go in as arrays (one statement whatever their number); elsewhere
    as a union of one part per key, :data:`CONTEXT_KEYS` keys a statement at most.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _unnested(session, keys)
    found: list[RegistrationContext] = []
    for start in range(0, len(keys), CONTEXT_KEYS):
        found += _contexts(session, keys[start : start + CONTEXT_KEYS])
    return found


def warm_registration_contexts(session: Session) -> None:
    """Build, compile and run once each statement :func:`registration_contexts` may use.

    Building the statement for 32 keys takes a few hundred milliseconds of CPU: done by the
    first burst of deploys, it would hold all of them.
    """
    key = ReleaseKey(service="", environment="", version="", commit="", deployed_at=_EPOCH)
    if session.get_bind().dialect.name == "postgresql":
        _unnested(session, [key])
        return
    shape = 1
    while shape <= CONTEXT_KEYS:
        _contexts(session, [key] * shape)
        shape *= 2


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Keys in one statement of :func:`registration_contexts` at most (not on PostgreSQL).
CONTEXT_KEYS = 32


def _contexts(session: Session, keys: Sequence[ReleaseKey]) -> list[RegistrationContext]:
    if not keys:
        return []
    # Padded to a power of two with copies of the last key (whose rows are left out below):
    # six statements to build, compile and prepare for any number of keys, not 32.
    shape = 1 << (len(keys) - 1).bit_length()
    padded = [*keys, *[keys[-1]] * (shape - len(keys))]
    params: dict[str, Any] = {}
    for i, key in enumerate(padded):
        params[f"service_{i}"] = key.service
        params[f"environment_{i}"] = key.environment
        params[f"version_{i}"] = key.version
        params[f"commit_{i}"] = key.commit
        params[f"at_{i}"] = key.deployed_at
    found: list[list[tuple[Release, bool]]] = [[] for _ in keys]
    for r, i, seen in session.execute(_registration_contexts(shape), params).all():
        if i < len(keys):
            found[i].append((r, bool(seen)))
    return [_context_of(pairs, key) for pairs, key in zip(found, keys, strict=True)]


def _unnested(session: Session, keys: Sequence[ReleaseKey]) -> list[RegistrationContext]:
    if not keys:
        return []
    params = {
        "services": [k.service for k in keys],
        "environments": [k.environment for k in keys],
        "versions": [k.version for k in keys],
        "commits": [k.commit for k in keys],
        "ats": [k.deployed_at for k in keys],
    }
    found: list[list[tuple[Release, bool]]] = [[] for _ in keys]
    for r, i, seen in session.execute(_UNNESTED_CONTEXTS, params).all():
        found[i].append((r, bool(seen)))
    return [_context_of(pairs, key) for pairs, key in zip(found, keys, strict=True)]


def _context_of(rows: list[tuple[Release, bool]], key: ReleaseKey) -> RegistrationContext:
    same = next((r for r, _ in rows if r.version == key.version and r.commit == key.commit), None)
    earlier = [(r, s) for r, s in rows if r.deployed_at <= key.deployed_at]
    if not earlier:
        return same, None, False, []
    previous, was_seen = max(earlier, key=lambda pair: (pair[0].deployed_at, pair[0].id))
    active = [r for r, _ in earlier if r.state == "active"]
    return same, previous, was_seen, active


def releases_for_deliveries(
    session: Session, source_ids: Collection[tuple[str, str]]
) -> dict[tuple[str, str], Release]:
    """The releases that these (source, delivery id) pairs registered before, by pair."""
    if not source_ids:
        return {}
    sources = sorted({s for s, _ in source_ids})
    ids = sorted({d for _, d in source_ids})
    stmt = (
        select(WebhookDelivery.source, WebhookDelivery.delivery_id, Release)
        .join(Release, Release.id == WebhookDelivery.release_id)
        .where(WebhookDelivery.source.in_(sources), WebhookDelivery.delivery_id.in_(ids))
    )
    wanted = set(source_ids)
    return {(s, d): r for s, d, r in session.execute(stmt).all() if (s, d) in wanted}


_CHECKS_OF = (
    select(Check)
    .where(Check.release_id.in_(bindparam("ids", expanding=True)))
    .order_by(Check.release_id, Check.due_at)
)


def checks_of(session: Session, release_ids: Collection[int]) -> Sequence[Check]:
    """All checks of these releases, by release and then in due order (one statement)."""
    if not release_ids:
        return []
    return session.scalars(_CHECKS_OF, {"ids": list(release_ids)}).all()


_SUPERSEDE_RELEASE = (
    update(Release)
    .where(Release.id == bindparam("old"))
    .values(state="superseded", superseded_by_id=bindparam("by"))
)
_SUPERSEDE_CHECK = (
    update(Check)
    .where(Check.id == bindparam("check"))
    .values(state="superseded", finished_at=bindparam("at"), last_error=bindparam("reason"))
)


@dataclass(frozen=True)
class Supersession:
    """Releases a new release supersedes, and their checks it ends, as :func:`supersede` takes."""

    by: int
    releases: Collection[int]
    checks: Collection[int]
    reason: str


def supersede(session: Session, supersessions: Sequence[Supersession], *, now: datetime) -> None:
    """Mark releases superseded by their new releases and end their checks (two executemany).

    Core UPDATEs by primary key, not the ORM's flush of changed objects: the caller sets the
    same values on the objects it holds as committed (``set_committed_value``).
    """
    # In id order: transactions of other replicas that update some of the same rows take their
    # locks in the same order, so they wait for each other instead of deadlocking.
    pairs = sorted((old, s.by) for s in supersessions for old in s.releases)
    releases = [{"old": old, "by": by} for old, by in pairs]
    ended = sorted((c, s.reason) for s in supersessions for c in s.checks)
    checks = [{"check": c, "at": now, "reason": reason} for c, reason in ended]
    connection = session.connection()
    if releases:
        connection.execute(_SUPERSEDE_RELEASE, releases)
    if checks:
        connection.execute(_SUPERSEDE_CHECK, checks)


# Run on the session's connection: Core statements, whatever entity they name.
_INSERT_RELEASES = insert(Release).returning(Release.id, sort_by_parameter_order=True)
_INSERT_CHANGES = insert(Change)
_INSERT_CHECKS = insert(Check)
_INSERT_WEBHOOK_DELIVERIES = insert(WebhookDelivery)


def insert_releases(
    session: Session,
    releases: Sequence[Row],
    *,
    changes: Sequence[Sequence[Row]],
    checks: Sequence[Sequence[Row]],
) -> list[int]:
    """Insert new releases, each with its changes and checks; their ids, in order.

    Three executemany on the session's connection (the releases' with ``RETURNING id``), and
    nothing is loaded into the session. A release whose identity is already stored, or being
    stored by a concurrent transaction, fails the INSERT with an ``IntegrityError`` (once that
    transaction commits), as the ORM's flush would.

    Args:
        session: the store (the caller commits).
        releases: each new release's column values (no ``id``).
        changes: for each release in order, its changes' column values (no ``release_id``).
        checks: for each release in order, its checks' column values (no ``release_id``).
    """
    if not releases:
        return []
    connection = session.connection()
    ids = list(connection.execute(_INSERT_RELEASES, list(releases)).scalars())
    for statement, children in ((_INSERT_CHANGES, changes), (_INSERT_CHECKS, checks)):
        rows = [
            {**row, "release_id": release_id}
            for release_id, rows_of in zip(ids, children, strict=True)
            for row in rows_of
        ]
        if rows:
            connection.execute(statement, rows)
    return ids


def add_webhook_deliveries(session: Session, rows: Sequence[Row]) -> None:
    """Record delivery ids of sources with the releases they registered (one executemany).

    A delivery id already recorded (by a concurrent transaction, say) fails the INSERT with an
    ``IntegrityError`` on its unique key.
    """
    if rows:
        session.connection().execute(_INSERT_WEBHOOK_DELIVERIES, list(rows))
