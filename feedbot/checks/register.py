"""Registering a release: idempotent, all-or-nothing, with its checks and first message planned.

One transaction stores the release, its changes, its checks, the source's delivery id, the
supersession of older releases and the outbox rows of the messages this causes. Either all of it
is there afterwards or none of it. :func:`register_releases` registers several in one
transaction (the web app's group commit: one commit for the deploys that arrived together).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from feedbot import failpoints
from feedbot.checks.plan import plan_checks
from feedbot.checks.recorder import release_status
from feedbot.config import Settings
from feedbot.digest import blocks, text
from feedbot.notify.outbox import Outgoing, enqueue_all
from feedbot.releases.event import ReleaseEvent
from feedbot.releases.owners import NOBODY, plan_owner
from feedbot.store import queries, registration
from feedbot.store.db import UNAVAILABLE
from feedbot.store.models import Check, Release
from feedbot.store.registration import RegistrationContext, Row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """The outcome of :func:`register_release`."""

    release_id: int
    created: bool
    checks: int
    #: Set when nobody can be told about the release: what to configure so someone is.
    warning: str | None = None


def register_release(
    session: Session, event: ReleaseEvent, *, settings: Settings, now: datetime
) -> Registration:
    """Store a release event, or return the release it repeats (committed).

    The same delivery id from a source, or the same service + version + environment + commit,
    is the same release: nothing new is planned or sent.
    """
    try:
        [registration] = _stage(session, [event], settings=settings, now=now)
        if registration.created:
            failpoints.hit("register-before-commit")
        session.commit()
    except IntegrityError:
        # Another request registered the same release a moment earlier: it is that release.
        session.rollback()
        again = _existing(session, event)
        if again is None:
            raise
        return Registration(again.id, False, len(again.checks))
    _log_warning(registration)
    return registration


def register_releases(
    session: Session, events: Sequence[ReleaseEvent], *, settings: Settings, now: datetime
) -> list[Registration | Exception]:
    """Store several release events in one transaction with one commit (committed).

    Each event is registered as :func:`register_release` registers it, in order: the same
    delivery or identity twice is one release, and a later deploy of a service supersedes an
    earlier one of the same batch. Nothing is committed until every event is staged, so a
    caller that answers after this returns answers only for what is stored.

    When the batch fails, its events are registered again one by one (each in its own
    transaction), so one event's failure is its own. When the database is unavailable
    (:data:`feedbot.store.db.UNAVAILABLE`: down, a lock wait given up, a deadlock) every event
    gets that error without a retry, which the web app answers 503 with ``Retry-After``.

    Returns:
        For each event in order, its registration, or the exception that stopped it.
    """
    try:
        registrations = _stage(session, events, settings=settings, now=now)
        if any(r.created for r in registrations):
            failpoints.hit("register-before-commit")
        session.commit()
    except UNAVAILABLE as exc:
        session.rollback()
        log.warning("registering %d releases: database unavailable: %s", len(events), exc)
        return [_unavailable(exc) for _ in events]
    except Exception as exc:
        # One by one, also a batch of one: register_release takes a release that another
        # replica registered a moment earlier (an IntegrityError here) for the same release.
        session.rollback()
        log.info("registering %d releases together failed (%r): one by one", len(events), exc)
        return [_alone(session, event, settings=settings, now=now) for event in events]
    for each in registrations:
        _log_warning(each)
    return list(registrations)


def _alone(
    session: Session, event: ReleaseEvent, *, settings: Settings, now: datetime
) -> Registration | Exception:
    try:
        return register_release(session, event, settings=settings, now=now)
    except Exception as exc:
        session.rollback()
        return exc


def _unavailable(exc: Exception) -> Exception:
    """A copy of ``exc`` per request: each request raises its own instance."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


def _stage(
    session: Session, events: Sequence[ReleaseEvent], *, settings: Settings, now: datetime
) -> list[Registration]:
    """Register ``events`` in the session's transaction, in order (not committed).

    Events are staged in rounds of at most one per service and environment (and per delivery
    id), so each round reads, inserts and updates for all of its events in one statement of
    each kind, and a later event of a service reads what an earlier one wrote.
    """
    done: dict[int, Registration] = {}
    for batch in _rounds(events):
        _stage_round(session, [(i, events[i]) for i in batch], done, settings, now)
    return [done[i] for i in range(len(events))]


def _rounds(events: Sequence[ReleaseEvent]) -> list[list[int]]:
    """Positions of ``events`` in rounds: an event comes a round after the last earlier one of
    its service and environment, or of its delivery id."""
    rounds: list[list[int]] = []
    last: dict[tuple[str, ...], int] = {}
    for i, event in enumerate(events):
        keys = [("service", event.service, event.environment)]
        if event.delivery_id:
            keys.append(("delivery", event.source, event.delivery_id))
        n = max((last[k] + 1 for k in keys if k in last), default=0)
        last.update(dict.fromkeys(keys, n))
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


