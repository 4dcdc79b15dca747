"""The statements about pull-request previews: keep one row per previewed head, find them again.

Functions take a Session; callers commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.store.models import Preview


def save_preview(
    session: Session,
    *,
    service: str,
    commit: str,
    environment: str | None,
    repository: str | None,
    pull_request: int | None,
    url: str | None,
    functions: Sequence[dict[str, Any]],
    now: datetime,
) -> Preview:
    """The preview of ``service`` at ``commit``, created or brought up to date (not committed)."""
    row = session.scalars(
        select(Preview).where(Preview.service == service, Preview.commit == commit)
    ).first()
    if row is None:
        row = Preview(service=service, commit=commit, created_at=now)
        session.add(row)
    row.environment, row.repository, row.pull_request = environment, repository, pull_request
    row.url, row.functions = url, [dict(f) for f in functions]
    if pull_request is not None and repository is not None and row.comment_id is None:
        row.comment_id = comment_of(session, repository, pull_request)
    session.flush()
    return row


def comment_of(session: Session, repository: str, pull_request: int) -> int | None:
    """The id of the comment an earlier preview of this pull request posted, if any."""
    return session.scalars(
        select(Preview.comment_id)
        .where(
            Preview.repository == repository,
            Preview.pull_request == pull_request,
            Preview.comment_id.is_not(None),
        )
        .order_by(Preview.id.desc())
        .limit(1)
    ).first()


def recent_previews(
    session: Session, service: str, since: datetime, until: datetime, limit: int = 50
) -> list[Preview]:
    """The service's previews made in ``[since, until]``, newest first."""
    return list(
        session.scalars(
            select(Preview)
            .where(
                Preview.service == service,
                Preview.created_at >= since,
                Preview.created_at <= until,
            )
            .order_by(Preview.created_at.desc(), Preview.id.desc())
            .limit(limit)
        )
    )
