"""The tests of one look at a release: every per-group test, Benjamini-Hochberg per family.

The regression tests of all groups (latency, tail, error rate) form one family, the improvement
tests another, new exception types a third (§9 of shared/reference/detection-methods.md); an
error-rate test whose totals allow no significant split is left out (Tarone's screen). A
candidate is kept when its q-value is within the look's level *and* its effect clears the
floor. Also here: the host-spread guard's τ̂, the minimum detectable effects, and the per-group
rows of the report. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from feedbot.analysis import detectors, stats
from feedbot.analysis.detectors import Candidate, HostSpread, Pair, TauHistory
from feedbot.analysis.findings import (
    TOP_CALLERS,
    Effect,
    Finding,
    GroupComparison,
    GroupSummary,
    KnownException,
    Measure,
    percent,
)
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import SpanGroupStats

#: Log-sd assumed for the MDE when a group has too few spans to estimate its own (§7.7).
DEFAULT_SIGMA = 0.5


class LookTests:
    """The tests of one look: candidates, BH per family, and what was said about it.

    Args:
        policy: Every threshold and switch.
        q_level: The BH level of this look.
        hosts: The between-instance spread.
        history: Exception types the service raised before (any span group, earlier versions
            and days): a type absent from the baseline but in the history is not new.
    """

    def __init__(
        self,
        policy: DetectionPolicy,
        q_level: float,
        hosts: HostSpread,
        history: Collection[KnownException] = (),
    ) -> None:
        self.policy, self.q_level, self.hosts = policy, q_level, hosts
        self.history: dict[str, list[KnownException]] = {}
        for known in history:
            self.history.setdefault(known.type, []).append(known)
        self.findings: list[Finding] = []
        self.strong: dict[int, bool] = {}
        self.summary: list[str] = [host_sentence(hosts, policy)]
        self.tested: set[str] = set()
        self.regressed_spans: set[str] = set()
        self.sigmas: dict[str, float] = {}
        self.floors: dict[str, float] = {}
        self.lone_level = q_level
        self.screened = 0

    def test(self, pairs: list[Pair]) -> None:
        """Run every enabled per-group test and keep what passes BH and its floor."""
        family: list[Candidate] = []
        types: list[Candidate] = []
        for pair in pairs:
            if pair.new is not None and pair.base is not None:
                family += self._group_candidates(pair)
        if enabled(self.policy, "new_types"):
            for pair in pairs:
                if pair.new is not None:
                    types += detectors.new_type_candidates(pair, self.policy)
            types = self._new_to_service(types, pairs)
        rules = self.policy.looks
        if rules.screen_discrete and family:
            keep = stats.tarone_screen([c.p_min for c in family], self.q_level)
            self.screened = len(family) - int(keep.sum())
            family = [c for c, kept in zip(family, keep.tolist(), strict=True) if kept]
        alarms = family
        if rules.improvements_apart:
            alarms = [c for c in family if c.finding.counts_toward == "regressed"]
            better = [c for c in family if c.finding.counts_toward != "regressed"]
            self._keep(better)
        self.lone_level = self.q_level / max(1, len(alarms))
        self._keep(alarms)
        self._keep_types(types)
        self.summary.append(
            self._levels_sentence(
                len(alarms), len(family) - len(alarms), sum(c.finding.tested for c in types)
            )
        )
        self.findings += self._low_traffic(pairs)

    def _new_to_service(self, types: list[Candidate], pairs: list[Pair]) -> list[Candidate]:
        """Keep the types the service never raised: on no baseline group, in no earlier version.

        "New" means new to the service, not to one operation's window: a type the baseline
        raised on another operation, or the history on any, is an error-rate question (§7.4).
        The summary says which were set aside and where the service raised them.
        """
        in_base: dict[str, str] = {}
        for pair in pairs:
            for seen in pair.base.exceptions if pair.base is not None else ():
                in_base.setdefault(seen.type, pair.span)
        kept, elsewhere, earlier = [], [], []
        for cand in types:
            name, span = cand.finding.exception_type or "", cand.finding.span or ""
            if name in in_base:
                elsewhere.append(f"{name} on {span} (in the baseline on {in_base[name]})")
            elif name in self.history:
                k = self._record(name, span)
                earlier.append(f"{k.type} on {k.span} in {k.version}{_ago(k)}")
            else:
                kept.append(cand)
        if elsewhere:
            self.summary.append(
                f"{len(elsewhere)} exception type(s) absent from an operation's baseline spans "
                f"were raised on other operations of the baseline, so not new to the service: "
                f"{_first_three(elsewhere)}."
            )
        if earlier:
            self.summary.append(
                f"{len(earlier)} exception type(s) absent from the baseline's spans were raised "
                f"by earlier versions (history of {self.policy.new_types.history_versions} "
                f"versions / {self.policy.new_types.history_days} days), so not new: "
                f"{_first_three(earlier)}."
            )
        return kept

    def _record(self, name: str, span: str) -> KnownException:
        """The history's record of a type: the group's own if it has one, else the latest."""
        records = self.history[name]
        return next((k for k in records if k.span == span), records[0])

    def _group_candidates(self, pair: Pair) -> list[Candidate]:
        assert pair.new is not None and pair.base is not None
        out: list[Candidate] = []
        if enabled(self.policy, "errors"):
            out += detectors.error_candidates(pair, self.policy)
        n = min(pair.new.durations_ms.size, pair.base.durations_ms.size)
        if n < self.policy.latency.min_samples:
            return out
        self.tested.add(pair.span)
        both = np.concatenate([detectors.durations(pair.new), detectors.base_durations(pair)])
        self.sigmas[pair.span] = stats.robust_log_sigma(both)
        floor = detectors.latency_floor(pair, self.policy, self.hosts)
        self.floors[pair.span] = floor
        if enabled(self.policy, "latency"):
            out += detectors.latency_candidates(pair, self.policy, self.hosts, floor)
        if enabled(self.policy, "tail"):
            out += detectors.tail_candidates(pair, self.policy)
        return out

    def _keep(self, family: list[Candidate]) -> None:
        qs = stats.bh_qvalues([c.p for c in family]) if family else np.empty(0)
        for cand, q in zip(family, qs.tolist(), strict=True):
            if q <= self.q_level and cand.passes:
                self._add(cand, float(q))
                if cand.finding.kind == "latency_regression" and cand.finding.span:
                    self.regressed_spans.add(cand.finding.span)

    def _keep_types(self, types: list[Candidate]) -> None:
        """Types whose test passes their own BH family alarm; the others are low-key facts.

        A passing type is a tested regression (severity high) that follows the two-look rule;
        the others keep their p and q, count toward no verdict, and say how many occurrences
        would have been significant at this baseline size.
        """
        tested = [c for c in types if c.finding.tested]
        qs = dict(
            zip(
                (id(c) for c in tested),
                stats.bh_qvalues([c.p for c in tested]).tolist(),
                strict=True,
            )
        )
        for cand in types:
            q = qs.get(id(cand))
            if q is not None and q <= self.q_level:
                self._add(replace(cand, finding=replace(cand.finding, severity="high")), q)
                continue
            finding = cand.finding
            if q is not None:
                tried = detectors.describe_test(finding, cand.p, q)
                message = f"{tried}; {self._needed(finding, len(tested))}"
                finding = replace(finding, message=message, p_value=cand.p, q_value=q)
            self.findings.append(
                replace(finding, severity="info", counts_toward=None, tested=False)
            )

    def _needed(self, finding: Finding, tests: int) -> str:
        """How many occurrences a new type needed to pass at this baseline size (§7.5)."""
        share = detectors.share_new(finding)
        if share is None or share >= 1.0:
            return "not significant"
        k = stats.min_count_for_new_type(share, q=self.q_level, candidates=max(1, tests))
        return (
            f"not significant at q={self.q_level:g}: with s={share:.2f} it would take "
            f"{k} occurrences"
        )

    def _add(self, cand: Candidate, q: float) -> None:
        finding = replace(
            cand.finding,
            p_value=cand.p,
            q_value=q,
            message=detectors.describe_test(cand.finding, cand.p, q),
        )
        self.findings.append(finding)
        self.strong[id(finding)] = cand.strong

    def _low_traffic(self, pairs: list[Pair]) -> list[Finding]:
        out = []
        for pair in pairs:
            if pair.new is None or pair.base is None or pair.span in self.tested:
                continue
            out.append(self._low_traffic_finding(pair))
        return out

    def _low_traffic_finding(self, pair: Pair) -> Finding:
        assert pair.new is not None and pair.base is not None
        n_new, n_base = pair.new.durations_ms.size, pair.base.durations_ms.size
        floor = detectors.latency_floor(pair, self.policy, self.hosts)
        mde = self.mde(pair.span, n_new, n_base, floor)
        sigma = self.sigmas.get(pair.span, DEFAULT_SIGMA)
        needed = stats.mwu_sample_size(
            floor, sigma=sigma, alpha=self.lone_level, power=self.policy.power
        )
        mde_text = "no shift" if math.isinf(mde) else f"only a shift of {percent(mde)} or more"
        return Finding(
            kind="low_traffic",
            severity="info",
            message=(
                f"{pair.span}: n = {pair.base.count} → {pair.new.count} spans"
                f"{timed_note(pair.base, pair.new)}, below the "
                f"{self.policy.latency.min_samples} a latency verdict needs; at this traffic "
                f"{mde_text} could be shown (level {self.lone_level:.1g}, power "
                f"{self.policy.power:.0%}); {percent(floor)} needs about {needed} spans per version"
            ),
            span=pair.span,
            baseline=Measure(n_base, median_ms(pair.base), "p50_ms"),
            candidate=Measure(n_new, median_ms(pair.new), "p50_ms"),
            change=Effect(None, floor=floor, mde=None if math.isinf(mde) else mde),
            method="minimum detectable effect, Noether's formula for Mann-Whitney",
        )

    def mde(self, span: str, n_new: int, n_base: int, floor: float) -> float:
        """Smallest latency ratio detectable at the lone-test level, never below the floor."""
        sigma = self.sigmas.get(span, DEFAULT_SIGMA)
        return stats.mwu_min_detectable_ratio(
            n_new, n_base, sigma=sigma, alpha=self.lone_level, power=self.policy.power, floor=floor
        )

    def comparison(self, pair: Pair) -> GroupComparison:
        """The group's row in the report."""
        new = group_summary(pair.new) if pair.new is not None else None
        base = group_summary(pair.base) if pair.base is not None else None
        if base is None or new is None:
            return GroupComparison(
                pair.span, pair.kind, base, new, "new" if base is None else "gone"
            )
        if pair.span not in self.tested:
            return GroupComparison(pair.span, pair.kind, base, new, "low_traffic")
        mde = self.mde(pair.span, new.count, base.count, self.floors[pair.span])
        return GroupComparison(
            pair.span, pair.kind, base, new, "tested", None if math.isinf(mde) else mde
        )

    def _levels_sentence(self, alarms: int, better: int, types: int) -> str:
        fdr = self.policy.looks.fdr_q
        split = "at its one look" if self.q_level >= fdr else "split over the looks"
        tests = (
            f"{alarms} regression tests (latency, tail, error rate) in one Benjamini-Hochberg "
            f"family at q={self.q_level:g} (FDR {fdr:g} {split}), {better} improvement tests "
            "in their own"
            if self.policy.looks.improvements_apart
            else f"{alarms} latency, tail and error-rate tests in one Benjamini-Hochberg family "
            f"at q={self.q_level:g} (FDR {fdr:g} {split})"
        )
        screened = (
            f"; {self.screened} error-rate tests left out because no split of their errors "
            "could be significant (Tarone's screen)"
            if self.screened
            else ""
        )
        return (
            f"{tests}{screened}; {types} new exception types tested in their own family at the "
            f"same q; a lone finding needed p ≤ {self.lone_level:.2g}"
        )


