"""How much every route moved, also those the release did not touch (§8 difference-in-differences).

A before/after look compares the new version with the old version's spans from *before* the
deploy, so whatever else changed at that time (a busier hour, a neighbour's batch job) moves
every span group, touched or not. The global shift is the median, over the span groups the
release did not touch, of each group's log-median shift new/old. In a before/after look, when
that shift is beyond noise, each group is tested against its baseline scaled by it (baseline
durations × exp(shift)): what is left is the group's own change, net of the time. In the
overlap window both versions served the same load at the same time, and subtracting the
untouched groups' shift there would erase real release-wide regressions (a dependency bump, a
GC or logging change): it is reported, never applied.

Netting a before/after look also erases a real release-wide regression (a dependency bump, a
GC or logging change slows every route, touched or not), so by default
(``latency.before_after_correction: auto``) the shift is netted only when the whole service's
load moved with it: its requests per minute, every version together (:class:`ServiceLoad`),
in the baseline window before the deploy against the look's window after it, changed by
:data:`LOAD_STEP` or more in the same direction (more requests and slower, or fewer and
faster). A busier hour brings more requests; a slower release brings the same requests, or
fewer when its clients wait for the answers (a closed loop), so that is counted as the
release's. A version's own rate would not do: in a rolling deploy it mixes the load with the
version's share of the rollout.

"Touched": a group where a changed function (or changed lines) ran in either version
(:mod:`feedbot.analysis.reach`), the groups that called it up to the route, and every group
those call (a changed function's queries run beside its span, under the same route). When the
release names no change, or none of its changes shows on any span, every group except the one
tested counts, and the report says so.

Only the service's own spans (SERVER, CONSUMER, INTERNAL) give and take the shift: a CLIENT or
PRODUCER span waits on another system (a database, a broker), whose load is its own, so those
are compared as measured.

"Beyond noise": a two-sided one-sample t test of the untouched groups' shifts against 0 at
``NOISE_ALPHA``, with k − 1 degrees of freedom from their spread across groups. That spread is
both each group's sampling noise and how differently the groups react to load, so one group's
own slowdown does not make a global one, and a load that hits the groups very unevenly is not
subtracted as if it were one factor. The level is lenient on purpose: netting a shift that was
only noise moves each baseline by about that noise, while leaving a real one in place alarms on
every route. The estimate itself is the median, which one outlying group cannot move far.
Pure: no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from feedbot.analysis import reach, stats
from feedbot.analysis.detectors import Pair, durations
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import ReleaseData

#: Untouched groups the global shift needs (besides the group tested).
MIN_GROUPS = 3
#: Two-sided level of the t test that the untouched groups moved together, not by noise.
NOISE_ALPHA = 0.05
#: Change of the service's requests per minute, every version together, from before the deploy
#: to the look (in the shift's direction), from which the untouched routes' shift is read as the
#: load's and netted (``latency.before_after_correction: auto``). A look's count is Poisson:
#: ±2.6% at 50 requests/min over 30 min, ±1% at 300. In ``benchmarks.overlap`` (50 requests/min,
#: 3 deploys a case, every look) the ratio read 0.97 to 1.04 with no change, +20% on one route,
#: or +20% on every route under the same load; 1.27 to 1.35 with a +30% load step at the deploy;
#: 1.14 to 1.22 at the 2 h and 4 h looks when the step came an hour after it; and 0.83 to 0.96
#: for a release 20% slower under a closed loop. 10% sits above the noise and below every step.
LOAD_STEP = 0.10
_TOP = ("(root)", "(remote)")
#: Span kinds that wait on another system: their latency is that system's load, not this
#: service's, so the service's shift is neither estimated from them nor applied to them.
_DEPENDENCY = ("CLIENT", "PRODUCER")


@dataclass(frozen=True, slots=True)
class ServiceLoad:
    """The whole service's requests per minute, every version together: in the baseline window
    before the deploy and in the look's window after it.

    Attributes:
        per_minute: (before, after), None when not known (``unknown`` says why).
        counted: What was counted: ``"requests"`` (SERVER and CONSUMER spans) or ``"spans"``
            (the service has no entry spans: every span).
        unknown: Why the rates are not known, as the end of a sentence ("the X backend cannot
            count …").
    """

    per_minute: tuple[float, float] | None
    counted: str = "requests"
    unknown: str = ""

    @property
    def change(self) -> float | None:
        """after / before − 1 (None when not known)."""
        if self.per_minute is None or self.per_minute[0] <= 0:
            return None
        return self.per_minute[1] / self.per_minute[0] - 1.0

    @property
    def unit(self) -> str:
        """What the rates count: requests/min, or spans/min when requests could not be told."""
        return "requests/min" if self.counted == "requests" else "spans/min"

    @property
    def numbers(self) -> str:
        """The rates before and after, as "300 → 391"."""
        assert self.per_minute is not None
        return f"{self.per_minute[0]:,.0f} → {self.per_minute[1]:,.0f}"


def load_gate(ratio: float, load: ServiceLoad | None) -> tuple[bool, str]:
    """Whether a before/after shift of ``ratio`` is the load's (net it), and the words why.

    The words follow "Every route was 30% slower after the deploy, …" and end with ": " or a
    comma, ready for what is done about it.
    """
    if load is None or load.change is None:
        why = (
            load.unknown if load is not None and load.unknown else "the service's load is not known"
        )
        return False, f"but {why}, so this is counted as the release's: "
    change, unit, numbers = load.change, load.unit, load.numbers
    direction = 1.0 if ratio >= 1.0 else -1.0
    if change * direction >= LOAD_STEP:
        more = "more" if change > 0 else "fewer"
        return True, (
            f"and the service served {abs(change):.0%} {more} {unit} ({numbers}, every version "
            "together): a change of load, so "
        )
    if change * direction <= -LOAD_STEP:
        less = "fewer" if change < 0 else "more"
        return False, (
            f"while the service served {abs(change):.0%} {less} {unit} ({numbers}, every version "
            "together), not what a busier (or quieter) time brings: a release that slows "
            "every route serves fewer requests when clients wait for the answers, so this is "
            "counted as the release's: "
        )
    return False, (
        f"but the load did not change ({numbers} {unit}, {change:+.0%}, every version together; "
        f"{LOAD_STEP:.0%} or more in the same direction would be read as a busier time), so "
        "this is counted as the release's: "
    )


@dataclass(frozen=True, slots=True)
class GlobalShift:
    """The median shift of the span groups the release did not touch, and whether it was used.

    Attributes:
        ratio: exp(median log-median shift new/old) over ``groups``; None with fewer than
            ``MIN_GROUPS``.
        groups: The untouched groups it came from, with their own ratio each.
        basis: ``"untouched"`` (groups away from the changed code) or ``"all_others"`` (the
            release named no change that shows on the spans: every group but the one tested).
        p_value: The two-sided t test's p that the groups moved together (None: not tested).
        applied: Whether each group was tested against its baseline scaled by the shift.
        window: ``"before_after"`` or ``"overlap"`` (None: not known).
        load: Requests per minute, (baseline, new version), when known.
        reason: Why it was, or was not, applied, in words.
        factors: Per tested group, the factor its baseline was scaled by (leave-one-out: a
            group's own shift never enters its factor); empty when not applied.
        service_load: The whole service's requests per minute before and after the deploy
            (before/after looks), which ``auto`` decides by; None when not asked.
        lead: What joins the shift's words to ``reason`` (": ", or ", " before the load's).
    """

    ratio: float | None
    groups: tuple[tuple[str, float], ...]
    basis: str
    p_value: float | None
    applied: bool
    window: str | None
    load: tuple[float, float] | None
    reason: str
    factors: tuple[tuple[str, float], ...] = ()
    service_load: ServiceLoad | None = None
    lead: str = ": "

    def factor(self, span: str) -> float:
        """What ``span``'s baseline durations are multiplied by (1 when not corrected)."""
        return dict(self.factors).get(span, 1.0)

    @property
    def beyond_noise(self) -> bool:
        """Whether the untouched groups moved together beyond their noise (t test)."""
        return self.p_value is not None and self.p_value <= NOISE_ALPHA

    @property
    def sentence(self) -> str:
        """The plain words next to the verdict."""
        if self.ratio is None:
            return self.reason
        change = self.ratio - 1.0
        how = "slower" if change >= 0 else "faster"
        scope = (
            "also those this release did not touch"
            if self.basis == "untouched"
            else "and the release names no changed code the spans show, so each route is set "
            "against all the others"
        )
        # Each version's own rate, unless the words name the whole service's (auto's gate).
        rates = self.service_load.per_minute if self.service_load is not None else None
        whole = self.lead != ": " and rates is not None
        load = (
            f" (load while each version served: {self.load[0]:,.0f} → {self.load[1]:,.0f} "
            "requests/min)"
            if self.load is not None and not whole
            else ""
        )
        if self.window == "overlap":
            moved = (
                f"Routes this release did not touch were {abs(change):.0%} {how} in the new "
                f"version than in the old one over the same time{load}: "
            )
        elif self.p_value is not None and not self.beyond_noise:
            # Not "every route": the groups did not move together beyond their noise.
            moved = (
                f"Routes this release did not touch were {abs(change):.0%} {how} after the "
                f"deploy at their median{load}: "
            )
        else:
            moved = f"Every route was {abs(change):.0%} {how} after the deploy, {scope}{load}"
            return moved + self.lead + self.reason
        if abs(change) < 0.005:
            moved = f"Routes this release did not touch kept their latency ({change:+.1%}){load}: "
        return moved + self.reason


def global_shift(
    pairs: Sequence[Pair],
    changes: Sequence[Change],
    candidate: ReleaseData,
    baseline: ReleaseData,
    policy: DetectionPolicy,
    *,
    window: str | None,
    load: tuple[float, float] | None = None,
    service_load: ServiceLoad | None = None,
) -> GlobalShift:
    """The untouched groups' shift, applied to the baselines in a before/after look only.

    Args:
        pairs: Every span group in both versions.
        changes: What the release changed.
        candidate: The new version's spans (for where the changed code ran).
        baseline: The baseline's spans.
        policy: ``latency.min_samples`` and ``latency.before_after_correction``.
        window: The comparison's kind, ``"before_after"`` or ``"overlap"`` (None: unknown,
            never corrected).
        load: Requests per minute (baseline, new), for the words.
        service_load: The whole service's requests per minute before and after the deploy,
            which ``latency.before_after_correction: auto`` nets by (:func:`load_gate`).
    """
    mode = _mode(policy.latency.before_after_correction)
    touched = _touched(changes, candidate, baseline)
    basis = "untouched" if touched else "all_others"
    shifts = {
        p.span: s
        for p in pairs
        if p.span not in touched
        and p.kind not in _DEPENDENCY
        and (s := _shift(p, policy)) is not None
    }
    if len(shifts) < MIN_GROUPS + (basis == "all_others"):
        need = MIN_GROUPS + (basis == "all_others")
        return GlobalShift(
            None,
            _rounded(shifts),
            basis,
            None,
            False,
            window,
            load,
            f"Latency is compared as measured: {len(shifts)} span group(s) the release did not "
            f"touch had {policy.latency.min_samples} spans in both versions, {need} are needed "
            "to tell a shift of every route from a route's own.",
            service_load=service_load if window == "before_after" else None,
        )
    logs = list(shifts.values())
    shift = statistics.median(logs)
    p = _t_test(logs)
    ratio = math.exp(shift)
    beyond = p <= NOISE_ALPHA
    lead, gate = ": ", ""
    netted = mode == "on"
    if beyond and window == "before_after" and mode == "auto":
        netted, gate = load_gate(ratio, service_load)
        lead = ", "
    apply = beyond and window == "before_after" and netted
    if window == "overlap":
        reason = (
            "both versions served at the same time, so the routes are compared as measured "
            "(a shift of every route there is the release's own)."
        )
    elif not beyond:
        reason = (
            f"within noise (t test across {len(logs)} groups p = {p:.2g} > {NOISE_ALPHA:g}), "
            "so the routes are compared as measured."
        )
    elif window != "before_after":
        reason = "the routes are compared as measured."
    elif mode == "off":
        reason = "the routes are compared as measured (latency.before_after_correction is off)."
    elif not apply:
        reason = gate + "the routes are compared as measured."
    else:
        reason = gate + (
            f"the routes are compared net of that (each baseline × its untouched groups' "
            f"median shift; t test across {len(logs)} groups p = {p:.2g})."
        )
    factors: tuple[tuple[str, float], ...] = ()
    if apply:
        factors = tuple(
            (pr.span, _leave_one_out(shifts, pr.span)) for pr in pairs if pr.span in shifts
        ) + tuple(
            (pr.span, ratio) for pr in pairs if pr.span not in shifts and pr.kind not in _DEPENDENCY
        )
    return GlobalShift(
        ratio,
        _rounded(shifts),
        basis,
        p,
        apply,
        window,
        load,
        reason,
        factors,
        service_load if window == "before_after" else None,
        lead,
    )


def _mode(setting: object) -> str:
    """``auto``, ``on`` or ``off`` (a boolean set in code means on or off)."""
    if isinstance(setting, bool):
        return "on" if setting else "off"
    return str(setting)


def _rounded(shifts: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple((span, math.exp(s)) for span, s in shifts.items())


def _leave_one_out(shifts: dict[str, float], span: str) -> float:
    """The median shift of the other untouched groups: a group is not netted by itself."""
    return math.exp(statistics.median(s for name, s in shifts.items() if name != span))


def _shift(pair: Pair, policy: DetectionPolicy) -> float | None:
    """log(median new / median old), for a group with enough spans in both versions."""
    if pair.new is None or pair.base is None:
        return None
    minimum = policy.latency.min_samples
    if pair.new.durations_ms.size < minimum or pair.base.durations_ms.size < minimum:
        return None
    return float(np.log(np.median(durations(pair.new))) - np.log(np.median(durations(pair.base))))


def _t_test(logs: list[float]) -> float:
    """Two-sided p of the one-sample t test of ``logs`` against 0 (k − 1 df)."""
    k = len(logs)
    mean = sum(logs) / k
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (k - 1))
    if sd == 0.0:
        return 0.0 if mean != 0.0 else 1.0
    t = abs(mean) / (sd / math.sqrt(k))
    return min(1.0, 2.0 * stats.student_t_sf(t, k - 1))


def _touched(changes: Sequence[Change], candidate: ReleaseData, baseline: ReleaseData) -> set[str]:
    """Groups where the changed code ran, the groups above them up to the route, and every
    group those call."""
    hit: set[str] = set()
    for change in changes:
        for target in reach.change_targets(change):
            for data in (candidate, baseline):
                hit.update(group.name for group, _ in reach.group_hits(target, data))
    if not hit:
        return set()
    parents: dict[str, set[str]] = {}
    for data in (candidate, baseline):
        for group in data.groups:
            parents.setdefault(group.name, set()).update(
                name for name, _ in group.callers if name not in _TOP
            )
    children: dict[str, set[str]] = {}
    for child, above in parents.items():
        for parent in above:
            children.setdefault(parent, set()).add(child)
    # The changed code's whole request: the routes above it, and everything they call (the
    # queries a changed function issues run beside its span, under the same route).
    return _closure(_closure(hit, parents), children)


def _closure(start: Collection[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


#: How far the old version's own latency may have moved at the deploy for its spans from before
#: the deploy to stand in for it after (:func:`steadiness`): the 90% confidence interval of its
#: median shift must lie within ± this, in log terms (about ±5%).
STEADY_WITHIN = math.log(1.05)
#: Two-sided level at which one group that moved alone (its own median beyond ``STEADY_WITHIN``
#: and significant at this level over the groups, Bonferroni) keeps the old version unsteady.
STEADY_GROUP_ALPHA = 0.05
_Z90 = 1.6448536269514722


@dataclass(frozen=True, slots=True)
class Steadiness:
    """Whether the old version ran after the deploy as it did before it.

    Attributes:
        ratio: exp(pooled log-median shift after/before); None without a group to compare.
        low: Its 90% confidence interval's lower end.
        high: Its upper end.
        groups: Span groups compared (``latency.min_samples`` spans on both sides).
        moved: Groups that moved alone, with their own ratio.
        spans: Spans compared, (after, before).
    """

    ratio: float | None
    low: float
    high: float
    groups: int
    moved: tuple[tuple[str, float], ...] = ()
    spans: tuple[int, int] = (0, 0)

    @property
    def steady(self) -> bool:
        """The interval lies within ± ``STEADY_WITHIN`` and no group moved alone."""
        bound = math.exp(STEADY_WITHIN)
        return (
            self.ratio is not None
            and not self.moved
            and self.low >= 1.0 / bound
            and self.high <= bound
        )

    @property
    def sentence(self) -> str:
        """What the old version's spans after the deploy said, in plain words."""
        if self.ratio is None:
            return "no span group of the old version had enough spans on both sides to compare"
        change = self.ratio - 1.0
        how = "slower" if change >= 0 else "faster"
        moved = ""
        if self.moved:
            names = ", ".join(f"{span} {ratio - 1:+.0%}" for span, ratio in self.moved[:3])
            moved = f"; on {'its' if len(self.moved) == 1 else 'their'} own: {names}"
        return (
            f"the old version was {abs(change):.0%} {how} there than before the deploy "
            f"(90% CI {self.low - 1:+.0%} to {self.high - 1:+.0%}, {self.groups} span "
            f"group{'s' if self.groups != 1 else ''}, {self.spans[0]:,} vs {self.spans[1]:,} "
            f"spans; steady means within ±{math.exp(STEADY_WITHIN) - 1:.0%}{moved})"
        )


def steadiness(
    after: ReleaseData, before: ReleaseData, min_samples: int, *, until: datetime | None = None
) -> Steadiness:
    """Did the old version run after the deploy (``after``: its spans while both versions
    served) as it did before the deploy (``before``: its spans that started before ``until``,
    when the backend kept each span's start; else all of them)?

    If it did, whatever else happened at the deploy moment (load, a neighbour) left the service's
    latency where it was, and the old version's spans from before the deploy are a fair baseline
    for the new one: many more spans than the overlap holds (detection-methods.md §8: the
    concurrent window guards against time; when the time moved nothing, the past is the larger
    sample). Each span group with ``min_samples`` spans on both sides gives its log-median shift,
    whose sampling variance is (π/2)·σ²/n per side (σ from the logs' MAD, which a heavy tail
    does not inflate); the groups are pooled with DerSimonian-Laird random effects, so groups
    that react differently widen the interval rather than cancel out. Pure: no I/O.
    """
    base = {(g.name, g.kind): g for g in before.groups}
    names: list[str] = []
    shifts: list[float] = []
    variances: list[float] = []
    spans = [0, 0]
    for group in after.groups:
        old = base.get((group.name, group.kind))
        if old is None:
            continue
        then = np.log(durations(old))
        if until is not None and old.starts_ns.size == then.size:
            then = then[old.starts_ns < to_ns(until)]
        if group.durations_ms.size < min_samples or then.size < min_samples:
            continue
        now = np.log(durations(group))
        names.append(group.name)
        shifts.append(float(np.median(now) - np.median(then)))
        variances.append(
            math.pi / 2 * (_sigma(now) ** 2 / now.size + _sigma(then) ** 2 / then.size)
        )
        spans[0] += now.size
        spans[1] += then.size
    if not shifts:
        return Steadiness(None, math.nan, math.nan, 0)
    d, v = np.asarray(shifts), np.asarray(variances)
    w = 1.0 / v
    fixed = float(np.sum(w * d) / np.sum(w))
    q = float(np.sum(w * (d - fixed) ** 2))
    spread = max(0.0, (q - (d.size - 1)) / float(np.sum(w) - np.sum(w**2) / np.sum(w)))
    wr = 1.0 / (v + spread)
    pooled = float(np.sum(wr * d) / np.sum(wr))
    se = math.sqrt(1.0 / float(np.sum(wr)))
    z = stats.normal_isf(STEADY_GROUP_ALPHA / (2 * d.size))
    moved = tuple(
        (name, math.exp(s))
        for name, s, var in zip(names, shifts, variances, strict=True)
        if abs(s) > STEADY_WITHIN and abs(s) > z * math.sqrt(var)
    )
    return Steadiness(
        math.exp(pooled),
        math.exp(pooled - _Z90 * se),
        math.exp(pooled + _Z90 * se),
        d.size,
        moved,
        (spans[0], spans[1]),
    )


def _sigma(logs: np.ndarray) -> float:
    """σ of ``logs`` from their median absolute deviation (floored: ms-rounded durations)."""
    mad = float(np.median(np.abs(logs - np.median(logs))))
    return max(1.4826 * mad, 1e-3)
