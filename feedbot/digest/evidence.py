"""The evidence behind a story, for its details view: windows, tests, n, p/q, CI. Pure.

Nothing here goes into a headline: a story names what changed in plain words, and this is the
click away that shows how it was measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from feedbot.digest.words import display_name, plural

PERCENTILES = ("p50", "p95", "p99")
#: Findings shown first in the details: the changes, then the facts.
_ORDER = (
    "latency_regression",
    "error_rate_increase",
    "new_error_type",
    "n_plus_one",
    "bottleneck",
    "latency_improvement",
    "error_rate_decrease",
    "code_not_reached",
    "operation_gone",
)


def window_text(window: Mapping[str, str] | None) -> str:
    """``Dec 06 00:58 – Dec 07 00:58 UTC (24.0 h)``: both dates when the window crosses a day.

    Windows shorter than 10 minutes show seconds, so their two ends differ.
    """
    if not window:
        return "no window"
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    seconds = (end - start).total_seconds()
    clock = "%H:%M:%S" if seconds < 600 else "%H:%M"
    length = length_text(seconds)
    if start.date() == end.date():
        return f"{start:%b %d} {start.strftime(clock)}–{end.strftime(clock)} UTC ({length})"
    return (
        f"{start:%b %d} {start.strftime(clock)} – {end:%b %d} {end.strftime(clock)} UTC ({length})"
    )


def length_text(seconds: float) -> str:
    """``24.0 h``, ``20 min`` or ``45 s``: a length of time in the unit that reads best."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def samples(report: Mapping[str, Any], *, brief: bool = False) -> str:
    """What the numbers come from, baseline → new: spans and groups per version, each window.

    ``brief`` (the line under a message) leaves out the untouched routes' shift when it was
    within noise and changed nothing: its t test is for the details.
    """
    groups = report.get("groups", [])
    window = report.get("window") or {}
    sides = []
    for side, version, label in (
        ("baseline", report.get("baseline_version"), "baseline"),
        ("candidate", report.get("version"), "new"),
    ):
        if version is None:
            sides.append("no baseline version")
            continue
        present = [g[side] for g in groups if g.get(side)]
        spans = sum(int(g.get("count") or 0) for g in present)
        sides.append(
            f"{label} {version}: {spans} spans in {plural(len(present), 'group')}, "
            f"{window_text(window.get(side))}"
        )
    return " ".join([*comparison_words(report, brief=brief), " → ".join(sides)])


def comparison_words(report: Mapping[str, Any], *, brief: bool = False) -> list[str]:
    """Over which time the versions were compared and why, and the load of each, in words
    (``brief``: see :func:`samples`)."""
    comparison = report.get("comparison")
    if not isinstance(comparison, Mapping):
        return []
    words = [str(comparison.get("reason") or "")]
    rates = comparison.get("requests_per_minute")
    shift = report.get("global_shift")
    shift = shift if isinstance(shift, Mapping) and shift.get("sentence") else None
    # Reports stored before ``beyond_noise`` existed say the shift in full, as they did.
    quiet = shift is not None and shift.get("beyond_noise") is False and not shift.get("applied")
    if brief and quiet:
        shift = None
    # The shift of untouched routes says the load in its own sentence when it has a shift.
    said = shift is not None and None not in (shift.get("ratio"), shift.get("requests_per_minute"))
    if isinstance(rates, Mapping) and rates.get("baseline") and rates.get("candidate") and not said:
        old, new = float(rates["baseline"]), float(rates["candidate"])
        change = f"{new / old - 1:+.0%}" if old else "n/a"
        words.append(
            f"Load while each version served: {old:,.0f} → {new:,.0f} requests/min, old → new "
            f"({change})."
        )
    if shift is not None:
        words.append(str(shift["sentence"]))
    return words


def percentiles(report: Mapping[str, Any], span: str) -> str:
    """``p50 17.2 → 21.3 · p95 … · p99 … ms (n = 2000 → 2000 spans)`` for one group."""
    group = next((g for g in report.get("groups", []) if g.get("span") == span), None)
    if group is None or not group.get("baseline") or not group.get("candidate"):
        return ""
    base, new = group["baseline"], group["candidate"]
    parts = [f"{q} {_ms(base.get(f'{q}_ms'))} → {_ms(new.get(f'{q}_ms'))}" for q in PERCENTILES]
    return " · ".join(parts) + f" ms (n = {base.get('count')} → {new.get('count')} spans)"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def finding_evidence(finding: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    """One finding as evidence: what, where, and its sentence with test, n, p/q and CI."""
    kind = str(finding.get("kind") or "finding").replace("_", " ")
    watching = " (watching: not confirmed yet)" if finding.get("state") == "suspected" else ""
    line = f"{kind}{watching}: {display_name(str(finding.get('message') or ''))}"
    if "latency" in str(finding.get("kind")):
        detail = percentiles(report, str(finding.get("span")))
        if detail:
            line += f" [{detail}]"
    return line


def cause_evidence(cause: Mapping[str, Any]) -> str:
    """One cause: what it is, the share it explains, its values and samples, how measured."""
    unit = "ms per request" if cause.get("explains") == "latency" else "error rate"
    share = float(cause.get("share") or 0)
    line = (
        f"why {display_name(str(cause.get('span')))}: {cause.get('kind')} "
        f"{display_name(str(cause.get('name')))} explains {share:.0%} of the "
        f"{cause.get('explains')} change ({_num(cause.get('baseline'))} → "
        f"{_num(cause.get('candidate'))} {unit}, n = {cause.get('n_baseline')} → "
        f"{cause.get('n_candidate')})"
    )
    detail = str(cause.get("detail") or "")
    return f"{line}; {detail}" if detail else line


def _num(value: Any) -> str:
    if value is None:
        return "none"
    return f"{float(value):.3g}"


def evidence_lines(report: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The details of a story: windows, causes, the findings (changes first), the notes."""
    out = [f"Samples and windows: {samples(report)}"]
    out += [cause_evidence(c) for c in report.get("causes") or []]
    rank = {kind: i for i, kind in enumerate(_ORDER)}
    ordered = sorted(findings, key=lambda f: rank.get(str(f.get("kind")), len(_ORDER)))
    out += [finding_evidence(f, report) for f in ordered]
    out += [f"note: {note}" for note in report.get("notes") or []]
    return out
