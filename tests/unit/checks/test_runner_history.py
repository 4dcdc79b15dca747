"""The check runner's exception history and warm-up: store in, backend query, store out."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.store import queries
from feedbot.store.models import Check, ExceptionType
from tests.factories import DEPLOYED, event, settings
from tests.fakes.sdk_spans import protobuf, recording

SERVICE = "vault-service"


class RecordingBackend:
    """The embedded backend, remembering every query it was asked."""

    name = "embedded"

    def __init__(self, inner: EmbeddedBackend) -> None:
        self.inner, self.queries = inner, list[SpanQuery]()

    def collect(self, query: SpanQuery) -> ReleaseData:
        self.queries.append(query)
        return self.inner.collect(query)


def _otlp(
    version: str, start: datetime, errors: int, n: int = 400, seed: int = 1, slow: float = 1.0
) -> bytes:
    """OTLP/protobuf of ``n`` SDK spans on two instances; the first ``errors`` raise KeyError.

    Spans in each instance's first 5 minutes take ``slow`` times as long (a cold start).
    """
    from opentelemetry.trace import SpanKind, Status, StatusCode

    rng = np.random.default_rng(seed)
    spans = []
    for instance in ("a", "b"):
        resource = {
            "service.name": SERVICE,
            "service.version": version,
            "service.instance.id": f"{version}-{instance}",
            "deployment.environment.name": "production",
        }
        with recording(resource) as (tracer, finished):
            for i in range(n // 2):
                begin = int(start.timestamp() * 1e9) + i * 2_000_000_000
                span = tracer.start_span("GET /vaults", kind=SpanKind.SERVER, start_time=begin,
                                         attributes={"http.route": "/vaults",
                                                     "http.request.method": "GET"})  # fmt: skip
                if i < errors // 2:
                    span.record_exception(KeyError("vault"), timestamp=begin + 1000)
                    span.set_status(Status(StatusCode.ERROR))
                cold = slow if i * 2 < 300 else 1.0
                span.end(end_time=begin + int(20e6 * cold * rng.lognormal(0, 0.2)))
        spans += finished
    return protobuf(spans)


def _setup(
    sessions: sessionmaker[Session], errors: int, slow: float = 1.0
) -> tuple[RecordingBackend, int]:
    conf = settings(checks={"after": ["15m", "1h"]})
    with sessions() as session:
        register_release(session, event(version="1.4.1", commit="a",
                                        deployed_at=DEPLOYED - timedelta(days=1)),
                         settings=conf, now=DEPLOYED - timedelta(days=1))  # fmt: skip
        new = register_release(session, event(version="1.4.2", commit="b"), settings=conf,
                               now=DEPLOYED).release_id  # fmt: skip
    backend = EmbeddedBackend(sessions)
    backend.ingest(_otlp("1.4.1", DEPLOYED - timedelta(hours=2), 0), "application/x-protobuf", None)
    body = _otlp("1.4.2", DEPLOYED + timedelta(minutes=1), errors, seed=2, slow=slow)
    backend.ingest(body, "application/x-protobuf", None)
    return RecordingBackend(backend), new


def _runner(
    sessions: sessionmaker[Session], backend: object, at: timedelta, **svc: object
) -> CheckRunner:
    conf = settings(checks={"after": ["15m", "1h"]}, services={SERVICE: svc} if svc else {})
    clock = FixedClock(DEPLOYED + at)
    return CheckRunner(sessions=sessions, backend=backend, settings=conf, clock=clock,  # type: ignore[arg-type]
                       worker="w1")  # fmt: skip


def _reports(session: Session, release_id: int) -> list[dict]:  # type: ignore[type-arg]
    session.expire_all()
    checks = queries.release_checks(session, release_id)
    return [c.result["report"] for c in checks if c.state == "done" and c.result]


def _new_types(report: dict) -> list[str]:  # type: ignore[type-arg]
    return [f["exception_type"] for f in report["findings"] if f["kind"] == "new_error_type"]


def test_a_new_type_stays_new_at_the_next_look_and_is_recorded(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    backend, release_id = _setup(db_sessions, errors=40)
    for at in (timedelta(minutes=15), timedelta(hours=1)):
        _runner(db_sessions, backend, at).run_due()
    reports = _reports(db_session, release_id)
    # The release's own sightings from look 1 must not make KeyError "seen before" at look 2.
    assert [_new_types(r) for r in reports] == [["KeyError"], ["KeyError"]]
    rows = db_session.scalars(select(ExceptionType)).all()
    assert {(r.version, r.span, r.type) for r in rows} == {("1.4.2", "GET /vaults", "KeyError")}
    assert rows[0].first_seen == DEPLOYED + timedelta(minutes=15)
    assert rows[0].last_seen == DEPLOYED + timedelta(hours=1) and rows[0].count == 40


def test_a_type_an_earlier_version_raised_is_not_new(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    backend, release_id = _setup(db_sessions, errors=40)
    queries.record_exception_types(
        db_session, service=SERVICE, environment="production",
        seen=[("1.4.0", "GET /vaults", "KeyError", 3)], now=DEPLOYED - timedelta(days=2),
    )  # fmt: skip
    db_session.commit()
    _runner(db_sessions, backend, timedelta(minutes=15)).run_due()
    (report,) = _reports(db_session, release_id)
    assert _new_types(report) == []
    assert any("KeyError on GET /vaults in 1.4.0" in note for note in report["notes"])


def test_only_the_new_version_is_asked_to_leave_out_warm_up(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    backend, release_id = _setup(db_sessions, errors=0, slow=3.0)
    _runner(db_sessions, backend, timedelta(minutes=15)).run_due()
    new, base = backend.queries[-2:]
    assert (new.version, new.warmup) == ("1.4.2", timedelta(minutes=5))
    assert (base.version, base.warmup) == ("1.4.1", timedelta(0))
    (report,) = _reports(db_session, release_id)
    # Two instances from +1 min, a span every 2 s each: 150 of each one's spans are warm-up,
    # 3× slower than their 50 later ones.
    assert report["warmup_excluded"] == 300
    (note,) = [n for n in report["notes"] if n.startswith("Warm-up")]
    assert note.startswith("Warm-up: 300 spans from the first 5m of 2 of 2 new instance(s)")
    assert "300 early vs 100 later spans" in note, note
    assert report["verdict"] == "neutral", report["findings"]


def test_a_warm_up_no_slower_than_the_rest_stays_in(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    backend, release_id = _setup(db_sessions, errors=0)
    _runner(db_sessions, backend, timedelta(minutes=15)).run_due()
    (report,) = _reports(db_session, release_id)
    assert report["warmup_excluded"] == 0
    (note,) = [n for n in report["notes"] if n.startswith("Warm-up")]
    assert "were not slower than their later spans" in note, note


def test_warm_up_is_configurable_per_service(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    backend, release_id = _setup(db_sessions, errors=0)
    svc = {"detectors": {"latency": {"warmup": "0"}}}
    _runner(db_sessions, backend, timedelta(minutes=15), **svc).run_due()
    assert backend.queries[-2].warmup == timedelta(0)
    (report,) = _reports(db_session, release_id)
    assert report["warmup_excluded"] == 0
    done = db_session.scalars(select(Check).where(Check.state == "done")).all()
    assert len(done) == 1
