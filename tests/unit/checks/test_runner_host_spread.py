"""The serve path's host spread: a release's check records its τ̂, the next release's pools it."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.store import queries
from tests.factories import DEPLOYED, event, settings
from tests.fakes.sdk_spans import protobuf, recording

SERVICE = "vault-service"
CONF = settings(checks={"after": ["15m", "1h"]})
#: Every version runs on 3 pods with these log-latency offsets (a 5% spread).
OFFSETS = (-0.05, 0.0, 0.05)


def _otlp(version: str, start: datetime, seed: int, per_pod: int = 600) -> bytes:
    """OTLP/protobuf of SDK spans of two routes on three pods, one every 2 s on each."""
    from opentelemetry.trace import SpanKind

    rng = np.random.default_rng(seed)
    spans = []
    for pod, offset in enumerate(OFFSETS):
        resource = {
            "service.name": SERVICE,
            "service.version": version,
            "service.instance.id": f"{version}-{pod}",
            "deployment.environment.name": "production",
        }
        with recording(resource) as (tracer, finished):
            for i in range(per_pod):
                route = ("/vaults", "/appraisals")[i % 2]
                begin = int(start.timestamp() * 1e9) + i * 2_000_000_000
                span = tracer.start_span(f"GET {route}", kind=SpanKind.SERVER, start_time=begin,
                                         attributes={"http.route": route,
                                                     "http.request.method": "GET"})  # fmt: skip
                ms = 20e6 * np.exp(offset + 0.4 * rng.standard_normal())
                span.end(end_time=begin + int(ms))
        spans += finished
    return protobuf(spans)


def _register(sessions: sessionmaker[Session], version: str, at: datetime) -> int:
    with sessions() as session:
        return register_release(session, event(version=version, commit=version, deployed_at=at),
                                settings=CONF, now=at).release_id  # fmt: skip


def _run(sessions: sessionmaker[Session], backend: EmbeddedBackend, at: datetime) -> None:
    CheckRunner(sessions=sessions, backend=backend, settings=CONF, clock=FixedClock(at),
                worker="w1").run_due()  # fmt: skip


def _spread_note(session: Session, release_id: int) -> str:
    session.expire_all()
    (check, *_) = [c for c in queries.release_checks(session, release_id) if c.state == "done"]
    assert check.result is not None
    (note,) = [n for n in check.result["report"]["notes"] if "Between-instance spread" in n]
    return str(note)


def test_the_second_release_s_check_pools_the_first_release_s_spread(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    first_at, second_at = DEPLOYED - timedelta(days=1), DEPLOYED
    backend = EmbeddedBackend(db_sessions)
    _register(db_sessions, "1.0", first_at - timedelta(days=1))
    proto = "application/x-protobuf"
    backend.ingest(_otlp("1.0", first_at - timedelta(hours=2), 1), proto, None)
    first = _register(db_sessions, "1.1", first_at)
    backend.ingest(_otlp("1.1", first_at + timedelta(minutes=1), 2), proto, None)
    _run(db_sessions, backend, first_at + timedelta(minutes=15))

    note = _spread_note(db_session, first)
    assert note.startswith(f"No earlier release of {SERVICE} in the last 30 days")
    (check, *_) = queries.release_checks(db_session, first)
    recorded = check.result["tau"]["versions"]  # type: ignore[index]
    assert [(p["version"], p["dof"]) for p in recorded] == [("1.1", 2), ("1.0", 2)]

    second = _register(db_sessions, "1.2", second_at)
    backend.ingest(_otlp("1.2", second_at + timedelta(minutes=1), 3), proto, None)
    _run(db_sessions, backend, second_at + timedelta(minutes=15))
    note = _spread_note(db_session, second)
    # 1.1's pods are this check's baseline: only 1.0's part of the first check is added.
    assert f"from this check and the 1 earlier release of {SERVICE}: τ = " in note
    assert "from 6 degrees of freedom" in note
