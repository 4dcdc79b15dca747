"""Registering a release: idempotent, all-or-nothing, with its checks and first message planned.

One transaction stores the release, its changes, its checks, the source's delivery id, the
supersession of older releases and the outbox rows of the messages this causes. Either all of it
is there afterwards or none of it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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
from feedbot.store import queries
from feedbot.store.models import Change, Check, Release, WebhookDelivery

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
    existing = _by_delivery(session, event)
    context = None
    if existing is None:
        context = _context(session, event, now)
        existing = context[0]
    if existing is not None:
        _remember_delivery(session, event, existing, now)
        checks = len(existing.checks)  # before the commit: after it, another checkout
        session.commit()
        return Registration(existing.id, False, checks)
    assert context is not None
    try:
        # The INSERT (flushed inside) waits on a concurrent registration's uncommitted row with
        # the same identity and fails once that one commits, as the commit itself can.
        release = _new_release(session, event, settings, now, context)
        failpoints.hit("register-before-commit")
        session.commit()
    except IntegrityError:
        # Another request registered the same release a moment earlier: it is that release.
        session.rollback()
        again = _existing(session, event)
        if again is None:
            raise
        return Registration(again.id, False, len(again.checks))
    warning = None
    # On the console (no Slack token) every message is printed: nobody is missing then.
    if release.owner == NOBODY and settings.slack.bot_token:
        warning = (
            f"nobody will be told about {release.service} {release.version}: the deploy names no "
            f"author Slack id or known person, and services.{release.service}.owners, "
            f"services.{release.service}.channel and slack.weekly_digest.channel are not set"
        )
        log.warning("release %s: %s", release.id, warning)
    return Registration(release.id, True, len(release.checks), warning)


def _existing(session: Session, event: ReleaseEvent) -> Release | None:
    return _by_delivery(session, event) or queries.find_release(
        session,
        service=event.service,
        version=event.version,
        environment=event.environment,
        commit=event.commit,
    )


def _by_delivery(session: Session, event: ReleaseEvent) -> Release | None:
    if not event.delivery_id:
        return None
    return queries.release_for_delivery(session, event.source, event.delivery_id)


#: (release with the event's identity, previous release, its version seen before, active ones)
_Context = tuple[Release | None, Release | None, bool, list[Release]]


def _context(session: Session, event: ReleaseEvent, now: datetime) -> _Context:
    return queries.registration_context(
        session,
        service=event.service,
        environment=event.environment,
        version=event.version,
        commit=event.commit,
        deployed_at=event.deployed_at or now,
    )


def _remember_delivery(
    session: Session, event: ReleaseEvent, release: Release, now: datetime
) -> None:
    if not event.delivery_id:
        return
    if queries.release_for_delivery(session, event.source, event.delivery_id) is None:
        session.add(
            WebhookDelivery(
                source=event.source,
                delivery_id=event.delivery_id,
                release_id=release.id,
                received_at=now,
            )
        )


def _new_release(
    session: Session, event: ReleaseEvent, settings: Settings, now: datetime, context: _Context
) -> Release:
    # Every read comes first and every write is batched: on PostgreSQL a new release with an
    # older one to supersede is 7 statements (benchmarks/statements.py counts them): one read of
    # the service's releases, one of the older releases' checks, then the writes.
    deployed_at = event.deployed_at or now
    owner = plan_owner(event.author, event.service, settings)
    _, previous, seen, older = context
    older_checks = queries.checks_of(session, [old.id for old in older])
    release = Release(
        service=event.service,
        version=event.version,
        environment=event.environment,
        commit=event.commit,
        previous_commit=event.previous_commit,
        repository=event.repository,
        title=event.title,
        url=event.url,
        author_email=event.author.email,
        author_name=event.author.name,
        author_github=event.author.github,
        author_gitlab=event.author.gitlab,
        author_slack=event.author.slack,
        features=list(event.features),
        source=event.source,
        deployed_at=deployed_at,
        received_at=now,
        state="active",
        owner=owner.recipient,
        owner_reason=owner.reason,
        previous_release_id=previous.id if previous is not None else None,
        is_rollback=previous is not None
        and (seen or _older_version(event.version, previous.version)),
    )
    release.changes = [
        Change(
            file=c.file,
            functions=list(c.functions),
            lines=[list(r) for r in c.lines],
            traced=list(c.traced),
        )
        for c in event.changes
    ]
    release.checks = [
        Check(offset_seconds=int(p.offset.total_seconds()), due_at=p.due_at, state="pending")
        for p in plan_checks(deployed_at, settings.checks.after)
    ]
    session.add(release)
    session.flush()
    _remember_delivery(session, event, release, now)
    messages = _supersede_older(session, release, older, older_checks, now)
    parent = blocks.release_announcement(release, settings.checks.after)
    messages.append(
        Outgoing(
            key=f"release:{release.id}:parent",
            kind="parent",
            recipient=release.owner or NOBODY,
            text=parent.text,
            blocks=parent.blocks,
            release=release,
        )
    )
    enqueue_all(session, messages, now=now)
    return release


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
) -> list[Outgoing]:
    """End the older active releases' pending checks; the messages that tells their threads."""
    reason = f"superseded by {release.version}"
    pending = [c for c in older_checks if c.state == "pending"]
    queries.supersede(
        session,
        releases=[old.id for old in older],
        checks=[c.id for c in pending],
        by=release.id,
        reason=reason,
        now=now,
    )
    # The objects take the values just written, as loaded: nothing is left for a flush to do.
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
        messages.append(_final_status(session, old, checks))
    return messages


def _final_status(session: Session, old: Release, checks: Sequence[Check]) -> Outgoing:
    """Bring the old thread's status line to its end: superseded, before or after its checks."""
    status = release_status(session, old, checks)
    offsets = [timedelta(seconds=c.offset_seconds) for c in checks]
    return Outgoing(
        key=f"release:{old.id}:status:superseded",
        kind="status",
        recipient=old.owner or "console",
        text=f"{text.release_parent(old, offsets)}\n{status}",
        blocks=blocks.release_announcement(old, offsets, status=status).blocks,
        release=old,
    )