_Item = tuple[int, ReleaseEvent]


def _stage_round(
    session: Session,
    items: list[_Item],
    done: dict[int, Registration],
    settings: Settings,
    now: datetime,
) -> None:
    """Stage events of different services and delivery ids: ``done`` gets their registrations.

    The round's delivery ids are written at its end, so that a later round's look-up sees them.
    """
    pairs = {(e.source, e.delivery_id) for _, e in items if e.delivery_id}
    delivered = registration.releases_for_deliveries(session, pairs)
    fresh: list[_Item] = []
    for i, event in items:
        known = delivered.get((event.source, event.delivery_id or ""))
        if known is not None:
            done[i] = Registration(known.id, False, len(known.checks))
        else:
            fresh.append((i, event))
    keys = [
        registration.ReleaseKey(
            service=e.service,
            environment=e.environment,
            version=e.version,
            commit=e.commit,
            deployed_at=e.deployed_at or now,
        )
        for _, e in fresh
    ]
    new: list[tuple[int, ReleaseEvent, RegistrationContext]] = []
    deliveries: list[Row] = []
    for (i, event), context in zip(
        fresh, registration.registration_contexts(session, keys), strict=True
    ):
        same = context[0]
        if same is None:
            new.append((i, event, context))
            continue
        _remember_delivery(deliveries, event, same.id, now)
        done[i] = Registration(same.id, False, len(same.checks))
    if new:
        _new_releases(session, new, done, deliveries, settings, now)
    registration.add_webhook_deliveries(session, deliveries)


def _existing(session: Session, event: ReleaseEvent) -> Release | None:
    found = None
    if event.delivery_id:
        found = queries.release_for_delivery(session, event.source, event.delivery_id)
    return found or queries.find_release(
        session,
        service=event.service,
        version=event.version,
        environment=event.environment,
        commit=event.commit,
    )


def _remember_delivery(
    deliveries: list[Row], event: ReleaseEvent, release_id: int, now: datetime
) -> None:
    """Add the row of the event's delivery id (looked up before and not found), if it has one."""
    if event.delivery_id:
        deliveries.append(
            {
                "source": event.source,
                "delivery_id": event.delivery_id,
                "release_id": release_id,
                "received_at": now,
            }
        )


def _new_releases(
    session: Session,
    new: list[tuple[int, ReleaseEvent, RegistrationContext]],
    done: dict[int, Registration],
    deliveries: list[Row],
    settings: Settings,
    now: datetime,
) -> None:
    # Every read comes first and every write is batched: on PostgreSQL new releases with older
    # ones to supersede are 7 statements however many there are (benchmarks/statements.py
    # counts them): the services' releases, the older releases' checks, then the writes.
    older_checks = registration.checks_of(session, [old.id for _, _, c in new for old in c[3]])
    rows = [_release_row(event, settings, now, context) for _, event, context in new]
    plans = [plan_checks(row["deployed_at"], settings.checks.after) for row in rows]
    # The INSERT waits on a concurrent registration's uncommitted row with the same identity
    # and fails once that one commits, as the commit itself can.
    release_ids = registration.insert_releases(
        session,
        rows,
        changes=[_change_rows(event) for _, event, _ in new],
        checks=[[_check_row(p.offset, p.due_at) for p in plan] for plan in plans],
    )
    supersessions = []
    messages: list[Outgoing] = []
    for (i, event, context), row, release_id, plan in zip(
        new, rows, release_ids, plans, strict=True
    ):
        # Written by a Core INSERT, not added to the session: the messages are rendered from it.
        release = Release(id=release_id, **row)
        _remember_delivery(deliveries, event, release_id, now)
        older = context[3]
        ids = {old.id for old in older}
        checks = [c for c in older_checks if c.release_id in ids]
        supersession, replies = _supersede_older(session, release, older, checks, now)
        supersessions.append(supersession)
        messages += replies
        messages.append(_announcement(release, settings))
        done[i] = Registration(release_id, True, len(plan), _warning(release, settings))
    registration.supersede(session, supersessions, now=now)
    enqueue_all(session, messages, now=now)


def _warning(release: Release, settings: Settings) -> str | None:
    # On the console (no Slack token) every message is printed: nobody is missing then.
    if release.owner != NOBODY or not settings.slack.bot_token:
        return None
    return (
        f"nobody will be told about {release.service} {release.version}: the deploy names no "
        f"author Slack id or known person, and services.{release.service}.owners, "
        f"services.{release.service}.channel and slack.weekly_digest.channel are not set"
    )


