"""A check whose release has no registered predecessor finds its baseline in the traces."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.store.models import Check
from tests.factories import DEPLOYED, event, otlp_spans, settings

CONF = settings(
    checks={"after": ["15m", "1h"]},
    services={"vault-service": {"detectors": {"latency": {"warmup": "0"}}}},
)


def register(sessions: sessionmaker[Session], **over: object) -> None:
    with sessions() as session:
        register_release(session, event(**over), settings=CONF, now=DEPLOYED)


def send(backend: EmbeddedBackend, version: str, start_hours: float, n: int, ms: float) -> None:
    rng = np.random.default_rng(n)
    spans = [("/vaults/{id}", float(ms * rng.lognormal(0, 0.2)), False) for _ in range(n)]
    start = DEPLOYED + timedelta(hours=start_hours)
    body = otlp_spans(service="vault-service", version=version, start=start, spans=spans)
    backend.ingest(body, "application/x-protobuf", None)


def first_report(sessions: sessionmaker[Session], session: Session) -> dict[str, Any]:
    clock = FixedClock(DEPLOYED + timedelta(minutes=15))
    backend = EmbeddedBackend(sessions)
    run = CheckRunner(sessions=sessions, backend=backend, settings=CONF, clock=clock, worker="w")
    assert run.run_due() == 1
    session.expire_all()
    check = session.scalars(select(Check).where(Check.state == "done")).one()
    assert check.result is not None
    report: dict[str, Any] = check.result["report"]
    return report


def test_the_first_release_after_install_is_compared_with_the_version_the_traces_show(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    backend = EmbeddedBackend(db_sessions)
    send(backend, "1.4.0", -5, 20, 20.0)  # older, rarer
    send(backend, "1.4.1", -2, 300, 20.0)  # what served before the deploy
    send(backend, "1.4.2", 0.05, 300, 30.0)
    register(db_sessions, version="1.4.2")  # nothing registered before it

    report = first_report(db_sessions, db_session)
    assert report["baseline_version"] == "1.4.1"
    (group,) = report["groups"]
    assert (group["baseline"]["count"], group["candidate"]["count"]) == (300, 300)
    assert any(f["kind"] == "latency_regression" for f in report["findings"])
    (note,) = [n for n in report["notes"] if n.startswith("Baseline version 1.4.1")]
    assert "most common other version" in note and "also seen: 1.4.0 (20)" in note
    assert "No earlier release of the service was registered" in note


def test_a_registered_previous_release_stays_the_baseline(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    backend = EmbeddedBackend(db_sessions)
    send(backend, "1.4.0", -5, 40, 20.0)
    send(backend, "1.4.1", -2, 300, 20.0)  # more common, but never registered
    send(backend, "1.4.2", 0.05, 300, 20.0)
    register(db_sessions, version="1.4.0", commit="a", deployed_at=DEPLOYED - timedelta(days=1))
    register(db_sessions, version="1.4.2", commit="b")

    report = first_report(db_sessions, db_session)
    assert report["baseline_version"] == "1.4.0"
    assert not any("most common other version" in n for n in report["notes"])
