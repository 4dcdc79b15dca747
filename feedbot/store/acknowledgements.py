"""What people said through Slack's buttons: findings marked expected, muted services.

The statements live here, next to the listeners that write them, and are read by the check runner
and ``/feedback``. Functions take a Session; callers commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedbot.store.models import Acknowledgement, Mute


def acknowledge(
    session: Session, *, release_id: int, finding_key: str, user_id: str, now: datetime
) -> bool:
    """Mark a finding of a release as expected; False when it already was (idempotent).

    Args:
        session: the store.
        release_id: the release the finding is about.
        finding_key: :attr:`feedbot.analysis.findings.Finding.key`.
        user_id: who pressed the button.
        now: when.

    Returns:
        True when this call recorded it.
    """
    if finding_key in acknowledged(session, release_id):
        return False
    row = Acknowledgement(
        release_id=release_id, finding_key=finding_key, user_id=user_id, created_at=now
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False  # a double click raced this one to the unique constraint
    return True


def acknowledged(session: Session, release_id: int) -> set[str]:
    """Keys of the findings marked expected for a release."""
    stmt = select(Acknowledgement.finding_key).where(Acknowledgement.release_id == release_id)
    return set(session.scalars(stmt))


def mute(session: Session, *, service: str, span: timedelta, user_id: str, now: datetime) -> Mute:
    """Hold back a service's check replies and broadcasts for ``span`` from ``now``."""
    row = Mute(service=service, until=now + span, user_id=user_id, created_at=now)
    session.add(row)
    session.flush()
    return row


def muted_until(session: Session, service: str, now: datetime) -> datetime | None:
    """The end of the longest mute of ``service`` still running at ``now``, else None."""
    stmt = (
        select(Mute.until)
        .where(Mute.service == service, Mute.until > now)
        .order_by(Mute.until.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()
