"""The release analysis: a new version's spans against the previous version's, per span group.

:func:`analyse` answers, for one look at a release: did it run (candidate spans, operations
that are new or gone, groups with too little traffic), how fast (one-sided Mann-Whitney both ways
with the Hodges-Lehmann ratio, exceedance tests on p95/p99, an effect floor raised by the
between-instance spread, without each new instance's warm-up), with what errors (Fisher exact
on the error proportion; exception types seen neither in the baseline nor in the service's
history, tested in their own family), whether the changed code ran (``reach``), and the insights
of ``insights`` (N+1, bottlenecks). Section numbers (§) refer to
shared/reference/detection-methods.md.

Quiet by design: the regression tests (latency, tail, error rate) form one Benjamini-Hochberg
family at q = fdr_q/looks, the improvements another (they never alarm), and error-rate tests
too sparse to ever pass are screened out (Tarone); a finding must pass BH *and* its effect
floor; it is "suspected" (watching) when first seen and "confirmed" when it holds at the next
look, or at once when its q-value is within the look's confirmation boundary:
``looks.confirm_alpha`` (1.5%) spent over the scheduled looks with Pocock's alpha-spending
function (0.0054 at the first of four looks; see :class:`~feedbot.policy.LookPolicy` for why).
Only confirmed findings make the verdict. A final look (``feedbot report``, one look of one)
has no later look to wait for: what passes is confirmed at once. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from feedbot.analysis import absence, attribution, drift, insights, reach, stats, warmup
from feedbot.analysis.detectors import Pair, TauHistory
from feedbot.analysis.drift import GlobalShift
from feedbot.analysis.findings import (
    Cause,
    Finding,
    GroupComparison,
    KnownException,
    Measure,
)
from feedbot.analysis.look import LookTests, group_summary, host_spread
from feedbot.analysis.reach import CodeReach
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.model import ReleaseData

__all__ = ["Analysis", "CodeReach", "Finding", "Verdict", "analyse"]

Verdict = Literal["regressed", "improved", "neutral", "insufficient_data", "not_running"]


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything one look at a release concluded.

    Attributes:
        verdict: regressed | improved | neutral | insufficient_data | not_running.
        groups: Every span group seen in either version.
        findings: What to say, regressions first.
        summary: How the verdict was reached, one sentence each (tests, levels, τ̂, floors).
        reach: Whether each changed function or file ran.
        look: Which scheduled look this is (1-based).
        looks: Scheduled looks in all (q is split over them).
        q_level: The BH level used at this look.
        warmup_excluded: New-version spans left out of latency as instance warm-up.
        final: No later look follows (a one-shot report): findings were decided at this one.
        causes: Why the changed groups changed, from the traces
            (:mod:`feedbot.analysis.attribution`), strongest first within a group.
        host_tau: This look's own τ̂ per version (new, baseline; None where fewer than two
            instances served it), which the service's later checks pool (``host_guard``).
        global_shift: How much the groups the release did not touch moved, and whether the latency
            tests were netted of it (a before/after look only; :mod:`feedbot.analysis.drift`).
    """

    verdict: Verdict
    groups: tuple[GroupComparison, ...]
    findings: tuple[Finding, ...]
    summary: tuple[str, ...]
    reach: tuple[CodeReach, ...] = ()
    look: int = 1
    looks: int = 4
    q_level: float = 0.0125
    warmup_excluded: int = 0
    final: bool = False
    causes: tuple[Cause, ...] = ()
    host_tau: tuple[stats.TauEstimate | None, ...] = ()
    global_shift: GlobalShift | None = None

    @property
    def watching(self) -> tuple[Finding, ...]:
        """Suspected findings: shown as "watching", not an alarm."""
        return tuple(f for f in self.findings if f.state == "suspected")


