from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedbot.store.models import Release


def _release(**over: object) -> Release:
    values: dict[str, object] = {
        "service": "vault",
        "version": "1.0",
        "environment": "production",
        "commit": "abc",
        "source": "generic",
        "deployed_at": datetime(2026, 11, 24, 10, tzinfo=UTC),
        "received_at": datetime(2026, 11, 24, 10, tzinfo=UTC),
    }
    values.update(over)
    return Release(**values)


def test_release_round_trips_aware_utc(db_session: Session) -> None:
    db_session.add(_release())
    db_session.commit()
    db_session.expire_all()
    got = db_session.query(Release).one()
    assert got.deployed_at == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert got.deployed_at.tzinfo is not None


def test_same_service_version_environment_commit_is_unique(db_session: Session) -> None:
    db_session.add(_release())
    db_session.commit()
    db_session.add(_release())
    with pytest.raises(IntegrityError):
        db_session.commit()