def _log_warning(registration: Registration) -> None:
    if registration.warning:
        log.warning("release %s: %s", registration.release_id, registration.warning)


def _announcement(release: Release, settings: Settings) -> Outgoing:
    parent = blocks.release_announcement(release, settings.checks.after)
    return Outgoing(
        key=f"release:{release.id}:parent",
        kind="parent",
        recipient=release.owner or NOBODY,
        text=parent.text,
        blocks=parent.blocks,
        release=release,
    )


def _release_row(
    event: ReleaseEvent, settings: Settings, now: datetime, context: RegistrationContext
) -> dict[str, Any]:
    """The column values of the new release of ``event``."""
    owner = plan_owner(event.author, event.service, settings)
    _, previous, seen, _ = context
    return {
        "service": event.service,
        "version": event.version,
        "environment": event.environment,
        "commit": event.commit,
        "previous_commit": event.previous_commit,
        "repository": event.repository,
        "title": event.title,
        "url": event.url,
        "author_email": event.author.email,
        "author_name": event.author.name,
        "author_github": event.author.github,
        "author_gitlab": event.author.gitlab,
        "author_slack": event.author.slack,
        "features": list(event.features),
        "source": event.source,
        "deployed_at": event.deployed_at or now,
        "received_at": now,
        "state": "active",
        "owner": owner.recipient,
        "owner_reason": owner.reason,
        "previous_release_id": previous.id if previous is not None else None,
        "superseded_by_id": None,
        "is_rollback": previous is not None
        and (seen or _older_version(event.version, previous.version)),
    }


def _change_rows(event: ReleaseEvent) -> list[Row]:
    """The column values of the changes of ``event``'s new release (but its id)."""
    return [
        {
            "file": c.file,
            "functions": list(c.functions),
            "lines": [list(r) for r in c.lines],
            "traced": list(c.traced),
        }
        for c in event.changes
    ]


def _check_row(offset: timedelta, due_at: datetime) -> Row:
    """The column values of a new release's pending check (but its release's id)."""
    return {
        "offset_seconds": int(offset.total_seconds()),
        "due_at": due_at,
        "state": "pending",
        "attempts": 0,
    }


def _older_version(new: str, old: str) -> bool:
    """True when both look like dotted numbers (``v1.4.2``) and ``new`` sorts before ``old``."""
    pattern = re.compile(r"^v?(\d+(?:\.\d+)*)$")
    a, b = pattern.match(new), pattern.match(old)
    if not a or not b:
        return False
    return tuple(map(int, a.group(1).split("."))) < tuple(map(int, b.group(1).split(".")))


def _supersede_older(
    session: Session,
    release: Release,
    older: Sequence[Release],
    older_checks: Sequence[Check],
    now: datetime,
) -> tuple[registration.Supersession, list[Outgoing]]:
    """End the older active releases' pending checks: what to write, and the messages that
    tell their threads."""
    reason = f"superseded by {release.version}"
    pending = [c for c in older_checks if c.state == "pending"]
    supersession = registration.Supersession(
        by=release.id,
        releases=[old.id for old in older],
        checks=[c.id for c in pending],
        reason=reason,
    )
    # The objects take the values written (registration.supersede), as loaded: nothing is left for a
    # flush to do.
    for check in pending:
        for key, value in (("state", "superseded"), ("finished_at", now), ("last_error", reason)):
            set_committed_value(check, key, value)
    messages = []
    for old in older:
        set_committed_value(old, "state", "superseded")
        set_committed_value(old, "superseded_by_id", release.id)
        checks = [c for c in older_checks if c.release_id == old.id]
        ended = sum(1 for c in pending if c.release_id == old.id)
        messages.append(
            Outgoing(
                key=f"release:{old.id}:superseded",
                kind="reply",
                recipient=old.owner or NOBODY,
                text=text.superseded(old, release, ended),
                release=old,
            )
        )
        messages.append(_final_status(session, old, checks, release))
    return supersession, messages


def _final_status(
    session: Session, old: Release, checks: Sequence[Check], newer: Release
) -> Outgoing:
    """Bring the old thread's status line to its end: superseded by ``newer``, before or after
    its checks."""
    status = release_status(session, old, checks, newer=newer)
    offsets = [timedelta(seconds=c.offset_seconds) for c in checks]
    return Outgoing(
        key=f"release:{old.id}:status:superseded",
        kind="status",
        recipient=old.owner or "console",
        text=f"{text.release_parent(old, offsets)}\n{status}",
        blocks=blocks.release_announcement(old, offsets, status=status).blocks,
        release=old,
    )