def analyse(
    candidate: ReleaseData,
    baseline: ReleaseData | None,
    *,
    changes: Sequence[Change],
    policy: DetectionPolicy,
    look: int = 1,
    looks: int = 4,
    previous: Analysis | None = None,
    held: Collection[str] = (),
    known_exceptions: Collection[KnownException] = (),
    final: bool = False,
    tau_history: TauHistory | None = None,
    window: str | None = None,
    load: tuple[float, float] | None = None,
    service_load: drift.ServiceLoad | None = None,
) -> Analysis:
    """Compare a release's spans with its baseline's at one look.

    Args:
        candidate: Spans of the new version.
        baseline: Spans of the previous version (None when there is none).
        changes: What the release changed, for "did the changed code run".
        policy: Every threshold and switch.
        look: Which scheduled look this is (1-based).
        looks: Scheduled looks; the FDR level is split evenly over them (Bonferroni).
        previous: The analysis at the previous look, for confirmation.
        held: Keys of the tested findings at the previous look (what ``previous`` would give),
            for callers that stored the keys rather than the whole analysis.
        known_exceptions: Exception types the service raised before (the last versions and
            days, §9); a type absent from the baseline but known here is not new. Without a
            store only the baseline counts.
        final: No later look follows (``feedbot report``): a finding that passes its test and
            floor is confirmed now instead of watched until a look that never comes.
        tau_history: The service's earlier releases' host spread, pooled into τ̂
            (``host_guard.history_checks``); None without a store.
        window: Over which time the versions were compared, ``"overlap"`` or
            ``"before_after"`` (None: not known); only before/after nets latency of the shift of
            untouched groups (``latency.before_after_correction``).
        load: Requests per minute (baseline, new version), for the words on that shift.
        service_load: The whole service's requests per minute before and after the deploy,
            every version together: ``auto`` nets a before/after shift only when it moved too.

    Returns:
        The verdict, per-group numbers, findings and how they were reached.
    """
    q_level = stats.bonferroni(policy.looks.fdr_q, looks)
    warm = warmup.leave_out(candidate, policy)
    candidate = warm.data
    pairs = _pairs(candidate, baseline)
    reached, reach_findings = reach.code_reach(changes, candidate, baseline, policy)
    if _total(candidate) == 0:
        why = absence.sentence(candidate.elsewhere)
        return _not_running(pairs, reached, reach_findings, look, looks, q_level, why)
    if baseline is None or _total(baseline) == 0:
        return _no_baseline(candidate, pairs, reached, reach_findings, policy, look, looks, q_level)
    hosts = host_spread(pairs, policy, tau_history)
    moved = drift.global_shift(
        pairs,
        changes,
        candidate,
        baseline,
        policy,
        window=window,
        load=load,
        service_load=service_load,
    )
    run = LookTests(policy, q_level, hosts, known_exceptions)
    run.test([replace(p, scale=moved.factor(p.span)) for p in pairs])
    findings = [*run.findings, *_operations(pairs, candidate, baseline, policy), *reach_findings]
    findings += insights.n_plus_one(candidate, baseline, policy)
    findings += insights.bottlenecks(candidate, baseline, run.regressed_spans)
    held_keys = set(held)
    if previous is not None:
        held_keys |= {f.key for f in previous.findings if f.tested}
    boundary = confirm_boundary(policy, look, looks)
    settled = _dedupe(
        [
            _settle(
                f, run.strong.get(id(f), False), held_keys, boundary, q_level, policy, final=final
            )
            for f in findings
        ]
    )
    verdict = _verdict(settled, tested=bool(run.tested))
    code = reach.reach_sentence(reached, any_code=reach.has_code(candidate, baseline))
    summary = (
        *_counts(candidate, baseline),
        *warm.notes,
        *run.summary,
        *((_boundary_sentence(policy, boundary),) if not final else ()),
        *((code,) if code else ()),
        *_verdict_reason(verdict, settled, final=final),
    )
    groups = tuple(run.comparison(p) for p in pairs)
    causes = attribution.explain(
        candidate,
        baseline,
        slower=_spans_of(settled, "latency_regression"),
        faster=_spans_of(settled, "latency_improvement"),
        erroring=_spans_of(settled, "error_rate_increase", "new_error_type"),
        policy=policy,
    )
    return Analysis(
        verdict,
        groups,
        _ordered(settled),
        summary,
        reached,
        look,
        looks,
        q_level,
        warmed_up(candidate),
        final,
        causes,
        hosts.parts,
        moved,
    )


def _spans_of(findings: list[Finding], *kinds: str) -> list[str]:
    """The span groups that tested findings of ``kinds`` are about, in order, once each."""
    spans = (f.span for f in findings if f.kind in kinds and f.tested and f.span)
    return list(dict.fromkeys(spans))


def warmed_up(data: ReleaseData) -> int:
    """Spans left out of the durations as instance warm-up (:mod:`feedbot.analysis.warmup`)."""
    return sum(g.warmup_excluded for g in data.groups)


def _total(data: ReleaseData) -> int:
    return sum(g.count for g in data.groups)