def _first_three(items: list[str]) -> str:
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return "; ".join(items[:3]) + more


def _ago(known: KnownException) -> str:
    return f" (last seen {known.last_seen:%Y-%m-%d %H:%M} UTC)" if known.last_seen else ""


def enabled(policy: DetectionPolicy, detector: str) -> bool:
    """Whether a detector is switched on: its policy section's ``enabled`` (default on)."""
    return bool(getattr(policy, detector).enabled)


def timed_note(base: SpanGroupStats, new: SpanGroupStats) -> str:
    """Why the spans a latency test used differ from the spans counted, if they do.

    The report's group table shows every span counted; a message citing the timed ones says
    where the rest went, so the two agree.
    """
    sizes = (base.durations_ms.size, new.durations_ms.size)
    if sizes == (base.count, new.count):
        return ""
    why = [
        f"{n} {which} {what}"
        for which, group in (("baseline", base), ("new", new))
        for n, what in (
            (group.warmup_excluded, "in instance warm-up"),
            (group.untimed, "without an end time"),
        )
        if n
    ]
    return f" (timed: {sizes[0]} → {sizes[1]}" + (f"; {', '.join(why)}" if why else "") + ")"


def median_ms(group: SpanGroupStats) -> float | None:
    return float(np.median(group.durations_ms)) if group.durations_ms.size else None


