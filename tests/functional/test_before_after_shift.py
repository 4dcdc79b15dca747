"""Before/after looks netted of what moved every route, overlap looks never (§8 diff-in-diff).

Spans of the real OpenTelemetry SDK through ``feedbot report``: five routes, each a SERVER span
with a DB span under it, two pods a version. In a before/after look the baseline is the old
version's spans from before the deploy, so a load step at the deploy slows every route of the
new version; the routes the release did not touch show that, and each route is compared net of
it. By default (``auto``) only when the whole service's requests per minute rose with it, which
the embedded store counts: the same slowdown under the same load (a release-wide regression) is
the release's. Trace files cannot count them: compared as measured, and said so. In the overlap
both versions served at once: a shift of every route is the release's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feedbot.analysis import drift
from feedbot.commands import report as report_cli
from feedbot.digest.text import report_text
from feedbot.policy import DetectionPolicy
from tests.fakes.sdk_spans import T0, ns, sdk_spans
from tests.report_runs import deploy_file, request, resource, run_report, store_config, trace_file

UNTIL = T0 + timedelta(minutes=20)
ROUTES = ("/orders", "/carts", "/users", "/items", "/search")
CHANGED = "/orders"
FUNCTION = "shop.orders.get_order"
MEDIANS = (40.0, 25.0, 60.0, 15.0, 90.0)


def serve(
    version: str,
    start: datetime,
    end: datetime,
    *,
    seed: int,
    pods: tuple[str, ...],
    step_s: float = 2.0,
    slower: Callable[[str], float] = lambda _: 1.0,
) -> list[Any]:
    """SDK spans: each pod serves every route every ``step_s``, durations × ``slower(route)``."""
    rng = np.random.default_rng(seed)
    count = int((end - start).total_seconds() / step_s)
    times = [start + timedelta(seconds=i * step_s) for i in range(count)]
    spans: list[Any] = []
    for pod in pods:
        draws = {
            r: rng.lognormal(np.log(m), 0.3, count) for r, m in zip(ROUTES, MEDIANS, strict=True)
        }

        def build(tracer: Any, draws: dict[str, np.ndarray] = draws) -> None:
            for i, moment in enumerate(times):
                begin = ns(moment)
                for route in ROUTES:
                    code = {"code.function.name": FUNCTION} if route == CHANGED else {}
                    request(tracer, route, begin, float(draws[route][i]) * slower(route), code)

        spans += sdk_spans(resource(version, pod), build)
    return spans


def report(
    tmp_path: Path, spans: list[Any], *, changes: bool, store: bool = False, detectors: str = ""
) -> dict[str, Any]:
    """``feedbot report`` on ``spans``: from a trace file, or with ``store`` from the embedded
    store they were sent to (``detectors``: the service's ``detectors`` setting, YAML)."""
    doc: dict[str, Any] = {}
    if changes:
        doc["changes"] = [{"file": "shop/orders.py", "functions": [FUNCTION]}]
    deploy = deploy_file(tmp_path, **doc)
    if store:
        source = store_config(tmp_path, spans, detectors=detectors)
    else:
        source = trace_file(tmp_path, spans)
    _, out = run_report(
        tmp_path, ["--deploy", str(deploy), *source, "--format", "json"], until=UNTIL
    )
    result: dict[str, Any] = json.loads(out)
    return result


def slowed(doc: dict[str, Any]) -> set[str]:
    return {
        f["span"]
        for f in doc["findings"]
        if f["kind"] == "latency_regression" and f["state"] == "confirmed"
    }


def replaced(
    *, load: float, changed: float = 1.0, new_whole: float = 1.0, closed: bool = False
) -> list[Any]:
    """1.0 for 40 min, replaced at the deploy by 1.1 under ``load``× the traffic, every route
    ``load``× slower, the changed route ``changed``× more, every route ``new_whole``× more;
    ``closed``: clients that wait for each answer, so ``new_whole``× fewer requests too."""

    def slower(route: str) -> float:
        return load * new_whole * (changed if route == CHANGED else 1.0)

    step_s = 2.0 / load * (new_whole if closed else 1.0)
    old = serve("1.0", T0 - timedelta(minutes=40), T0, seed=1, pods=("a", "b"))
    new = serve("1.1", T0, UNTIL, seed=2, pods=("c", "d"), step_s=step_s, slower=slower)
    return old + new


@pytest.fixture
def netted(monkeypatch: pytest.MonkeyPatch) -> None:
    """``latency.before_after_correction`` on, whatever the load did (auto by default)."""
    on = DetectionPolicy()
    on = replace(on, latency=replace(on.latency, before_after_correction="on"))
    monkeypatch.setattr(report_cli, "DetectionPolicy", lambda: on)


def test_from_trace_files_a_load_step_is_reported_not_netted_and_says_why(
    tmp_path: Path,
) -> None:
    doc = report(tmp_path, replaced(load=1.3), changes=False)
    assert doc["comparison"]["kind"] == "before_after"
    shift = doc["global_shift"]
    assert shift["applied"] is False and shift["ratio"] == pytest.approx(1.3, rel=0.05)
    # Five routes, each a request every 2 s a pod, two pods; 1.3 times as many after the deploy.
    assert "(load while each version served: 300 → 391 requests/min)" in shift["sentence"], shift[
        "sentence"
    ]
    assert (
        "but the otlp-file backend cannot count the service's requests before and after the "
        "deploy, so this is counted as the release's: the routes are compared as measured."
    ) in shift["sentence"]
    rates = doc["comparison"]["service_requests_per_minute"]
    assert rates["before"] is None and "cannot count" in rates["unknown"]
    assert doc["verdict"] == "regressed" and slowed(doc) >= {f"GET {r}" for r in ROUTES}


def test_by_default_a_load_step_that_the_store_counts_is_netted(tmp_path: Path) -> None:
    doc = report(tmp_path, replaced(load=1.3), changes=False, store=True)
    assert doc["comparison"]["kind"] == "before_after"
    shift = doc["global_shift"]
    assert shift["applied"] is True and shift["ratio"] == pytest.approx(1.3, rel=0.05)
    assert doc["verdict"] != "regressed" and not slowed(doc), shift["sentence"]
    # Every version together, SERVER spans: 300/min before the deploy, 1.3 times as many after.
    rates = shift["service_requests_per_minute"]
    assert rates == doc["comparison"]["service_requests_per_minute"]
    assert rates["counted"] == "requests" and rates["unknown"] is None
    assert rates["before"] == pytest.approx(300, rel=0.01)
    assert rates["after"] == pytest.approx(390, rel=0.01)
    sentence = shift["sentence"]
    assert sentence.startswith("Every route was 3"), sentence
    assert (
        "and the service served 30% more requests/min (300 → 391, every version together): a "
        "change of load, so the routes are compared net of that"
    ) in sentence, sentence


def test_by_default_a_release_wide_slowdown_under_the_same_load_regresses(
    tmp_path: Path,
) -> None:
    # Every route 20% slower in the new version, the traffic unchanged (a dependency bump, a
    # logging change): the store counts the same requests, so it is the release's.
    doc = report(tmp_path, replaced(load=1.0, new_whole=1.2), changes=True, store=True)
    assert doc["comparison"]["kind"] == "before_after"
    shift = doc["global_shift"]
    assert shift["ratio"] == pytest.approx(1.2, rel=0.05) and shift["applied"] is False
    assert (
        "but the load did not change (300 → 301 requests/min, +0%, every version together"
    ) in shift["sentence"], shift["sentence"]
    assert "so this is counted as the release's" in shift["sentence"]
    assert doc["verdict"] == "regressed"
    assert slowed(doc) >= {f"GET {r}" for r in ROUTES}


def test_a_slower_release_under_a_closed_loop_serves_fewer_requests_and_regresses(
    tmp_path: Path,
) -> None:
    spans = replaced(load=1.0, new_whole=1.25, closed=True)
    doc = report(tmp_path, spans, changes=True, store=True)
    shift = doc["global_shift"]
    assert shift["applied"] is False, shift["sentence"]
    rates = shift["service_requests_per_minute"]
    assert rates["after"] == pytest.approx(rates["before"] / 1.25, rel=0.01)
    assert "while the service served 20% fewer requests/min (300 → 24" in shift["sentence"]
    assert doc["verdict"] == "regressed"


def test_on_nets_a_release_wide_slowdown_too(tmp_path: Path) -> None:
    # What ``on`` costs: the same release-wide slowdown, netted away (true still means on).
    spans = replaced(load=1.0, new_whole=1.2)
    doc = report(
        tmp_path,
        spans,
        changes=True,
        store=True,
        detectors="{latency: {before_after_correction: true}}",
    )
    shift = doc["global_shift"]
    assert shift["applied"] is True and doc["verdict"] != "regressed"
    assert shift["service_requests_per_minute"]["before"] == pytest.approx(300, rel=0.01)


@pytest.mark.usefixtures("netted")
def test_a_load_step_at_the_deploy_is_netted_out_of_a_before_after_look(tmp_path: Path) -> None:
    doc = report(tmp_path, replaced(load=1.3), changes=False)
    assert doc["comparison"]["kind"] == "before_after"
    shift = doc["global_shift"]
    assert shift["applied"] is True and shift["basis"] == "all_others"
    assert shift["ratio"] == pytest.approx(1.3, rel=0.05)
    assert {g["span"] for g in shift["groups"]} == {f"GET {r}" for r in ROUTES}
    assert doc["verdict"] != "regressed" and not slowed(doc), shift
    sentence = shift["sentence"]
    assert sentence.startswith("Every route was 3") and "% slower after the deploy" in sentence
    assert "(load while each version served: 300 → 391 requests/min)" in sentence, sentence
    rates = shift["requests_per_minute"]
    assert rates["baseline"] == pytest.approx(300, rel=0.01)
    assert rates["candidate"] == pytest.approx(390, rel=0.01)
    assert "compared net of that" in sentence


@pytest.mark.usefixtures("netted")
def test_a_changed_route_that_really_slowed_still_regresses_net_of_the_load(
    tmp_path: Path,
) -> None:
    doc = report(tmp_path, replaced(load=1.3, changed=1.5), changes=True)
    shift = doc["global_shift"]
    assert shift["applied"] is True and shift["basis"] == "untouched"
    # The changed route is not among the groups the shift came from.
    assert {g["span"] for g in shift["groups"]} == {f"GET {r}" for r in ROUTES if r != CHANGED}
    assert shift["ratio"] == pytest.approx(1.3, rel=0.05)
    assert slowed(doc) == {f"GET {CHANGED}"}, shift
    finding = next(f for f in doc["findings"] if f["span"] == f"GET {CHANGED}")
    assert "net of the +3" in finding["message"]
    # The +50% of the route itself, not the +95% it measured.
    assert finding["change"]["ratio"] == pytest.approx(1.5, rel=0.06)
    assert "also those this release did not touch" in shift["sentence"]
    text = report_text(doc)
    assert "(48% slower net of the +3" in text and "every route moved after the deploy)" in text
    assert "Every route was 3" in text.split("evidence:")[1]


def test_from_trace_files_a_release_wide_slowdown_in_before_after_is_the_releases(
    tmp_path: Path,
) -> None:
    # The old version replaced at the deploy, every route 30% slower, the traffic unchanged (a
    # dependency bump, a logging change): not netted away, so it regresses.
    doc = report(tmp_path, replaced(load=1.0, new_whole=1.3), changes=True)
    assert doc["comparison"]["kind"] == "before_after"
    shift = doc["global_shift"]
    assert shift["ratio"] == pytest.approx(1.3, rel=0.05) and shift["applied"] is False
    assert "so this is counted as the release's" in shift["sentence"], shift["sentence"]
    assert doc["verdict"] == "regressed"
    assert slowed(doc) >= {f"GET {r}" for r in ROUTES}


def both_serving(*, everything: float) -> list[Any]:
    """1.0 for 40 min and on beside 1.1 from the deploy; 1.1 ``everything``× slower on every
    route (a release-wide regression: a dependency bump, a logging change)."""
    old = serve("1.0", T0 - timedelta(minutes=40), UNTIL, seed=1, pods=("a", "b"))
    new = serve("1.1", T0, UNTIL, seed=2, pods=("c", "d"), slower=lambda _: everything)
    return old + new


@pytest.fixture
def overlap_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old version's past never stands in for it (it ran steadily here, so it would)."""
    monkeypatch.setattr(drift, "STEADY_WITHIN", 0.0)


@pytest.mark.usefixtures("overlap_only")
def test_a_release_wide_regression_in_the_overlap_is_never_netted(tmp_path: Path) -> None:
    doc = report(tmp_path, both_serving(everything=1.3), changes=True)
    assert doc["comparison"]["kind"] == "overlap"
    shift = doc["global_shift"]
    # Reported: every untouched route moved as much, but the overlap is not corrected.
    assert shift["ratio"] == pytest.approx(1.3, rel=0.05) and shift["applied"] is False
    assert shift["factors"] == []
    assert "both versions served at the same time" in shift["sentence"]
    assert doc["verdict"] == "regressed"
    assert slowed(doc) >= {f"GET {r}" for r in ROUTES}


@pytest.mark.usefixtures("overlap_only")
def test_an_overlap_look_without_change_is_not_corrected_either(tmp_path: Path) -> None:
    doc = report(tmp_path, both_serving(everything=1.0), changes=True)
    assert doc["comparison"]["kind"] == "overlap"
    shift = doc["global_shift"]
    assert shift["applied"] is False and shift["factors"] == []
    assert doc["verdict"] == "neutral", slowed(doc)


def test_a_release_wide_regression_beside_a_steady_old_version_regresses_against_its_past(
    tmp_path: Path,
) -> None:
    doc = report(tmp_path, both_serving(everything=1.3), changes=True)
    assert doc["comparison"]["kind"] == "before_after"
    assert "the time of the deploy moved nothing" in doc["comparison"]["reason"]
    assert doc["global_shift"]["applied"] is False
    assert doc["verdict"] == "regressed"
    assert slowed(doc) >= {f"GET {r}" for r in ROUTES}
