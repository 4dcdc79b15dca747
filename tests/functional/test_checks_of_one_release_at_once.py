"""Two replicas recording the last two checks of one release at the same time.

Each recording counts the release's finished checks for the parent's status line and to end the
release. Unless the second waits for the first to commit, both count the other as unfinished:
the parent stays at "watching: 1 of 2 checks done" and the release never ends. Real
PostgreSQL, real commits, the real recorder on both sides: replica b's transaction is held open
at its commit (everything written, nothing committed) while replica a records its own check.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from feedbot.analysis.report import to_json
from feedbot.checks.pipeline import Finished
from feedbot.checks.recorder import CheckRecorder
from feedbot.checks.register import register_release
from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Check, Delivery, Release
from tests.factories import DEPLOYED, event
from tests.unit.analysis.test_report import CONTEXT, _analysis

pytestmark = [pytest.mark.postgres]


def waiting_for_a_lock(engine: Engine) -> bool:
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with engine.connect() as connection:
        return bool(connection.scalar(query))


@pytest.mark.parametrize("fresh_database_url", ["postgresql"], indirect=True)
def test_the_second_of_two_checks_recorded_at_once_sees_the_first(fresh_database_url: str) -> None:
    settings = settings_from_mapping(
        {"database_url": fresh_database_url, "checks": {"after": ["15m", "1h"]}}, {}
    )
    clock = FixedClock(DEPLOYED + timedelta(hours=2))
    engine = make_engine(fresh_database_url)
    sessions = make_sessions(engine)
    try:
        with sessions() as session:
            register_release(session, event(), settings=settings, now=DEPLOYED)
            session.commit()
            checks = session.scalars(select(Check).order_by(Check.offset_seconds)).all()
            for check, worker in zip(checks, "ab", strict=True):
                check.state, check.claimed_by = "running", worker
                check.lease_until = clock.now() + timedelta(minutes=5)
            session.commit()
            (first, second), release_id = [c.id for c in checks], checks[0].release_id
        report = to_json(_analysis(), CONTEXT)
        done = Finished(analysis=_analysis(), report=report, text="regressed")
        outcomes: dict[str, str] = {}
        at_commit, go = threading.Event(), threading.Event()

        class HeldAtCommit(Session):
            """Replica b's session: written out, then held just before its commit."""

            def commit(self) -> None:
                self.flush()
                at_commit.set()
                assert go.wait(30)
                super().commit()

        def record(worker: str, check_id: int, factory: sessionmaker[Session]) -> None:
            recorder = CheckRecorder(settings=settings, clock=clock, worker=worker)
            with factory() as session:
                check = session.get(Check, check_id)
                assert check is not None
                outcomes[worker] = recorder.finish(session, check, done)

        held = sessionmaker(bind=engine, class_=HeldAtCommit, expire_on_commit=False)
        replica_b = threading.Thread(target=record, args=("b", second, held))
        replica_b.start()
        assert at_commit.wait(30)
        replica_a = threading.Thread(target=record, args=("a", first, sessions))
        replica_a.start()
        deadline = time.monotonic() + 30
        while replica_a.is_alive() and not waiting_for_a_lock(engine):
            assert time.monotonic() < deadline, "replica a neither waits nor ends"
            time.sleep(0.05)
        go.set()
        replica_b.join(30)
        replica_a.join(30)
        assert outcomes == {"a": "done", "b": "done"}
        with sessions() as session:
            release = session.get(Release, release_id)
            assert release is not None and release.state == "done"
            status = session.scalars(
                select(Delivery.text).where(Delivery.kind == "status", Delivery.check_id == first)
            ).one()
            assert "all 2 checks ran" in status, status
    finally:
        engine.dispose()
