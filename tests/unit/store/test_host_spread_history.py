"""The host spread each check records, read back as the service's history (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from feedbot.analysis.detectors import tau_history
from feedbot.checks import pipeline
from feedbot.checks.register import register_release
from feedbot.store import queries
from feedbot.store.models import Check, Release
from tests.factories import DEPLOYED, event, settings

CONF = settings(checks={"after": ["15m", "1h"]})


def _tau(version: str, dof: int, base: str | None = None) -> dict[str, Any]:
    part = {"version": version, "tau": 0.05, "dof": dof, "mean_square": 0.003, "sampling": 0.0005}
    parts = [part] + ([{**part, "version": base, "dof": dof + 1}] if base else [])
    return {"versions": parts}


def _release(
    session: Session, version: str, days_ago: float, *, env: str = "production",
    taus: tuple[dict[str, Any] | None, ...] = (),
) -> Release:  # fmt: skip
    at = DEPLOYED - timedelta(days=days_ago)
    reg = register_release(session, event(version=version, commit=version, environment=env,
                                          deployed_at=at), settings=CONF, now=at)  # fmt: skip
    release = session.get(Release, reg.release_id)
    assert release is not None
    checks = sorted(release.checks, key=lambda c: c.offset_seconds)
    for check, tau in zip(checks, taus, strict=False):
        check.state = "done"
        check.finished_at = at + timedelta(seconds=check.offset_seconds)
        check.result = {
            "report": {"verdict": "neutral"},
            "held": [],
            **({"tau": tau} if tau else {}),
        }
    session.commit()
    return release


def _history(session: Session, current: Release, **over: Any) -> list[tuple[str, dict[str, Any]]]:
    args: dict[str, Any] = {
        "service": "vault-service",
        "environment": "production",
        "version": current.version,
        "deployed_before": current.deployed_at,
        "since": DEPLOYED - timedelta(days=30),
        "releases": 10,
    }
    return queries.host_spread_history(session, **{**args, **over})


def test_each_earlier_release_counts_once_with_its_latest_check(db_session: Session) -> None:
    _release(db_session, "1.0", 40, taus=(_tau("1.0", 2),))  # older than 30 days
    _release(db_session, "1.1", 3, taus=(_tau("1.1", 2, "1.0"), _tau("1.1", 4, "1.0")))
    _release(db_session, "1.2", 2, taus=(_tau("1.2", 2, "1.1"), None))  # latest had none
    _release(db_session, "1.3", 1, env="staging", taus=(_tau("1.3", 2),))
    current = _release(db_session, "1.4", 0, taus=(_tau("1.4", 2, "1.2"),))  # its own look
    _release(db_session, "1.5", -1, taus=(_tau("1.5", 2, "1.4"),))  # deployed after
    db_session.expire_all()
    got = _history(db_session, current)
    assert [(v, [p["dof"] for p in t["versions"]]) for v, t in got] == [
        ("1.2", [2, 3]),
        ("1.1", [4, 5]),
    ]
    assert [v for v, _ in _history(db_session, current, releases=1)] == ["1.2"]
    # Read back as the analysis takes them, then without the versions this check counts.
    records = pipeline.tau_records(got)
    assert [(r.release, [v for v, _ in r.parts]) for r in records] == [
        ("1.2", ["1.2", "1.1"]),
        ("1.1", ["1.1", "1.0"]),
    ]
    history = tau_history("vault-service", records, {"1.4", "1.2"})
    assert [e.dof for e in history.estimates] == [3, 5]


def test_a_malformed_record_is_skipped(db_session: Session) -> None:
    bad = {"versions": [{"version": "1.0", "tau": "x"}, {"dof": 2}]}
    _release(db_session, "1.0", 2, taus=(bad,))
    current = _release(db_session, "1.1", 0)
    got = _history(db_session, current)
    assert [v for v, _ in got] == ["1.0"] and pipeline.tau_records(got) == ()


def test_checks_without_a_result_are_not_read(db_session: Session) -> None:
    _release(db_session, "1.0", 2)
    current = _release(db_session, "1.1", 0)
    assert db_session.query(Check).count() == 4
    assert _history(db_session, current) == []
