"""The comparison window on a rolling deploy: both versions while both served, else before/after.

Spans of the real OpenTelemetry SDK, two pods a version, a SERVER span per request with a DB
span under it. In the rolling deploy, load rises at the deploy moment and every request of
*both* versions is 30% slower from then on; the code did not change. Compared over the time both
versions served, nothing changed; compared with the old version's spans from before the deploy
(the fallback, and what every comparison did before), the load looks like a regression.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks import concurrent
from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.spans.otlp import PROTOBUF
from feedbot.store.db import make_engine, make_sessions, migrate
from feedbot.store.models import Check
from tests.factories import event, settings
from tests.fakes.sdk_spans import T0, ns, protobuf, sdk_spans
from tests.report_runs import deploy_file, request, resource, run_report, trace_file

UNTIL = T0 + timedelta(minutes=10)
STEP_S = 2.0  # a request every 2 s per pod
LOAD = 1.3  # every request 30% slower from the deploy on, in both versions


def serve(
    version: str,
    start: datetime,
    end: datetime,
    *,
    seed: int,
    slower: Callable[[datetime], float],
    pods: tuple[str, ...],
) -> list[Any]:
    """SDK spans of ``version`` on ``pods`` from ``start`` to ``end``, durations × ``slower(t)``."""
    rng = np.random.default_rng(seed)
    times = [
        start + timedelta(seconds=i * STEP_S)
        for i in range(int((end - start).total_seconds() / STEP_S))
    ]
    spans: list[Any] = []
    for pod in pods:
        ms = rng.lognormal(np.log(40.0), 0.4, len(times))

        def build(tracer: Any, ms: np.ndarray = ms) -> None:
            for moment, duration in zip(times, ms.tolist(), strict=True):
                request(tracer, "/orders/{id}", ns(moment), duration * slower(moment))

        spans += sdk_spans(resource(version, pod), build)
    return spans


def busier(moment: datetime) -> float:
    return LOAD if moment >= T0 else 1.0


def rolling_deploy(seed: int = 1) -> list[Any]:
    """1.0 for half an hour, then 1.1 beside it for ten minutes; load up 30% at the deploy."""
    old = serve("1.0", T0 - timedelta(minutes=30), UNTIL, seed=seed, slower=busier, pods=("a", "b"))
    new = serve("1.1", T0, UNTIL, seed=seed + 1, slower=busier, pods=("c", "d"))
    return old + new


def replaced_at_the_deploy(seed: int = 2) -> list[Any]:
    """1.0 for half an hour, stopped at the deploy; 1.1 from then on; the same load throughout."""
    same = lambda _: 1.0  # noqa: E731
    old = serve("1.0", T0 - timedelta(minutes=30), T0, seed=seed, slower=same, pods=("a", "b"))
    new = serve("1.1", T0, UNTIL, seed=seed + 1, slower=same, pods=("c", "d"))
    return old + new


def report(tmp_path: Path, *source: str, text: bool = False) -> tuple[int, dict[str, Any] | str]:
    argv = ["--deploy", str(deploy_file(tmp_path)), *source]
    argv += ["--format", "text" if text else "json", "--fail-on", "regressed"]
    code, body = run_report(tmp_path, argv, until=UNTIL)
    return code, body if text else json.loads(body)


def latency_findings(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    kinds = ("latency_regression", "tail_latency_regression")
    return [(f["kind"], f["span"], f["state"]) for f in doc["findings"] if f["kind"] in kinds]


def test_a_load_rise_at_a_rolling_deploy_is_no_regression_over_the_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = trace_file(tmp_path, rolling_deploy())
    code, doc = report(tmp_path, *source)
    assert isinstance(doc, dict)
    assert (code, doc["verdict"]) == (0, "neutral"), latency_findings(doc)
    comparison = doc["comparison"]
    assert comparison["kind"] == "overlap", comparison
    start = datetime.fromisoformat(comparison["window"]["start"])
    end = datetime.fromisoformat(comparison["window"]["end"])
    # From the new version's first span to the old version's last one.
    assert T0 <= start < T0 + timedelta(seconds=1) and UNTIL - timedelta(seconds=3) < end <= UNTIL
    assert doc["window"]["baseline"] == doc["window"]["candidate"] == comparison["window"]
    # Two pods a version, a request every 2 s each, two spans a request, for ten minutes.
    assert comparison["spans"] == {"baseline": 1200, "candidate": 1200}
    rates = comparison["requests_per_minute"]
    assert rates["baseline"] == pytest.approx(60, rel=0.02) == rates["candidate"]
    assert comparison["reason"].startswith("Compared while both versions served: Nov 24 10:00")

    # The same spans over the before/after window (every comparison's window before this):
    # the old version's faster spans from before the deploy make the load a "regression".
    monkeypatch.setattr(concurrent, "TESTABLE_SHARE", 1.01)
    code, doc = report(tmp_path, *source)
    assert isinstance(doc, dict)
    assert doc["comparison"]["kind"] == "before_after"
    assert (code, doc["verdict"]) == (1, "regressed")
    assert ("latency_regression", "GET /orders/{id}", "confirmed") in latency_findings(doc)
    assert "too few spans to test there" in doc["comparison"]["reason"]


def test_an_old_version_stopped_at_the_deploy_is_compared_before_and_after(
    tmp_path: Path,
) -> None:
    source = trace_file(tmp_path, replaced_at_the_deploy())
    code, doc = report(tmp_path, *source)
    assert isinstance(doc, dict)
    assert (code, doc["verdict"]) == (0, "neutral"), latency_findings(doc)
    comparison = doc["comparison"]
    assert comparison["kind"] == "before_after" and comparison["window"] is None
    assert comparison["reason"].startswith("The old version stopped serving at the deploy")
    assert (
        "compared with the old version's spans of Nov 23 10:00 – Nov 24 10:10"
        in (comparison["reason"])
    )
    assert comparison["spans"] == {"baseline": 3600, "candidate": 1200}
    # Each version's load over the time it served: the same.
    rates = comparison["requests_per_minute"]
    assert rates["baseline"] == pytest.approx(60, rel=0.02)
    assert rates["candidate"] == pytest.approx(60, rel=0.02)
    code, text = report(tmp_path, *source, text=True)
    assert "The old version stopped serving at the deploy (Nov 24 10:00:00 UTC)" in str(text)
    assert "Load while each version served: 60 → 60 requests/min, old → new (+0%)" in str(text)


def test_a_short_overlap_falls_back_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old pods stop 20 s after the deploy, 10 min before the look."""
    old = serve(
        "1.0",
        T0 - timedelta(minutes=30),
        T0 + timedelta(seconds=20),
        seed=3,
        slower=lambda _: 1.0,
        pods=("a", "b"),
    )
    new = serve("1.1", T0, UNTIL, seed=4, slower=lambda _: 1.0, pods=("c", "d"))
    source = trace_file(tmp_path, old + new)
    code, doc = report(tmp_path, *source)
    assert isinstance(doc, dict)
    comparison = doc["comparison"]
    assert comparison["kind"] == "before_after"
    # Its last span starts at 10:00:18 (a request every 2 s), 18 s of the new version's 9:58.
    assert comparison["reason"].startswith(
        "The old version stopped serving at Nov 24 10:00:18 UTC, 18 s into this 10 min look "
        "(both served together for 3% of it, 50% needed): compared with the old version's "
        "spans of Nov 23 10:00 – Nov 24 10:10 UTC (24.2 h), before and after the deploy"
    )

    # Were the overlap compared whenever it could be, its 20 old requests are too few to test.
    monkeypatch.setattr(concurrent, "SERVING_SHARE", 0.0)
    code, doc = report(tmp_path, *source)
    assert isinstance(doc, dict)
    comparison = doc["comparison"]
    assert comparison["kind"] == "before_after"
    assert comparison["reason"].startswith("Both versions served together Nov 24 10:00:")
    assert (
        "but too few spans to test there (groups with 30 spans of each version held 0%"
        in (comparison["reason"])
    )


