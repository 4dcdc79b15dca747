"""The default detection policy: every threshold the analysis uses, with where it comes from.

Section numbers (§) refer to shared/reference/detection-methods.md; the N+1 thresholds come from
shared/reference/anchors.md (Sentry's N+1 DB detector). ``DetectionPolicy()`` is the proposed
default of §9; ``services.<name>.detectors`` in the config overrides it per service
(:func:`with_overrides`). Nothing here does I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, Literal

from feedbot.durations import parse_duration

#: ``latency.before_after_correction``'s values.
Correction = Literal["auto", "on", "off"]
#: Settings that take one of a few words, and the booleans they also take (word for each).
_CHOICES: dict[str, tuple[tuple[str, ...], dict[bool, str]]] = {
    "before_after_correction": (("auto", "on", "off"), {True: "on", False: "off"}),
}


@dataclass(frozen=True, slots=True)
class LatencyPolicy:
    """Latency shift: one-sided Mann-Whitney plus the Hodges-Lehmann ratio (§9 table, §7.1-7.2).

    Attributes:
        min_samples: Spans per version below which there is no verdict (30).
        ratio_floor: HL ratio r̂ a regression must reach (1.10), before the host guard raises it.
        min_delta_median_ms: Absolute median increase a regression must also reach (1 ms).
        exact_max_samples: Smaller-sample size up to which the exact permutation test runs (10).
        ci_level: Two-sided level of the reported r̂ CI (95%).
        warmup: How long after its first span a new instance may be warming up (5 min, §9
            "Exclude the first 5 min of each instance"); its spans in that time are left out
            of the durations only where they were slower than its later ones (below); they still
            count as spans and errors. 0 turns the warm-up check off.
        warmup_alpha: Level of the one-sided stratified rank test, per instance, of its first
            minutes against its later spans of the same groups (0.01, split over instances).
        warmup_min_spans: Early and later spans an instance needs for that test (20 each).
        before_after_correction: In a before/after look (the old version's spans from before
            the deploy), test each group against its baseline scaled by the median shift of the
            groups the release did not touch, when that shift is beyond noise (§8
            difference-in-differences; :mod:`feedbot.analysis.drift`). Never in the overlap
            window, where it would erase a release-wide regression. ``"auto"`` (the default)
            nets only when the whole service's requests per minute (every version together)
            moved the same way by :data:`feedbot.analysis.drift.LOAD_STEP` or more between the
            baseline window before the deploy and the look after it: a busier time slows every
            route and brings more requests, while a release that slows every route (a
            dependency bump, a logging or GC change) comes with the same requests, or fewer when
            clients wait for answers. ``"on"`` nets whatever the load did, ``"off"`` never (the
            default before); ``true``/``false`` in the config mean on/off. Without request
            counts (a store that cannot count them) "auto" does not net. The shift is reported
            in both windows either way.
    """

    enabled: bool = True

    min_samples: int = 30
    ratio_floor: float = 1.10
    min_delta_median_ms: float = 1.0
    exact_max_samples: int = 10
    ci_level: float = 0.95
    warmup: timedelta = timedelta(minutes=5)
    warmup_alpha: float = 0.01
    warmup_min_spans: int = 20
    before_after_correction: Correction = "auto"


@dataclass(frozen=True, slots=True)
class TailPolicy:
    """Tail latency: the exceedance test on the pooled p95/p99 (§9 table, §7.3).

    Attributes:
        p95_min_samples: Spans per version before p95 gets a verdict (200).
        p99_min_samples: Spans per version before p99 gets a verdict (1,000).
        ratio_floor: p95 or p99 ratio a tail regression must reach (1.20).
        ci_level: Level of the displayed quantile CIs (95%; p99 needs 368 spans for one).
    """

    enabled: bool = True

    p95_min_samples: int = 200
    p99_min_samples: int = 1_000
    ratio_floor: float = 1.20
    ci_level: float = 0.95


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """Error rate: exact one-sided conditional binomial / Fisher, not mid-p (§9 table, §7.4).

    Attributes:
        min_errors_new: Errors in the new version before any finding (3, §8).
        rate_ratio_floor: Error-rate ratio a regression must reach (1.5).
        min_rate_increase: Absolute rate increase it must also reach (0.001 = 0.1 pp).
    """

    enabled: bool = True

    min_errors_new: int = 3
    rate_ratio_floor: float = 1.5
    min_rate_increase: float = 0.001


@dataclass(frozen=True, slots=True)
class NewTypePolicy:
    """New exception types: p = s^k in their own BH family (§9 table, §7.5).

    The test holds at any ratio of the two versions' spans (s = n_new / (n_new + n_base)); a
    shorter baseline only raises the occurrences a type needs to pass.

    Attributes:
        history_versions: Previous versions whose types count as "seen" (3).
        history_days: Days of exception history that count as "seen" (7).
    """

    enabled: bool = True

    history_versions: int = 3
    history_days: int = 7


@dataclass(frozen=True, slots=True)
class ReachPolicy:
    """Changed code reached: rule of three and the stopped-being-reached test (§9 table, §7.5).

    Attributes:
        min_requests: Requests to the owning service before "not reached" is said (300).
        bound_level: Level of the upper bound on the reach rate (95%, so ≈ 3/N).
        stopped_alpha: p below which the code "stopped being reached" (0.01).
    """

    enabled: bool = True

    min_requests: int = 300
    bound_level: float = 0.95
    stopped_alpha: float = 0.01


@dataclass(frozen=True, slots=True)
class LookPolicy:
    """Multiplicity and confirmation over the scheduled looks (§9 "Multiplicity and looks").

    A finding passes at a look when its BH q-value is within fdr_q/looks and its effect clears
    the floor; it is then *watching*. It makes the verdict (confirmed) when it held at the
    previous look too, or at once when its q-value is within the look's **confirmation
    boundary**: ``confirm_alpha`` spent over the looks by ``confirm_spending`` (Lan-DeMets
    alpha-spending, §7.6), each look testing at its increment of the spending function, so
    P(any confirmation at once over the schedule | no change) ≤ confirm_alpha by the union bound
    (BH at level c rejects anything under no change with probability ≤ c for independent or
    PRDS p-values, §7.6; the cluster-aware latency p is what keeps host offsets from breaking
    that).
    Pocock's function spends 0.0054 of 0.015 at the first of four looks, 0.0039, 0.0031 and
    0.0026 at the next: a strong first-look result is confirmed at once, yet the whole schedule
    spends at most 1.5% on it; the two-look rule adds about 0.5% (§11), so confirmed false alarms
    stay within the 2% target. O'Brien-Fleming's function would spend 10⁻⁶ at the first look
    (no confirmation at once in practice) and is there to be measured against it.

    Why not the §9 "overwhelming" rule (p 100x, then 20x, below the look's level *and* the 95%
    CI of the effect above the floor): it was a second, stricter test with no error budget of
    its own. For +20% at 330 new against 720 baseline spans (σ 0.55, 3 pods) the CI's lower end
    cleared the 1.10 floor in 69% of draws, and of the 85% found, 18 points more had q above
    level/20, so 48-63% were confirmed at the first look (``python -m
    benchmarks.detection_many --explain``). The effect floor still applies to the point
    estimate, as for every finding, and a finding must pass the look's level before it can be
    confirmed. The other suspects cost the first look little in that setting: the look split,
    BH over every group's ~33 tests and the host term in p together leave 84-85% found.

    Attributes:
        fdr_q: FDR level over all looks of a release (0.05).
        looks: Scheduled looks, +15 min, +1 h, +4 h, +24 h (4); Bonferroni splits fdr_q.
        confirm_looks: Consecutive looks a finding must hold to make the verdict (2).
        confirm_alpha: Budget of confirmations at once over the whole schedule (0.015); each
            look's boundary is its increment of the spending function. 0 turns them off.
        confirm_spending: "pocock" (default) or "obrien_fleming".
        overwhelming_factor: The §9 rule, off by default (0): also confirm at once when q is
            this many times below the look's level and the effect's CI clears the floor (it
            was 100, then 20, before the spending boundary replaced it).
        improvements_apart: Test improvements (latency faster, fewer errors) in a
            Benjamini-Hochberg family of their own at the same q, so the family that can
            raise an alarm holds only regression tests (off). Measured on issue 14's 13-route
            service (``benchmarks.detection_many``, 3 pods, 60 paired deploys): +20% confirmed
            at the first look 85% against 82%, but 4 no-change deploys of 60 alarmed at a 5%
            host spread against 3: it doubles a lone regression's level, which is giving back
            quiet, so it stays off until the 5%-spread alarms have another cure.
        screen_discrete: Leave out of a family the discrete (error-rate) tests whose smallest
            attainable p, given their totals, could not pass (Tarone's screen, on): with 0.2%
            errors most groups have too few errors for any split to be significant.
    """

    fdr_q: float = 0.05
    looks: int = 4
    confirm_looks: int = 2
    confirm_alpha: float = 0.015
    confirm_spending: Literal["pocock", "obrien_fleming"] = "pocock"
    overwhelming_factor: float = 0.0
    improvements_apart: bool = False
    screen_discrete: bool = True

    @property
    def q_per_look(self) -> float:
        """BH level at each look: fdr_q / looks (0.0125)."""
        return self.fdr_q / self.looks

    def lone_test_level(self, tests: int) -> float:
        """Per-test level a single finding must reach among ``tests`` (q/m, ≈2·10⁻⁴ at 60)."""
        return self.q_per_look / max(1, tests)


@dataclass(frozen=True, slots=True)
class HostGuardPolicy:
    """Noise-floor guard from the between-instance spread τ̂ (§9 "Noise-floor guard", §7.7).

    Attributes:
        enabled: Apply the raised floor and the cluster-aware latency p.
        z: Host-noise sds the shift must clear: floor = max(1.10, exp(z·τ̂·√(1/k_n+1/k_b))) (3).
        min_instances: Instances needed in a version to estimate τ̂ (2).
        across_groups: Estimate each instance's offset from all span groups at once, then τ̂
            from their spread (on); off: τ̂ per group, then pooled (before issue 14), whose
            sampling noise with 3 instances a version raised floors for nothing.
        satterthwaite: Refer the cluster-aware latency z to a t distribution with
            Welch-Satterthwaite degrees of freedom for τ̂'s own uncertainty (off; needs
            ``across_groups``). With 3 pods a version τ̂ has 4 degrees of freedom, and it holds
            a single test's level at a 5% spread where the normal does not (tests), but on
            issue 14's service, with both look choices on, it cost power (+20% confirmed at
            the first look 77% against 85% without it, 82% on main; 60 paired deploys, 3 pods)
            without fewer no-change alarms at a 5% spread (4 of 60, main 3).
        assumed_spread: τ used when τ̂ cannot be estimated (fewer than ``min_instances`` in a
            version, or spans without service.instance.id/host.name), so that the floor and the
            cluster-aware p widen as they would with that spread (0.10, issue 14: two identical
            single processes on a shared 2-core runner differed by 20-60% at p50; with one
            instance a version 0.10 puts the floor at exp(3·0.10·√2) = 1.53, above a 30% host
            offset and below the +85% of the one-shot gate's regression). 0: assume none.
        tau_upper: Where τ̂ has at most ``tau_upper_max_dof`` degrees of freedom, the floor and
            the cluster-aware p use this one-sided upper confidence bound on τ instead of τ̂
            (0.90; 0: τ̂). With 2 instances a version τ̂ has 2 degrees of freedom and is 0 in
            about a third of deploys whatever τ is, which let the CI A/A test (2 pods a
            version, a loaded 2-core runner) confirm +50-80% shifts that were two slow pods:
            replaying 42 A/A runs recorded under 2 CPU burners, the gate failed 4 with τ̂,
            2 with the 75% bound, 1 with the 90% bound (a load change at the deploy moment,
            which no host term can see). In a simulated single test (10% spread, 2 pods a
            version, level 1%) τ̂ rejects 5.5%, the 90% bound 0.75% (tests).
        tau_upper_max_dof: The most degrees of freedom of τ̂ at which ``tau_upper`` applies (2:
            only 2 instances a version). At 3 pods (4 degrees of freedom) the bound would also
            hold the level at a 5% spread (0.5% at 1% in the simulated test, τ̂ 2.7%), but its
            cost in power on issue 14's service (``benchmarks.detection_many``, "tau bound"
            choices) was not measured yet, so 3 pods and more keep τ̂ by default.
        history_checks: Earlier releases of the service (same environment; each its latest
            check) whose τ̂ is pooled with this check's (10; 0: this check's alone). τ is a
            property of the infrastructure, stable across deploys though the pods change, and
            3 pods a version give τ̂ only 4 degrees of freedom; pooled, they add up (each
            version's instances counted once), and ``tau_upper`` applies only while the total
            is still at most ``tau_upper_max_dof``. Needs a store (``serve``, or ``report``
            with a database). On issue 14's service (``benchmarks.detection_many``, seeds 7
            and 8, 200 paired deploys a cell, 10 earlier no-change releases): no-change
            alarms 2/1/2/4 of 200 at 3 pods 2%/5% and 4 pods 2%/5% (this check's τ̂ alone:
            2/4/3/5); +20% confirmed at the first look 81% at 3 pods 2% (77.5%), but 38%
            at 3 pods 5% (46%) and 55% at 4 pods 5% (61%): an underestimated τ̂ gave both
            the extra power and the false alarms.
        history_days: Only releases whose check ran within this many days count (30).
        history_alpha: The history is set aside, and this check's τ̂ used alone, when this
            check's spread is larger than the history's at this one-sided F-test level (0.01):
            the infrastructure changed (other machines, a noisy neighbour). On the benchmark's
            no-change deploys (same infrastructure) it set the history aside at some look of
            0-4 deploys in 100 (``benchmarks.detection_many --alarms``), 1% a look as expected.
    """

    enabled: bool = True
    z: float = 3.0
    min_instances: int = 2
    across_groups: bool = True
    satterthwaite: bool = False
    assumed_spread: float = 0.10
    tau_upper: float = 0.90
    tau_upper_max_dof: int = 2
    history_checks: int = 10
    history_days: int = 30
    history_alpha: float = 0.01


@dataclass(frozen=True, slots=True)
class NPlusOnePolicy:
    """N+1 detection: repeated same-shape child spans (anchors.md, Sentry's N+1 DB detector).

    Attributes:
        min_repeats: Repeated sibling spans with one query shape (5).
        min_total_ms: Their total duration (50 ms).
    """

    enabled: bool = True

    min_repeats: int = 5
    min_total_ms: float = 50.0


@dataclass(frozen=True, slots=True)
class DetectionPolicy:
    """Every threshold of feedbot's analysis; the defaults are the brief's proposal (§9).

    Attributes:
        latency: Latency-shift check.
        tail: p95/p99 check.
        errors: Error-rate check.
        new_types: New-exception-type check.
        reach: Changed-code-reached check.
        looks: Multiplicity and confirmation.
        host_guard: Host-spread guard.
        n_plus_one: N+1 detection.
        power: Power at which "inconclusive" answers state the MDE (80%, §7.7).
    """

    latency: LatencyPolicy = field(default_factory=LatencyPolicy)
    tail: TailPolicy = field(default_factory=TailPolicy)
    errors: ErrorPolicy = field(default_factory=ErrorPolicy)
    new_types: NewTypePolicy = field(default_factory=NewTypePolicy)
    reach: ReachPolicy = field(default_factory=ReachPolicy)
    looks: LookPolicy = field(default_factory=LookPolicy)
    host_guard: HostGuardPolicy = field(default_factory=HostGuardPolicy)
    n_plus_one: NPlusOnePolicy = field(default_factory=NPlusOnePolicy)
    power: float = 0.80


#: Config names of the detectors (``services.<name>.detectors.<detector>``) → policy fields.
DETECTORS = {
    "latency": "latency",
    "tail": "tail",
    "errors": "errors",
    "new_error_types": "new_types",
    "code_reach": "reach",
    "n_plus_one": "n_plus_one",
    "host_guard": "host_guard",
}


def override_problems(overrides: Mapping[str, Any]) -> list[str]:
    """What is wrong with per-detector overrides, as ``detector.field: problem`` lines.

    Args:
        overrides: ``{detector: {field: value}}`` as written in the config.
    """
    problems = []
    for detector, values in overrides.items():
        if detector not in DETECTORS:
            hint = difflib.get_close_matches(str(detector), list(DETECTORS), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"{detector}: unknown detector{extra}")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"{detector}: expected a mapping of settings")
            continue
        section = getattr(DetectionPolicy(), DETECTORS[detector])
        problems += [f"{detector}.{p}" for p in _field_problems(section, values)]
    return problems


def with_overrides(base: DetectionPolicy, overrides: Mapping[str, Any]) -> DetectionPolicy:
    """``base`` with the per-detector values of ``overrides`` (validated by the config)."""
    changed = {}
    for name, values in overrides.items():
        section = getattr(base, DETECTORS[name])
        kinds = _kinds(section)
        typed = {key: _typed(key, value, kinds.get(key)) for key, value in values.items()}
        changed[DETECTORS[name]] = replace(section, **typed)
    return replace(base, **changed)


def _typed(key: str, value: Any, kind: type | None) -> Any:
    """A validated config value as the policy holds it (a duration, a choice's word)."""
    if kind is timedelta:
        return duration(value)
    if key in _CHOICES and isinstance(value, bool):
        return _CHOICES[key][1][value]
    return value


def duration(value: Any) -> timedelta:
    """A duration setting as written in the config: ``5m``, ``300s``, 300 (seconds) or 0.

    Raises:
        ValueError: with a message saying what a duration looks like.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a duration like 5m, 300s or 0")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if value.strip().lower() in ("0", "0s", "0m", "0h"):
        return timedelta(0)
    # The config's own parser, so a detector's durations read like every other duration.
    return parse_duration(value)


def _kinds(section: object) -> dict[str, type]:
    return {f.name: type(getattr(section, f.name)) for f in fields(section)}  # type: ignore[arg-type]


def _field_problems(section: object, values: Mapping[str, Any]) -> list[str]:
    kinds = _kinds(section)
    problems = []
    for key, value in values.items():
        kind = kinds.get(key)
        if kind is None:
            hint = difflib.get_close_matches(str(key), list(kinds), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"{key}: unknown setting{extra}")
        elif kind is timedelta:
            problems += _duration_problem(key, value)
        elif key in _CHOICES:
            words = _CHOICES[key][0]
            if not isinstance(value, bool) and value not in words:
                problems.append(f"{key}: expected {', '.join(words[:-1])} or {words[-1]}")
        elif kind is bool and not isinstance(value, bool):
            problems.append(f"{key}: expected true or false")
        elif kind is not bool and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{key}: expected a number")
        elif kind is int and not isinstance(value, int):
            problems.append(f"{key}: expected a whole number")
        elif kind is not bool and value < 0:
            problems.append(f"{key}: must not be negative")
    return problems


def _duration_problem(key: str, value: Any) -> list[str]:
    try:
        duration(value)
    except ValueError as exc:
        return [f"{key}: {exc}"]
    return []
