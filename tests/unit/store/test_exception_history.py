"""The exception history: upserted per check, read back as the last versions and days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.store import queries
from feedbot.store.models import Change, ExceptionType, Release

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)


def _record(session: Session, version: str, kind: str, at: datetime, count: int = 1) -> None:
    queries.record_exception_types(
        session,
        service="vault",
        environment="production",
        seen=[(version, "GET /vaults", kind, count)],
        now=at,
    )
    session.commit()


def _history(session: Session, **over: object) -> set[tuple[str, str]]:
    args: dict[str, object] = {
        "service": "vault",
        "environment": "production",
        "versions": 3,
        "since": T0 - timedelta(days=7),
    }
    args.update(over)
    return {(r.version, r.type) for r in queries.exception_history(session, **args)}  # type: ignore[arg-type]


def test_a_second_sighting_refreshes_the_row(db_session: Session) -> None:
    _record(db_session, "1.0", "KeyError", T0, count=5)
    _record(db_session, "1.0", "KeyError", T0 + timedelta(hours=1), count=3)
    _record(db_session, "1.0", "KeyError", T0 + timedelta(hours=2), count=9)
    db_session.expire_all()
    (row,) = db_session.scalars(select(ExceptionType)).all()
    assert (row.first_seen, row.last_seen, row.count) == (T0, T0 + timedelta(hours=2), 9)


def test_one_batch_may_name_a_key_twice(db_session: Session) -> None:
    seen = [("1.0", "GET /a", "KeyError", 2), ("1.0", "GET /a", "KeyError", 4)]
    queries.record_exception_types(
        db_session, service="vault", environment="production", seen=seen, now=T0
    )
    db_session.commit()
    assert len(db_session.scalars(select(ExceptionType)).all()) == 1


def test_history_is_the_versions_seen_last_or_the_last_days(db_session: Session) -> None:
    for day, version in enumerate(("0.9", "1.0", "1.1", "1.2", "1.3")):
        _record(db_session, version, f"E{version}", T0 - timedelta(days=20 - day))
    _record(db_session, "0.1", "Old", T0 - timedelta(days=3))  # old version, seen lately
    queries.record_exception_types(
        db_session, service="other", environment="production",
        seen=[("1.3", "GET /vaults", "Elsewhere", 1)], now=T0,
    )  # fmt: skip
    db_session.commit()
    # The versions seen most recently: 0.1 came back (a rollback) and counts as recent.
    assert _history(db_session) == {("1.2", "E1.2"), ("1.3", "E1.3"), ("0.1", "Old")}
    assert ("1.1", "E1.1") in _history(db_session, versions=4)
    assert ("0.9", "E0.9") in _history(db_session, versions=0, since=T0 - timedelta(days=30))
    assert _history(db_session, versions=1, since=T0) == {("0.1", "Old")}
    assert _history(db_session, environment="staging") == set()


def test_the_releases_own_sightings_are_left_out(db_session: Session) -> None:
    deployed = T0
    _record(db_session, "2.0", "Before", deployed - timedelta(days=2))  # an earlier deploy of 2.0
    _record(db_session, "2.0", "Mine", deployed + timedelta(minutes=15))  # this release's look 1
    _record(db_session, "1.9", "Base", deployed + timedelta(minutes=15))
    got = _history(db_session, exclude=("2.0", deployed))
    assert got == {("2.0", "Before"), ("1.9", "Base")}


def test_a_change_keeps_its_traced_functions(db_session: Session) -> None:
    release = Release(
        service="vault", version="1.0", environment="production", source="generic",
        deployed_at=T0, received_at=T0,
    )  # fmt: skip
    release.changes = [
        Change(file="a.py", functions=["a.f", "a.g"], traced=["a.f"]),
        Change(file="b.py"),
    ]
    db_session.add(release)
    db_session.commit()
    db_session.expire_all()
    got = db_session.scalars(select(Change).order_by(Change.id)).all()
    assert [c.traced for c in got] == [["a.f"], []]