@pytest.mark.parametrize(("minutes", "kind"), [(4, "before_after"), (6, "overlap")])
def test_the_overlap_is_compared_only_while_it_is_most_of_the_look(
    tmp_path: Path, minutes: int, kind: str
) -> None:
    """The old pods stop 4 or 6 min into a 10 min look: under or over half of it."""
    stop = T0 + timedelta(minutes=minutes)
    old = serve("1.0", T0 - timedelta(minutes=30), stop, seed=6, slower=busier, pods=("a", "b"))
    new = serve("1.1", T0, UNTIL, seed=7, slower=busier, pods=("c", "d"))
    code, doc = report(tmp_path, *trace_file(tmp_path, old + new))
    assert isinstance(doc, dict)
    comparison = doc["comparison"]
    assert comparison["kind"] == kind, comparison["reason"]
    if kind == "overlap":
        # To the old version's last span: its last request's DB span, 1 ms into it.
        end = datetime.fromisoformat(comparison["window"]["end"])
        assert end == stop - timedelta(seconds=2) + timedelta(milliseconds=1, microseconds=1)
        assert comparison["spans"] == {"baseline": 720, "candidate": 720}
        return
    assert comparison["window"] is None
    assert comparison["reason"].startswith(
        "The old version stopped serving at Nov 24 10:03:58 UTC, 4 min into this 10 min look "
        "(both served together for 40% of it, 50% needed): compared with the old version's "
        "spans of"
    )
    # Its 30 min before the deploy and 4 after: 2 pods, a request every 2 s, 2 spans each.
    assert comparison["spans"] == {"baseline": 4080, "candidate": 1200}