def _pairs(candidate: ReleaseData, baseline: ReleaseData | None) -> list[Pair]:
    """Groups matched by (name, kind), candidate order first, then groups only in the baseline."""
    base = {(g.name, g.kind): g for g in baseline.groups} if baseline is not None else {}
    pairs = [
        Pair(g.name, g.kind, g, base.pop((g.name, g.kind), None))
        for g in candidate.groups
        if g.count > 0
    ]
    pairs += [Pair(g.name, g.kind, None, g) for g in base.values() if g.count > 0]
    return pairs


def _exposure(data: ReleaseData) -> int:
    return data.traces if data.traces > 0 else _total(data)


def _operations(
    pairs: list[Pair], candidate: ReleaseData, baseline: ReleaseData, policy: DetectionPolicy
) -> list[Finding]:
    """New operations, and baseline operations the new version stopped serving.

    "Gone" is said only when the baseline's rate makes zero new spans unlikely: given m
    baseline spans, P(all m land in the baseline) = (1 − s)^m with s the new version's share of
    the exposure (traces, else spans); below ``reach.stopped_alpha`` it is claimed.
    """
    exp_new, exp_base = _exposure(candidate), _exposure(baseline)
    share = exp_new / (exp_new + exp_base)
    out = []
    for pair in pairs:
        if pair.base is None and pair.new is not None:
            out.append(
                Finding(
                    kind="new_operation",
                    severity="info",
                    span=pair.span,
                    message=f"{pair.span} ({pair.kind}) is new: {pair.new.count} spans",
                    candidate=Measure(pair.new.count, float(pair.new.count), "count"),
                    method="fact",
                )
            )
        elif pair.new is None and pair.base is not None:
            p = math.exp(pair.base.count * math.log1p(-share)) if share < 1 else 0.0
            if p < policy.reach.stopped_alpha:
                out.append(_gone(pair, exp_new, p, share))
    return out


def _gone(pair: Pair, exposure_new: int, p: float, share: float) -> Finding:
    assert pair.base is not None
    expected = pair.base.count * share / (1.0 - share) if share < 1 else math.inf
    return Finding(
        kind="operation_gone",
        severity="medium",
        span=pair.span,
        message=(
            f"{pair.span} ({pair.kind}) no longer runs: {pair.base.count} baseline spans, "
            f"0 new where about {expected:.0f} were expected at the baseline's rate; p={p:.2g}"
        ),
        baseline=Measure(pair.base.count, float(pair.base.count), "count"),
        candidate=Measure(exposure_new, 0.0, "count"),
        p_value=p,
        method="exact conditional test on counts, P(0 new | total) = (1 − s)^m",
    )


def _settle(
    finding: Finding,
    strong: bool,
    held: set[str],
    boundary: float,
    q_level: float,
    policy: DetectionPolicy,
    *,
    final: bool = False,
) -> Finding:
    """Suspected when first seen; confirmed when it held at the previous look, or at once when
    its q-value is within this look's confirmation boundary (:func:`confirm_boundary`).

    At a final look every tested finding is confirmed: it passed BH and its floor, and no later
    look could confirm it (the level of a one-shot look is the whole FDR, not a share of it).
    """
    if not finding.tested or final:
        return replace(finding, state="confirmed")
    q = finding.q_value
    at_once = boundary > 0.0 and q is not None and q <= boundary
    factor = policy.looks.overwhelming_factor
    overwhelming = strong and factor > 0 and q is not None and q <= q_level / factor
    confirmed = finding.key in held or at_once or overwhelming
    return replace(finding, state="confirmed" if confirmed else "suspected")


def confirm_boundary(policy: DetectionPolicy, look: int, looks: int) -> float:
    """The q-value at or below which a finding is confirmed at this look without a second one.

    This look's increment of ``looks.confirm_alpha`` under ``looks.confirm_spending``
    (:func:`~feedbot.analysis.stats.spending_boundary`), never above the look's BH level (a
    finding must pass before it can be confirmed); 0 when ``confirm_alpha`` is 0.
    """
    rules = policy.looks
    if rules.confirm_alpha <= 0.0:
        return 0.0
    spend = stats.spending_boundary(rules.confirm_alpha, look, looks, rules.confirm_spending)
    return min(spend, stats.bonferroni(rules.fdr_q, looks))