def group_summary(group: SpanGroupStats) -> GroupSummary:
    """One version's numbers of a group: spans, errors, p50/p95/p99, instances, top callers."""
    callers = top_callers(group.callers)
    instances = detectors.instance_count(group)
    if group.durations_ms.size == 0:
        return GroupSummary(group.count, group.errors, None, None, None, instances, callers)
    p50, p95, p99 = (float(v) for v in np.quantile(group.durations_ms, (0.5, 0.95, 0.99)))
    return GroupSummary(group.count, group.errors, p50, p95, p99, instances, callers)


def top_callers(callers: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """The :data:`~feedbot.analysis.findings.TOP_CALLERS` busiest callers, most spans first."""
    ranked = sorted((c for c in callers if c[1] > 0), key=lambda c: (-c[1], c[0]))
    return tuple(ranked[:TOP_CALLERS])


def host_spread(
    pairs: list[Pair], policy: DetectionPolicy, history: TauHistory | None = None
) -> HostSpread:
    """τ̂ from every (group, version) cell with enough spans and ≥ 2 instances (§9).

    With ``host_guard.across_groups`` each instance's offset is estimated over all its groups
    (:func:`~feedbot.analysis.stats.pooled_tau_across`); otherwise τ̂ is estimated per cell and
    pooled (:func:`~feedbot.analysis.stats.pooled_tau`). With ``history`` (the service's
    earlier releases' estimates, from the store) and ``host_guard.history_checks``, τ̂ pools
    them with this check's unless this check's spread is significantly larger
    (:func:`~feedbot.analysis.stats.pool_with_history`).
    """
    if not policy.host_guard.enabled:
        return HostSpread(None, False)
    versions: tuple[list[stats.InstanceCell], list[stats.InstanceCell]] = ([], [])
    for pair in pairs:
        for cells, group in zip(versions, (pair.new, pair.base), strict=True):
            if group is None or group.durations_ms.size < policy.latency.min_samples:
                continue
            if group.instances.size != group.durations_ms.size:
                continue
            if detectors.instance_count(group) >= policy.host_guard.min_instances:
                cells.append(stats.instance_cell(detectors.durations(group), _labels(group)))
    # Spans that name their instance but ran on fewer than 2 a version: the spread is assumed.
    # Spans that name none (stores that drop the resource, data behind many pods) keep the
    # plain floor and say so: how many hosts served them is not known.
    named = any(
        group is not None and detectors.instance_count(group) > 0
        for pair in pairs
        for group in (pair.new, pair.base)
    )
    if policy.host_guard.across_groups:
        parts = tuple(stats.tau_by_version(versions))
        estimate = stats.combine_tau([p for p in parts if p is not None])
        if estimate is None:
            return _assumed(policy, across=True) if named else HostSpread(None, True, across=True)
        guard = policy.host_guard
        earlier, changed_p = 0, None
        if history is not None and history.estimates and guard.history_checks > 0:
            pooled = stats.pool_with_history(
                estimate, history.estimates[: guard.history_checks], alpha=guard.history_alpha
            )
            estimate, earlier, changed_p = pooled.estimate, pooled.earlier, pooled.changed_p
        level = guard.tau_upper if estimate.dof <= guard.tau_upper_max_dof else 0.0
        tau = estimate.upper(level)
        measured = estimate.tau if level > 0.0 else None
        # The t reference (off by default) also needs τ̂'s degrees of freedom and mean square.
        t_ref = guard.satterthwaite
        return HostSpread(
            tau,
            True,
            across=True,
            dof=estimate.dof if t_ref else 0,
            mean_square=estimate.mean_square if t_ref else None,
            measured=measured,
            dof_tau=estimate.dof,
            parts=parts,
            earlier=earlier,
            changed_p=changed_p,
            history=history,
        )
    pooled_cells = stats.pooled_tau([*versions[0], *versions[1]])
    if pooled_cells is None:
        return _assumed(policy) if named else HostSpread(None, True)
    return HostSpread(pooled_cells, True)


def _assumed(policy: DetectionPolicy, *, across: bool = False) -> HostSpread:
    """τ̂ could not be estimated: the policy's assumed spread (none when it is 0)."""
    spread = policy.host_guard.assumed_spread
    if spread <= 0.0:
        return HostSpread(None, True, across=across)
    return HostSpread(spread, True, across=across, assumed=True)


def _labels(group: SpanGroupStats) -> npt.NDArray[np.str_]:
    """Each duration's instance name (its index when the group has no names)."""
    if len(group.instance_names) > int(group.instances.max(initial=-1)):
        return np.asarray(group.instance_names, dtype=np.str_)[group.instances]
    return group.instances.astype(np.str_)


def host_sentence(hosts: HostSpread, policy: DetectionPolicy) -> str:
    if not hosts.enabled:
        return "Host-spread guard off: latency p-values treat spans as independent."
    if hosts.tau is None:
        return (
            "Host spread unknown (fewer than 2 instances per version, or spans without "
            "service.instance.id/host.name): host and version effects cannot be separated, so "
            f"the latency floor stays at {percent(policy.latency.ratio_floor)}."
        )
    if hosts.assumed:
        one_each = stats.host_noise_floor(
            hosts.tau, 1, 1, floor=policy.latency.ratio_floor, z=policy.host_guard.z
        )
        return (
            f"Host spread assumed, not measured: τ = {hosts.tau:.3f} on log-latency "
            "(host_guard.assumed_spread), because fewer than 2 instances ran a version, so host "
            "and version effects cannot be separated. With one instance a version the latency "
            "floor is "
            f"{percent(one_each)}"
            " and p is made cluster-aware with that spread. To measure it instead, run at least "
            "2 instances per version, each with its own service.instance.id."
        )
    how = (
        "each instance's offset estimated over all its span groups"
        if hosts.across
        else "pooled over groups and versions"
    )
    source = _tau_source(hosts, policy)
    if hosts.measured is not None:
        return (
            f"{source}Between-instance spread τ̂ = {hosts.measured:.3f} on log-latency (random "
            f"effects, {how}), from {hosts.dof_tau} degrees of freedom, too few to take it as "
            f"known: τ = {hosts.tau:.3f}, its {policy.host_guard.tau_upper:.0%} upper confidence "
            "bound (host_guard.tau_upper), sizes the latency floor "
            f"max({percent(policy.latency.ratio_floor)}, "
            f"exp({policy.host_guard.z:g}·τ·√(1/k_new + 1/k_base))) and the cluster-aware p."
        )
    if hosts.earlier and hosts.history is not None:
        return (
            f"Between-instance spread from this check and the {hosts.earlier} earlier "
            f"release{'s' if hosts.earlier != 1 else ''} of {hosts.history.service}: τ = "
            f"{hosts.tau:.3f} on log-latency from {hosts.dof_tau} degrees of freedom (random "
            f"effects, {how}; host_guard.history_checks); the latency floor is "
            f"max({percent(policy.latency.ratio_floor)}, "
            f"exp({policy.host_guard.z:g}·τ·√(1/k_new + 1/k_base))) and p is made cluster-aware."
        )
    return (
        f"{source}Between-instance spread τ̂ = {hosts.tau:.3f} on log-latency (random effects, "
        f"{how}); the latency floor is "
        f"max({percent(policy.latency.ratio_floor)}, "
        f"exp({policy.host_guard.z:g}·τ̂·√(1/k_new + 1/k_base))) and p is made cluster-aware."
    )


def _tau_source(hosts: HostSpread, policy: DetectionPolicy) -> str:
    """Why τ̂ is this check's alone when the service has a history (empty without a store)."""
    history = hosts.history
    if history is None or policy.host_guard.history_checks <= 0:
        return ""
    if hosts.earlier:
        plural = "s" if hosts.earlier != 1 else ""
        earlier = f"the {hosts.earlier} earlier release{plural} of {history.service}"
        return f"From this check and {earlier}: "
    offered = min(len(history.estimates), policy.host_guard.history_checks)
    if hosts.changed_p is not None:
        return (
            f"This check's instances differ more than those of the {offered} earlier "
            f"release{'s' if offered != 1 else ''} of {history.service} did (F test p = "
            f"{hosts.changed_p:.2g}, below {policy.host_guard.history_alpha:g}): the "
            "infrastructure may have changed, so the spread is measured from this check alone. "
        )
    days = policy.host_guard.history_days
    return (
        f"No earlier release of {history.service} in the last {days} days measured the spread, "
        "so it is from this check alone. "
    )