def test_a_short_rollout_is_compared_over_the_overlap_at_first_then_before_and_after(
    tmp_path: Path,
) -> None:
    """The old pods serve 10 min beside the new ones; looks at +10 min and +30 min."""
    old = serve("1.0", T0 - timedelta(minutes=30), UNTIL, seed=8, slower=busier, pods=("a", "b"))
    later = T0 + timedelta(minutes=30)
    new = serve("1.1", T0, later, seed=9, slower=busier, pods=("c", "d"))
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessions(engine)
    backend = EmbeddedBackend(sessions)
    backend.ingest(protobuf(old + new), PROTOBUF, None)
    conf = settings(
        database_url=url,
        checks={"after": ["10m", "30m"]},
        services={"checkout": {"detectors": {"latency": {"warmup": "0"}}}},
    )
    with sessions() as session:
        release = event(service="checkout", version="1.1", changes=())
        register_release(session, release, settings=conf, now=T0)
        session.commit()
    clock = FixedClock(UNTIL)
    runner = CheckRunner(sessions=sessions, backend=backend, settings=conf, clock=clock, worker="w")
    assert runner.run_due() == 1
    clock.set(later)
    assert runner.run_due() == 1
    with sessions() as session:
        checks = session.scalars(select(Check).order_by(Check.due_at)).all()
        assert [c.state for c in checks] == ["done", "done"]
        first, last = (c.result["report"]["comparison"] for c in checks if c.result)
    engine.dispose()
    assert first["kind"] == "overlap", first["reason"]
    assert first["reason"].startswith("Compared while both versions served: Nov 24 10:00")
    # At +30 min the old version's 10 min are a third of the look: the baseline is its past.
    assert last["kind"] == "before_after" and last["window"] is None
    assert last["reason"].startswith(
        "The old version stopped serving at Nov 24 10:09:58 UTC, 10 min into this 30 min look "
        "(both served together for 33% of it, 50% needed): compared with the old version's "
        "spans of Nov 23 10:00 – Nov 24 10:30 UTC (24.5 h), before and after the deploy"
    )
    assert last["spans"] == {"baseline": 4800, "candidate": 3600}