def _boundary_sentence(policy: DetectionPolicy, boundary: float) -> str:
    rules = policy.looks
    if boundary <= 0.0:
        return "A finding makes the verdict once it holds at two consecutive looks."
    name = {"pocock": "Pocock", "obrien_fleming": "O'Brien-Fleming"}[rules.confirm_spending]
    return (
        f"A finding makes the verdict once it holds at two consecutive looks, or at once with "
        f"q ≤ {boundary:.2g}: this look's share of a {rules.confirm_alpha:g} false-alarm budget "
        f"spent over the looks ({name} alpha-spending)."
    )


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One tested finding per claim (kind and group): the smallest p, confirmed if any is.

    A group's Mann-Whitney, p95 and p99 tests are three ways of seeing one regression.
    """
    best: dict[str, Finding] = {}
    for f in findings:
        if not f.tested or f.p_value is None:
            continue
        seen = best.get(f.key)
        # p = 0.0 is a p-value (an underflowed overwhelming one), not a missing one.
        if seen is None or seen.p_value is None or f.p_value < seen.p_value:
            confirmed = f.state == "confirmed" or (seen is not None and seen.state == "confirmed")
            best[f.key] = replace(f, state="confirmed" if confirmed else f.state)
        elif f.state == "confirmed":
            best[f.key] = replace(seen, state="confirmed")
    kept = [f for f in findings if not f.tested or f.p_value is None]
    return [*best.values(), *kept]


def _verdict(findings: list[Finding], *, tested: bool) -> Verdict:
    directions = {f.counts_toward for f in findings if f.state == "confirmed" and f.counts_toward}
    if "regressed" in directions:
        return "regressed"
    if "improved" in directions:
        return "improved"
    return "neutral" if tested else "insufficient_data"


def _counts(candidate: ReleaseData, baseline: ReleaseData) -> tuple[str, ...]:
    lines = [
        f"New version: {_total(candidate)} spans in {len(candidate.groups)} groups; baseline: "
        f"{_total(baseline)} spans in {len(baseline.groups)} groups.",
    ]
    for data, which in ((candidate, "new version"), (baseline, "baseline")):
        if data.sampled_traces is not None:
            lines.append(f"The {which} was read from a sample of {data.sampled_traces} traces.")
        lines += [f"{which.capitalize()}: {note}" for note in data.notes]
    return tuple(lines)


def _verdict_reason(
    verdict: Verdict, findings: list[Finding], *, final: bool = False
) -> tuple[str, ...]:
    watching = sum(f.state == "suspected" for f in findings)
    how = (
        "passed at this final look"
        if final
        else "held at two looks, or within the look's confirmation boundary"
    )
    reasons = {
        "regressed": f"a confirmed regression ({how})",
        "improved": "a confirmed improvement and no confirmed regression",
        "neutral": "no confirmed change beyond the effect floors in the groups with enough traffic",
        "insufficient_data": "no span group had enough spans in both versions for a latency test",
        "not_running": "no span of the new version was found",
    }
    line = f"Verdict {verdict}: {reasons[verdict]}."
    if watching:
        line += f" Watching {watching} suspected finding(s) until the next look."
    return (line,)


_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


def _ordered(findings: list[Finding]) -> tuple[Finding, ...]:
    return tuple(
        sorted(findings, key=lambda f: (f.state != "confirmed" and f.tested, _ORDER[f.severity]))
    )


def _not_running(
    pairs: list[Pair],
    reach: tuple[CodeReach, ...],
    reach_findings: list[Finding],
    look: int,
    looks: int,
    q_level: float,
    why: str,
) -> Analysis:
    groups = tuple(
        GroupComparison(p.span, p.kind, group_summary(p.base), None, "gone")
        for p in pairs
        if p.base is not None
    )
    summary = (why,)
    return Analysis(
        "not_running", groups, tuple(reach_findings), summary, reach, look, looks, q_level
    )


def _no_baseline(
    candidate: ReleaseData,
    pairs: list[Pair],
    reach: tuple[CodeReach, ...],
    reach_findings: list[Finding],
    policy: DetectionPolicy,
    look: int,
    looks: int,
    q_level: float,
) -> Analysis:
    groups = tuple(
        GroupComparison(p.span, p.kind, None, group_summary(p.new), "no_baseline")
        for p in pairs
        if p.new is not None
    )
    findings = [*reach_findings, *insights.n_plus_one(candidate, None, policy)]
    findings = [replace(f, state="suspected") if f.tested else f for f in findings]
    summary = (
        f"New version: {_total(candidate)} spans in {len(candidate.groups)} groups; no baseline "
        "spans, so nothing could be compared.",
        *(f"New version: {note}" for note in candidate.notes),
    )
    return Analysis(
        "insufficient_data", groups, tuple(findings), summary, reach, look, looks, q_level
    )
