"""What the analysis says: findings, their measured values and effects, and per-group summaries.

Pure data, shared by ``compare`` (statistical tests per span group) and ``insights`` (changed code
reached, N+1, bottlenecks), and rendered by ``report`` and the Slack digest. One object feeds
every output, so no output re-derives a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal[
    "latency_regression",
    "latency_improvement",
    "error_rate_increase",
    "error_rate_decrease",
    "new_error_type",
    "n_plus_one",
    "bottleneck",
    "code_reached",
    "code_not_reached",
    "new_operation",
    "operation_gone",
    "low_traffic",
]
#: high: a tested regression; medium: worth a look; low: an improvement; info: a fact.
Severity = Literal["high", "medium", "low", "info"]
#: suspected findings are shown as "watching"; only confirmed ones make the verdict.
State = Literal["suspected", "confirmed"]
Direction = Literal["regressed", "improved"]
#: Callers kept per group summary (the busiest ones).
TOP_CALLERS = 5


@dataclass(frozen=True, slots=True)
class Measure:
    """One version's side of a finding.

    Attributes:
        n: Samples the value comes from (spans, requests or traces; see ``unit``).
        value: The measured value (a median in ms, an error rate, a count), None when not
            measurable.
        unit: What ``value`` is: "p50_ms", "p95_ms", "p99_ms", "error_rate", "share", "count",
            "repeats".
    """

    n: int
    value: float | None
    unit: str


@dataclass(frozen=True, slots=True)
class Effect:
    """The size of a change, new relative to baseline.

    Attributes:
        ratio: New/base (1.3 = 30% more); None when it has no ratio.
        low: Lower CI end, None when there is no CI.
        high: Upper CI end, None when there is none or it is unbounded.
        level: Two-sided level of [low, high].
        floor: The effect a finding had to reach (after the host-spread guard).
        mde: Smallest effect the current samples could have shown at the level actually
            tested (power from the policy), never below the floor; None when not computed.
    """

    ratio: float | None
    low: float | None = None
    high: float | None = None
    level: float = 0.95
    floor: float | None = None
    mde: float | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the analysis has to say about a release.

    Attributes:
        kind: What was found (the contract's list).
        severity: How loudly to say it.
        message: One sentence with the numbers, for people.
        span: The span group it is about.
        function: A changed function (code_reached / code_not_reached).
        file: A changed file.
        exception_type: For new_error_type.
        statement: The normalised DB statement (n_plus_one).
        baseline: The baseline's side.
        candidate: The new version's side.
        change: The effect with its CI, floor and MDE.
        p_value: The test's one-sided p-value (None for facts).
        q_value: Its Benjamini-Hochberg q-value within its family.
        method: The test or rule that produced it.
        example_trace_ids: Traces to open.
        state: "suspected" (watching) until it holds at a second look; facts are "confirmed".
        counts_toward: The verdict it supports once confirmed; None when it never does.
        tested: Whether the state follows the two-look rule (tests and detectors do, facts
            do not).
    """

    kind: Kind
    severity: Severity
    message: str
    span: str | None = None
    function: str | None = None
    file: str | None = None
    exception_type: str | None = None
    statement: str | None = None
    baseline: Measure | None = None
    candidate: Measure | None = None
    change: Effect | None = None
    p_value: float | None = None
    q_value: float | None = None
    method: str | None = None
    example_trace_ids: tuple[str, ...] = ()
    state: State = "confirmed"
    counts_toward: Direction | None = None
    tested: bool = False

    @property
    def key(self) -> str:
        """Identity across looks: the same kind about the same thing (the test may differ)."""
        parts = (self.span, self.function, self.file, self.exception_type, self.statement)
        return "|".join([self.kind, *(p or "" for p in parts)])


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One span group in one version: the contract's per-group numbers.

    Attributes:
        count: Spans.
        errors: Spans with error status.
        p50_ms: Median duration, None without durations.
        p95_ms: 95th percentile.
        p99_ms: 99th percentile.
        instances: Distinct instances that served it (0 when spans did not say).
        callers: Its busiest callers, from parent spans: (caller group, spans), most first, at
            most :data:`TOP_CALLERS`; ``"(root)"`` for root spans, ``"(remote)"`` for parents
            in another service.
    """

    count: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    instances: int = 0
    callers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class KnownException:
    """An exception type the service raised on a span group before this release (its history).

    Attributes:
        span: The span group.
        type: The exception type.
        version: The version that raised it.
        last_seen: When feedbot last saw it (None when unknown).
    """

    span: str
    type: str
    version: str
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class GroupComparison:
    """A span group in both versions.

    Attributes:
        span: Group name ("GET /vaults/{id}" for routed server spans).
        kind: Span kind.
        baseline: Baseline numbers, None when the group is new.
        candidate: New-version numbers, None when it is gone.
        status: "tested", "low_traffic", "new", "gone" or "no_baseline".
        mde: Smallest latency ratio the test could have shown (None when untested).
    """

    span: str
    kind: str
    baseline: GroupSummary | None
    candidate: GroupSummary | None
    status: str
    mde: float | None = None


#: child: a child operation's time on the critical path changed; self: the span's own code;
#: new_child: a child operation only the new version runs; repeat: a statement run many times
#: per request; attribute: the change is concentrated where an attribute has one value.
CauseKind = Literal["child", "self", "new_child", "repeat", "attribute"]
#: What the cause explains: added (or removed) time, or added errors.
Explains = Literal["latency", "errors"]


@dataclass(frozen=True, slots=True)
class Cause:
    """Where one span group's change lives.

    Attributes:
        span: The span group whose change this explains.
        kind: What the cause is (see :data:`CauseKind`).
        name: The child group, ``"key=value"`` for an attribute, or the span itself for self.
        explains: "latency" or "errors".
        share: Part of the change it explains, 0 to 1 (never more).
        baseline: Its value in the baseline per request of ``span`` (ms on the critical path
            for latency, an error rate for errors), None when it did not exist.
        candidate: The same in the new version.
        n_baseline: Spans (or traces) of ``span`` the baseline value comes from.
        n_candidate: The same for the new version.
        detail: One plain sentence of evidence (how it was measured), for the details view.
    """

    span: str
    kind: CauseKind
    name: str
    explains: Explains
    share: float
    baseline: float | None
    candidate: float | None
    n_baseline: int = 0
    n_candidate: int = 0
    detail: str = ""


def percent(ratio: float | None) -> str:
    """A ratio as a signed percentage change: 1.3 → "+30%", 0.8 → "-20%"."""
    if ratio is None:
        return "n/a"
    if ratio == float("inf"):
        return "+∞"
    change = (ratio - 1.0) * 100.0
    return f"{change:+.0f}%" if abs(change) >= 1 else f"{change:+.1f}%"


def pval(p: float | None) -> str:
    """A p- or q-value for a sentence: 3 significant digits, scientific below 0.001."""
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p < 1e-3 else f"{p:.3f}"
