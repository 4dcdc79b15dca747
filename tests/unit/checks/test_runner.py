"""The check runner: claiming, leases, retries with backoff, the final note, supersession."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.errors import BackendUnavailable
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.store import queries
from feedbot.store.models import Check, Delivery
from tests.factories import DEPLOYED, event, otlp_spans, settings


class DownBackend:
    """A backend whose server is unreachable (what every HTTP adapter raises then)."""

    name = "down"

    def __init__(self) -> None:
        self.queries: list[SpanQuery] = []

    def collect(self, query: SpanQuery) -> ReleaseData:
        self.queries.append(query)
        raise BackendUnavailable("tempo at http://tempo:3200: connection refused")


def runner(
    sessions: sessionmaker[Session],
    clock: FixedClock,
    backend: object,
    worker: str = "w1",
    **conf: object,
) -> CheckRunner:
    return CheckRunner(
        sessions=sessions,
        backend=backend,  # type: ignore[arg-type]
        settings=settings(checks=conf or {"after": ["15m", "1h"]}),
        clock=clock,
        worker=worker,
    )


def register(sessions: sessionmaker[Session], **over: object) -> int:
    with sessions() as session:
        conf = settings(checks={"after": ["15m", "1h"]})
        return register_release(session, event(**over), settings=conf, now=DEPLOYED).release_id


def states(session: Session) -> list[str]:
    return [c.state for c in session.scalars(select(Check).order_by(Check.due_at))]


def test_nothing_runs_before_it_is_due(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    register(db_sessions)
    clock = FixedClock(DEPLOYED + timedelta(minutes=14))
    assert runner(db_sessions, clock, EmbeddedBackend(db_sessions)).run_due() == 0
    clock.advance(timedelta(minutes=1))
    assert runner(db_sessions, clock, EmbeddedBackend(db_sessions)).run_due() == 1
    db_session.expire_all()
    assert states(db_session) == ["done", "pending"]
    reply = db_session.scalars(select(Delivery).where(Delivery.kind == "reply")).one()
    assert "+15m check of vault-service 1.4.2" in reply.text
    assert "vs no baseline" in reply.text and "verdict: not_running" in reply.text


def test_batches_bound_the_checks_one_call_claims(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    for n in range(3):
        register(db_sessions, version=f"1.4.{n}", commit=f"sha{n}", service=f"svc-{n}")
    clock = FixedClock(DEPLOYED + timedelta(days=2))
    run = runner(db_sessions, clock, EmbeddedBackend(db_sessions))
    assert run.run_due(2, batches=1) == 2  # six are due; one claim of two
    assert run.run_due(2, batches=2) == 4
    assert run.run_due(2) == 0
    db_session.expire_all()
    assert states(db_session) == ["done"] * 6


def test_checks_missed_while_down_all_run(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    register(db_sessions)
    clock = FixedClock(DEPLOYED + timedelta(days=2))
    assert runner(db_sessions, clock, EmbeddedBackend(db_sessions)).run_due() == 2
    db_session.expire_all()
    assert states(db_session) == ["done", "done"]
    status = db_session.scalars(
        select(Delivery).where(Delivery.kind == "status").order_by(Delivery.id.desc())
    ).first()
    assert status is not None and "all 2 checks ran" in status.text
    assert "💤 no traffic on it in the last check" in status.text  # no spans were ever sent


def test_outage_retries_with_backoff_then_tells_the_owner(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    register(db_sessions)
    clock = FixedClock(DEPLOYED + timedelta(minutes=15))
    backend = DownBackend()
    run = runner(db_sessions, clock, backend, after=["15m"], max_attempts=3, retry_backoff="1m")
    assert run.run_due() == 1
    db_session.expire_all()
    check = db_session.scalars(select(Check).order_by(Check.due_at)).first()
    assert check is not None
    assert (check.state, check.attempts) == ("pending", 1)
    assert check.due_at == clock.now() + timedelta(minutes=1)
    assert "connection refused" in (check.last_error or "")
    clock.advance(timedelta(seconds=59))
    assert run.run_due() == 0  # backing off
    clock.advance(timedelta(seconds=1))
    assert run.run_due() == 1
    clock.advance(timedelta(minutes=2))  # the second retry waits twice as long
    assert run.run_due() == 1
    db_session.expire_all()
    db_session.refresh(check)
    assert (check.state, check.attempts) == ("failed", 3)
    note = db_session.scalars(select(Delivery).where(Delivery.key.like("%:failed"))).one()
    assert "failed after 3 tries" in note.text and "connection refused" in note.text
    assert len(backend.queries) == 3


def test_a_claimed_check_is_not_claimed_twice_until_its_lease_runs_out(
    db_session: Session, db_sessions: sessionmaker[Session]
) -> None:
    register(db_sessions)
    now = DEPLOYED + timedelta(minutes=15)
    lease = timedelta(minutes=5)
    first = queries.claim_due_checks(db_session, now=now, worker="a", lease=lease)
    again = queries.claim_due_checks(db_session, now=now, worker="b", lease=lease)
    assert len(first) == 1 and again == []
    later = queries.claim_due_checks(
        db_session, now=now + lease + timedelta(seconds=1), worker="b", lease=lease
    )
    assert later == first  # replica a died; b takes the check over


def test_a_replica_that_lost_its_lease_does_not_record(
    db_session: Session, db_sessions: sessionmaker[Session]
) -> None:
    register(db_sessions)
    clock = FixedClock(DEPLOYED + timedelta(minutes=15))
    [check_id] = queries.claim_due_checks(
        db_session, now=clock.now(), worker="a", lease=timedelta(minutes=5)
    )
    check = db_session.get(Check, check_id)
    assert check is not None
    check.claimed_by = "b"  # b took it over after a's lease expired
    db_session.commit()
    runner(db_sessions, clock, EmbeddedBackend(db_sessions), worker="a").run_one(check_id)
    db_session.expire_all()
    assert db_session.get(Check, check_id).state == "running"  # type: ignore[union-attr]
    assert db_session.scalars(select(Delivery).where(Delivery.kind == "reply")).first() is None


@pytest.mark.parametrize("latency_on", [True, False])
def test_a_detector_switched_off_for_the_service_reports_nothing(
    db_sessions: sessionmaker[Session], db_session: Session, latency_on: bool
) -> None:
    rng = np.random.default_rng(3)
    backend = EmbeddedBackend(db_sessions)
    register(db_sessions, version="1.4.1", commit="a", deployed_at=DEPLOYED - timedelta(days=1))
    register(db_sessions, version="1.4.2", commit="b")
    for version, start, median in (
        ("1.4.1", DEPLOYED - timedelta(hours=2), 20.0),
        ("1.4.2", DEPLOYED + timedelta(minutes=1), 30.0),  # +50%
    ):
        spans = [("/vaults", float(median * rng.lognormal(0, 0.2)), False) for _ in range(300)]
        body = otlp_spans(service="vault-service", version=version, start=start, spans=spans)
        backend.ingest(body, "application/x-protobuf", None)
    switch = {"enabled": latency_on}
    # The new version's spans all fall in its first 5 min; warm-up is not what this is about.
    latency = {**switch, "warmup": "0"}
    conf = settings(
        checks={"after": ["15m", "1h"]},
        services={"vault-service": {"detectors": {"latency": latency, "tail": switch}}},
    )
    clock = FixedClock(DEPLOYED + timedelta(minutes=15))
    run = CheckRunner(
        sessions=db_sessions, backend=backend, settings=conf, clock=clock, worker="w1"
    )
    assert run.run_due() == 1
    db_session.expire_all()
    check = db_session.scalars(select(Check).where(Check.state == "done")).one()
    kinds = {f["kind"] for f in check.result["report"]["findings"]}  # type: ignore[index]
    assert ("latency_regression" in kinds) is latency_on
    # The report keeps when each version was seen serving: 300 spans a second apart each.
    observed = check.result["report"]["observed"]  # type: ignore[index]
    firsts = {
        "baseline": DEPLOYED - timedelta(hours=2),
        "candidate": DEPLOYED + timedelta(minutes=1),
    }
    for side, start in firsts.items():
        end = start + timedelta(seconds=299)
        assert observed[side] == {"start": start.isoformat(), "end": end.isoformat()}
