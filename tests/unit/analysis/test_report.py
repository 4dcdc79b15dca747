"""The report: the JSON contract of ``feedbot report`` and the terminal text."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from feedbot.analysis.compare import analyse
from feedbot.analysis.drift import ServiceLoad
from feedbot.analysis.report import Comparison, ReportContext, to_json
from feedbot.digest.text import report_text
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ExceptionSeen
from tests.unit.analysis.synth import Group, release, routes

TOP = {
    "service",
    "version",
    "baseline_version",
    "environment",
    "window",
    "verdict",
    "groups",
    "findings",
}
FINDING_FIELDS = {
    "span",
    "function",
    "file",
    "exception_type",
    "statement",
    "baseline",
    "candidate",
    "change",
    "p_value",
    "q_value",
    "method",
    "example_trace_ids",
}
T0, T1, T2 = (datetime(2026, 11, 24, h, tzinfo=UTC) for h in (8, 10, 12))
CONTEXT = ReportContext(
    service="vault-service",
    version="1.4.2",
    baseline_version="1.4.1",
    environment="production",
    candidate_window=(T1, T2),
    baseline_window=(T0, T2),
    notes=("Baseline version 1.4.1: given by --baseline-version.",),
)
#: As stored since serving times are kept: 1.4.1 served the two hours before the deploy at T1.
SERVED = replace(CONTEXT, baseline_observed=(T0, T1), candidate_observed=(T1, T2))


def _analysis():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    base = release(rng, routes(4, 2000))
    specs = routes(4, 2000)
    specs[1] = replace(specs[1], ratio=1.3)
    cand = release(rng, specs)
    groups = [
        replace(g, exceptions=(ExceptionSeen("KeyError", 3, "x", "ef" * 16),))
        if g.name == "GET /r2"
        else g
        for g in cand.groups
    ]
    return analyse(replace(cand, groups=groups), base, changes=(), policy=DetectionPolicy())


def test_json_has_exactly_the_contract_keys() -> None:
    doc = to_json(_analysis(), CONTEXT)
    # Additions to the contract (keys only ever get added): notes, warmup_excluded, observed,
    # causes, comparison, global_shift.
    extra = {"notes", "warmup_excluded", "observed", "causes", "comparison", "global_shift"}
    assert set(doc) == TOP | extra
    assert doc["observed"] == {"candidate": None, "baseline": None}  # the context had none
    assert doc["comparison"] is None  # nor a comparison
    assert doc["verdict"] == "regressed" and doc["warmup_excluded"] == 0
    assert doc["window"] == {
        "candidate": {"start": T1.isoformat(), "end": T2.isoformat()},
        "baseline": {"start": T0.isoformat(), "end": T2.isoformat()},
    }
    for group in doc["groups"]:
        assert set(group) == {"span", "kind", "baseline", "candidate"}
        for side in ("baseline", "candidate"):
            # The contract's numbers, plus callers (an addition: keys only ever get added).
            assert set(group[side]) == {"count", "errors", "p50_ms", "p95_ms", "p99_ms", "callers"}
    kinds = set()
    for finding in doc["findings"]:
        assert {"kind", "severity", "message", "state"} <= set(finding)
        assert set(finding) - {"kind", "severity", "message", "state"} <= FINDING_FIELDS
        kinds.add(finding["kind"])
    assert {"latency_regression", "new_error_type"} <= kinds
    json.dumps(doc, allow_nan=False)


def test_json_latency_finding_carries_samples_effect_p_and_q() -> None:
    doc = to_json(_analysis(), CONTEXT)
    (latency,) = [f for f in doc["findings"] if f["kind"] == "latency_regression"]
    assert latency["span"] == "GET /r1" and latency["state"] == "confirmed"
    assert latency["baseline"]["n"] == 2000 and latency["baseline"]["unit"] == "p50_ms"
    assert set(latency["change"]) >= {"ratio", "ci_low", "ci_high", "ci_level", "floor"}
    assert 0 < latency["p_value"] <= latency["q_value"] <= 0.0125
    (new_type,) = [f for f in doc["findings"] if f["kind"] == "new_error_type"]
    assert new_type["example_trace_ids"] == ["ef" * 16]
    assert "p_value" in new_type  # its own (failed) test is shown with the fact


def test_json_groups_carry_their_busiest_callers_from_parent_spans() -> None:
    rng = np.random.default_rng(3)
    seen = tuple((f"GET /c{i}", 10 * i) for i in range(7)) + (("(remote)", 40), ("(root)", 0))
    base = release(rng, [Group("SELECT vaults", 200, callers=(("GET /vaults/{id}", 150),))])
    cand = release(rng, [Group("SELECT vaults", 200, callers=seen)])
    doc = to_json(analyse(cand, base, changes=(), policy=DetectionPolicy()), CONTEXT)
    (group,) = doc["groups"]
    assert group["candidate"]["callers"] == [
        {"span": "GET /c6", "count": 60},
        {"span": "GET /c5", "count": 50},
        {"span": "(remote)", "count": 40},
        {"span": "GET /c4", "count": 40},
        {"span": "GET /c3", "count": 30},
    ]  # the five busiest, most spans first; callers that never called are left out
    assert group["baseline"]["callers"] == [{"span": "GET /vaults/{id}", "count": 150}]
    assert group["baseline"]["count"] == 200  # the contract's numbers are unchanged
    json.dumps(doc, allow_nan=False)


def test_json_of_a_release_that_never_ran() -> None:
    rng = np.random.default_rng(1)
    from feedbot.spans.model import ReleaseData

    result = analyse(
        ReleaseData(groups=[]), release(rng, routes(2, 100)), changes=(), policy=DetectionPolicy()
    )
    doc = to_json(result, replace(CONTEXT, baseline_window=None))
    assert doc["verdict"] == "not_running" and doc["window"]["baseline"] is None
    assert all(g["candidate"] is None for g in doc["groups"])


def test_text_report_shows_verdict_findings_groups_and_how() -> None:
    text = report_text(to_json(_analysis(), CONTEXT))
    assert text.startswith("vault-service 1.4.2 vs 1.4.1 (production)\nverdict: regressed")
    assert "`GET /r1`" in text.split("evidence:")[0]  # the story names the route
    assert "Benjamini-Hochberg" in text.split("evidence:")[1]  # how, in the evidence


def test_json_records_the_time_each_version_was_seen_serving() -> None:
    seen = (T0.replace(minute=59, second=55), T0.replace(minute=59, second=59, microsecond=7))
    context = replace(CONTEXT, baseline_observed=seen, candidate_observed=(T1, T2))

    doc = json.loads(json.dumps(to_json(_analysis(), context)))

    assert doc["observed"] == {
        "baseline": {
            "start": "2026-11-24T08:59:55+00:00",
            "end": "2026-11-24T08:59:59.000007+00:00",
        },
        "candidate": {"start": T1.isoformat(), "end": T2.isoformat()},
    }


def test_json_and_text_say_over_which_time_the_versions_were_compared() -> None:
    reason = "Compared while both versions served: Nov 24 09:00–10:00 UTC (60 min), 10 vs 20 spans."
    comparison = Comparison("overlap", reason, (T1, T2), (2310, 2280), (120.0, 156.04))
    doc = json.loads(json.dumps(to_json(_analysis(), replace(CONTEXT, comparison=comparison))))

    assert doc["comparison"] == {
        "kind": "overlap",
        "reason": reason,
        "window": {"start": T1.isoformat(), "end": T2.isoformat()},
        "spans": {"baseline": 2310, "candidate": 2280},
        "requests_per_minute": {"baseline": 120.0, "candidate": 156.04},
        "service_requests_per_minute": None,
    }
    evidence = report_text(doc).split("evidence:")[1]
    assert (
        f"Samples and windows: {reason} Load while each version served: 120 → 156 requests/min, "
        "old → new (+30%)." in (evidence)
    )


def test_a_before_after_comparison_carries_the_whole_services_rates() -> None:
    load = ServiceLoad((300.25, 390.5))
    comparison = Comparison("before_after", "Before and after.", None, (2310, 2280), None, load)
    doc = json.loads(json.dumps(to_json(_analysis(), replace(CONTEXT, comparison=comparison))))
    assert doc["comparison"]["service_requests_per_minute"] == {
        "before": 300.25,
        "after": 390.5,
        "counted": "requests",
        "unknown": None,
    }
    unknown = ServiceLoad(None, unknown="the jaeger backend cannot count the service's requests")
    comparison = replace(comparison, service_load=unknown)
    doc = json.loads(json.dumps(to_json(_analysis(), replace(CONTEXT, comparison=comparison))))
    rates = doc["comparison"]["service_requests_per_minute"]
    assert rates["before"] is None and rates["after"] is None
    assert rates["unknown"] == "the jaeger backend cannot count the service's requests"
