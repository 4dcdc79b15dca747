"""The release report: an :class:`~feedbot.analysis.compare.Analysis` as the JSON contract or text.

The JSON shape is the contract of ``feedbot report --format json`` (issue 3); tools outside this
repository parse it, so keys only ever get added. Every number comes from the analysis object;
nothing is recomputed here. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedbot.analysis.compare import Analysis
from feedbot.analysis.drift import GlobalShift, ServiceLoad
from feedbot.analysis.findings import Cause, Effect, Finding, GroupSummary, Measure

#: The per-group numbers of the contract, in order.
GROUP_FIELDS = ("count", "errors", "p50_ms", "p95_ms", "p99_ms")
#: Finding fields of the contract that appear only when they apply.
OPTIONAL_FINDING_FIELDS = (
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
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Over which time the two versions were compared, and why (detection-methods.md §8, §9).

    Attributes:
        kind: ``"overlap"``: both versions over the time both served (a rolling deploy's
            overlap, the same load for both); ``"before_after"``: the new version's window
            against the baseline's own, which reaches back before the deploy (the fallback).
        reason: The plain sentence that says which and why.
        window: The overlap's first and last span start (``"overlap"`` only).
        spans: Spans compared, (baseline, new version).
        per_minute: Requests per minute (entry spans: SERVER or CONSUMER, else all) of each
            version over its window, (baseline, new version); None when a side had no span.
        service_load: The whole service's requests per minute, every version together, in the
            baseline window before the deploy and in the look's window after it (before/after
            looks; None in the overlap).
    """

    kind: str
    reason: str
    window: tuple[datetime, datetime] | None = None
    spans: tuple[int, int] = (0, 0)
    per_minute: tuple[float, float] | None = None
    service_load: ServiceLoad | None = None


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What the report says around the analysis: which release, which windows.

    Attributes:
        service: The service.
        version: The new version.
        baseline_version: The version compared against (None when there was none).
        environment: The deployment environment.
        candidate_window: Start and end of the new version's spans.
        baseline_window: Start and end of the baseline's spans, None without a baseline.
        notes: How inputs were chosen (e.g. the baseline version), one sentence each.
        candidate_observed: First and last start of the new version's spans counted (None when
            none was, or before the backend answered): the time it was seen serving.
        baseline_observed: The same for the baseline's spans.
        comparison: Over which time the versions were compared (None without a baseline).
    """

    service: str
    version: str
    baseline_version: str | None
    environment: str | None
    candidate_window: tuple[datetime, datetime]
    baseline_window: tuple[datetime, datetime] | None = None
    notes: tuple[str, ...] = ()
    candidate_observed: tuple[datetime, datetime] | None = None
    baseline_observed: tuple[datetime, datetime] | None = None
    comparison: Comparison | None = None


def to_json(analysis: Analysis, context: ReportContext) -> dict[str, Any]:
    """The contract's JSON object.

    Args:
        analysis: The analysis to report.
        context: Service, versions and windows.

    Returns:
        service, version, baseline_version, environment, window {candidate, baseline}, verdict,
        groups, findings, notes (how the inputs and the verdict were reached),
        ``warmup_excluded`` (new-version spans left out of latency as instance warm-up), and
        ``observed`` {candidate, baseline}: the first and last start of the spans counted
        ({start, end}, null when none), the time each version was seen serving inside its
        window, which traffic rates divide by (an addition to the contract). Each
        group's ``baseline``/``candidate`` also carries ``callers`` (an addition to the
        contract): ``[{"span": caller group, "count": spans}, ...]``, busiest first, at most 5.
        ``causes`` (an addition): why changed groups changed, from the traces, each
        ``{span, kind, name, explains, share, baseline, candidate, n_baseline, n_candidate,
        detail}``.
        ``comparison`` (an addition): over which time the versions were compared, ``{kind:
        "overlap" | "before_after", reason, window {start, end} | null, spans {baseline,
        candidate}, requests_per_minute {baseline, candidate} | null,
        service_requests_per_minute}``; null without a baseline.
        ``global_shift`` (an addition): how much the span groups the release did not touch
            moved, ``{ratio | null, sentence, basis: "untouched" | "all_others", groups [{span,
            ratio}], p_value | null, beyond_noise, applied, window, requests_per_minute
            {baseline, candidate} | null, factors [{span, factor}],
            service_requests_per_minute}``: applied (each baseline × factor) only in a
            before/after look; null without a baseline. ``beyond_noise``: the groups moved
            together beyond their noise (t test at ``drift.NOISE_ALPHA``).
            ``service_requests_per_minute`` (in both): the whole service's requests per minute,
            every version together, ``{before, after, counted: "requests" | "spans", unknown}``
            (before the deploy in the baseline window, after it in the look's; null values and
            ``unknown`` saying why when the store cannot count them); null in the overlap.
    """
    return {
        "service": context.service,
        "version": context.version,
        "baseline_version": context.baseline_version,
        "environment": context.environment,
        "window": {
            "candidate": _window(context.candidate_window),
            "baseline": _window(context.baseline_window),
        },
        "verdict": analysis.verdict,
        "groups": [
            {
                "span": g.span,
                "kind": g.kind,
                "baseline": _group(g.baseline),
                "candidate": _group(g.candidate),
            }
            for g in analysis.groups
        ],
        "findings": [finding_json(f) for f in analysis.findings],
        "causes": [cause_json(c) for c in analysis.causes],
        "notes": [*context.notes, *analysis.summary],
        "warmup_excluded": analysis.warmup_excluded,
        "observed": {
            "candidate": _window(context.candidate_observed),
            "baseline": _window(context.baseline_observed),
        },
        "comparison": _comparison(context.comparison),
        "global_shift": _global_shift(analysis.global_shift),
    }


def _global_shift(shift: GlobalShift | None) -> dict[str, Any] | None:
    if shift is None:
        return None
    return {
        "ratio": _number(shift.ratio),
        "sentence": shift.sentence,
        "basis": shift.basis,
        "groups": [{"span": span, "ratio": _number(r)} for span, r in shift.groups],
        "p_value": _number(shift.p_value),
        "beyond_noise": shift.beyond_noise,
        "applied": shift.applied,
        "window": shift.window,
        "requests_per_minute": None
        if shift.load is None
        else {"baseline": _number(shift.load[0]), "candidate": _number(shift.load[1])},
        "factors": [{"span": span, "factor": _number(f)} for span, f in shift.factors],
        "service_requests_per_minute": _service_load(shift.service_load),
    }


def _service_load(load: ServiceLoad | None) -> dict[str, Any] | None:
    if load is None:
        return None
    rates = load.per_minute
    return {
        "before": None if rates is None else _number(rates[0]),
        "after": None if rates is None else _number(rates[1]),
        "counted": load.counted,
        "unknown": load.unknown or None,
    }


def _comparison(comparison: Comparison | None) -> dict[str, Any] | None:
    if comparison is None:
        return None
    rates = comparison.per_minute
    return {
        "kind": comparison.kind,
        "reason": comparison.reason,
        "window": _window(comparison.window),
        "spans": dict(zip(("baseline", "candidate"), comparison.spans, strict=True)),
        "requests_per_minute": None
        if rates is None
        else {"baseline": _number(rates[0]), "candidate": _number(rates[1])},
        "service_requests_per_minute": _service_load(comparison.service_load),
    }


def _window(window: tuple[datetime, datetime] | None) -> dict[str, str] | None:
    if window is None:
        return None
    return {"start": window[0].isoformat(), "end": window[1].isoformat()}


def _group(summary: GroupSummary | None) -> dict[str, Any] | None:
    """A version's group numbers (the contract's), plus ``callers``: its busiest parent groups."""
    if summary is None:
        return None
    out: dict[str, Any] = {key: _number(getattr(summary, key)) for key in GROUP_FIELDS}
    out["callers"] = [{"span": span, "count": count} for span, count in summary.callers]
    return out


def _number(value: float | int | None) -> float | int | None:
    """JSON has no NaN or infinity: those become null; floats keep 6 significant digits."""
    if value is None or isinstance(value, int):
        return value
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def finding_json(finding: Finding) -> dict[str, Any]:
    """One finding: kind, severity, message, state, then only the fields that apply."""
    out: dict[str, Any] = {
        "kind": finding.kind,
        "severity": finding.severity,
        "message": finding.message,
        "state": finding.state,
    }
    for key in OPTIONAL_FINDING_FIELDS:
        value = getattr(finding, key)
        if value is None or value == ():
            continue
        if isinstance(value, Measure):
            out[key] = {"n": value.n, "value": _number(value.value), "unit": value.unit}
        elif isinstance(value, Effect):
            out[key] = _effect(value)
        elif isinstance(value, tuple):
            out[key] = list(value)
        elif isinstance(value, float):
            out[key] = _number(value)
        else:
            out[key] = value
    return out


def cause_json(cause: Cause) -> dict[str, Any]:
    """One cause: every field; numbers rounded as the rest of the contract's."""
    return {
        "span": cause.span,
        "kind": cause.kind,
        "name": cause.name,
        "explains": cause.explains,
        "share": _number(cause.share),
        "baseline": _number(cause.baseline),
        "candidate": _number(cause.candidate),
        "n_baseline": cause.n_baseline,
        "n_candidate": cause.n_candidate,
        "detail": cause.detail,
    }


def _effect(effect: Effect) -> dict[str, Any]:
    out = {
        "ratio": _number(effect.ratio),
        "ci_low": _number(effect.low),
        "ci_high": _number(effect.high),
        "ci_level": effect.level if effect.low is not None or effect.high is not None else None,
        "floor": _number(effect.floor),
        "mde": _number(effect.mde),
    }
    return {k: v for k, v in out.items() if v is not None}