@pytest.mark.parametrize("spans", [rolling_deploy, replaced_at_the_deploy])
def test_serve_and_report_compare_over_the_same_window(
    tmp_path: Path, spans: Callable[[], list[Any]]
) -> None:
    made = spans()
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessions(engine)
    backend = EmbeddedBackend(sessions)
    backend.ingest(protobuf(made), PROTOBUF, None)
    conf = settings(
        database_url=url,
        checks={"after": ["10m"]},
        services={"checkout": {"detectors": {"latency": {"warmup": "0"}}}},
    )
    with sessions() as session:
        release = event(service="checkout", version="1.1", changes=())
        register_release(session, release, settings=conf, now=T0)
        session.commit()
    runner = CheckRunner(
        sessions=sessions, backend=backend, settings=conf, clock=FixedClock(UNTIL), worker="w"
    )
    assert runner.run_due() == 1
    with sessions() as session:
        check = session.scalars(select(Check).where(Check.state == "done")).one()
        assert check.result is not None
        served: dict[str, Any] = check.result["report"]
    engine.dispose()

    config = tmp_path / "feedbot.yaml"
    config.write_text(f'database_url: "{url}"\ntraces:\n  backend: embedded\n')
    _, from_store = report(tmp_path, "--config", str(config))
    _, from_files = report(tmp_path, *trace_file(tmp_path, made))
    assert isinstance(from_store, dict) and isinstance(from_files, dict)
    for doc in (from_store, from_files):
        assert doc["comparison"]["kind"] == served["comparison"]["kind"]
        assert doc["comparison"]["window"] == served["comparison"]["window"]
        assert doc["comparison"]["spans"] == served["comparison"]["spans"]
        assert doc["verdict"] == served["verdict"] == "neutral"
    if spans is rolling_deploy:
        assert served["comparison"]["kind"] == "overlap"
        assert served["comparison"]["reason"] == from_files["comparison"]["reason"]


def test_a_baseline_without_spans_is_not_said_to_have_stopped(tmp_path: Path) -> None:
    new = serve("1.1", T0, UNTIL, seed=5, slower=lambda _: 1.0, pods=("c", "d"))
    source = trace_file(tmp_path, new)
    code, doc = report(tmp_path, *source, "--baseline-version", "0.9")
    assert isinstance(doc, dict)
    assert doc["comparison"]["kind"] == "before_after"
    assert doc["comparison"]["reason"].startswith("The old version sent no span in Nov 23 10:00")


def test_a_rolling_deploy_at_steady_load_is_compared_with_the_larger_past(
    tmp_path: Path,
) -> None:
    """The same rolling deploy without the load rise: the old version's spans while both served
    run as its spans from before the deploy, so those (three times as many) are the baseline."""
    same = lambda _: 1.0  # noqa: E731
    old = serve("1.0", T0 - timedelta(minutes=30), UNTIL, seed=10, slower=same, pods=("a", "b"))
    new = serve("1.1", T0, UNTIL, seed=11, slower=same, pods=("c", "d"))
    code, doc = report(tmp_path, *trace_file(tmp_path, old + new))
    assert isinstance(doc, dict)
    assert (code, doc["verdict"]) == (0, "neutral"), latency_findings(doc)
    comparison = doc["comparison"]
    assert comparison["kind"] == "before_after", comparison["reason"]
    reason = comparison["reason"]
    assert reason.startswith("Both versions served together Nov 24 10:00"), reason
    # Both groups compared: 600 requests of each version's two pods while both served, against
    # the old version's 1,800 from the half hour before the deploy.
    assert "2 span groups, 1,200 vs 3,600 spans; steady means within ±5%)" in reason
    assert "the time of the deploy moved nothing, so the larger sample from before it" in reason
    assert comparison["spans"] == {"baseline": 4800, "candidate": 1200}


def test_the_load_rise_keeps_the_overlap_and_says_how_the_old_version_moved(
    tmp_path: Path,
) -> None:
    code, doc = report(tmp_path, *trace_file(tmp_path, rolling_deploy()))
    assert isinstance(doc, dict)
    reason = doc["comparison"]["reason"]
    assert doc["comparison"]["kind"] == "overlap"
    # Its requests 30% slower since the deploy, its DB spans (2 ms each) not: the route moved.
    assert "Not with the larger sample from before the deploy: the old version was " in reason
    assert "; on its own: GET /orders/{id} +2" in reason
