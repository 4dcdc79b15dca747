"""Planned samples from search-only trace stores (Jaeger, Zipkin, Tempo's search).

A search API answers "at most N traces with a span of this service in [start, end)", so what
feedbot sees of a busy service is a sample. :func:`sampled_collect` plans it so that the
verdicts are those of the full data, within the statistics of the sample:

1. **Where the version served** (:func:`locate`): one search over the query's window, then a
   bisection on each edge with one-trace searches, to within 1/16 of the range it served (and
   of the window; never finer than a second). The slices are cut between the first and the
   last span found, so none is spent on the hours before a version was deployed, after the
   next one replaced it, or after "now": a load test of 15 seconds in a day-long baseline
   window is located to the second, not to 90 minutes, else each slice's count, estimated from
   the density of its answer, is taken over minutes the version never served (90× too many
   spans, and its errors divided by them). ``2 + 2·locate_steps`` requests when the version
   served most of its window, about two more per halving of the part it served; at most
   ``2 + 2·log2(window / 1 s)`` (36 for a day).
2. **Stratified by operation**: the store's list of the service's span names (Jaeger
   ``/api/v3/operations``, Zipkin ``/api/v2/spans``, Tempo tag values of ``name``), then, per
   slice, one search of the whole service and one per operation, each for the slice's share
   of :attr:`SearchBudget.per_operation` traces. A slice the first search exhausts is not
   searched per operation, nor is an operation whose share already came in other answers (a
   DB span under its route); a first search that is not full holds every trace, and ends the
   plan. A route with 12% of the traffic gets its own budget instead of 12% of a shared one.
3. **Error traces by the store's own filter** (Jaeger ``error=true``, Zipkin ``error``, TraceQL
   ``status = error``), up to :attr:`SearchBudget.error_traces` per version, so that a rare
   new exception type is found at all.
4. **Counts**: spans per group are *estimated* totals, not the sample's counts. Stores that
   answer newest first (Jaeger, Zipkin) give each stratum's traffic from the density of its
   answer: a full answer of ``L`` traces whose oldest starts at ``t`` in a slice ``[a, b)``
   stands for about ``(L − 1)·(b − a)/(b − t)`` traces; an answer that is not full is the exact
   count. Each sampled trace counts for its (slice, entry operation) bucket: the total its
   entry operation's own answer stands for when that operation was searched alone, else its
   share of the service-wide answer, over the bucket's sampled traces (post-stratified
   Horvitz-Thompson; overlapping answers are not counted twice). Neither Jaeger nor Zipkin
   has exact counts; Tempo's TraceQL metrics replace these estimates where they
   apply (:mod:`feedbot.backends.tempo`).

**Error traces and the error rate.** Error traces found by the error filter are kept out of
the durations, and out of the rate unless the error search was exhaustive: when it came back
below its cap it found every error span of the version in the slices, so each group's
``errors`` and exception counts are exact and are set against the *estimated* span count.
When the cap was hit, errors are the sample's, weighted like the counts, and the exception
counts are a lower bound (the note says so). Durations, instances, code, callers and N+1
repeats always come from the stratified sample alone.

**Cost**, per version: ``2 + 2·locate_steps`` requests to locate, 1 for the operations, at
most ``slices × (operations + 1)`` searches (each at most ``per_operation / slices`` traces)
and ``slices`` error searches: :meth:`SearchBudget.max_requests`. With the defaults (4 slices,
494 traces per operation, 13 operations) that is at most 71 requests and about 6,500 traces;
on the loopback fakes a 90-minute deploy of 9 operations costs 47 + 39 requests and 5–7 MB.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

from feedbot.policy import DetectionPolicy
from feedbot.spans.aggregate import aggregate, to_ns
from feedbot.spans.model import ReleaseData, SpanGroupStats, SpanQuery, from_ns
from feedbot.spans.rows import SpanRow

_NORMAL = NormalDist()


def mwu_sample_size(ratio: float, *, sigma: float, alpha: float, power: float) -> int:
    """Spans per version for a one-sided Mann-Whitney test to detect ``ratio`` (Noether).

    The formula of :func:`feedbot.analysis.stats.power.mwu_sample_size`, which backends may
    not import (they sit beside analysis/, not under it); a unit test holds the two equal.
    """
    excess = _NORMAL.cdf(math.log(ratio) / (sigma * math.sqrt(2.0))) - 0.5
    z = _NORMAL.inv_cdf(1.0 - alpha) + _NORMAL.inv_cdf(power)
    return math.ceil(z**2 / (3.0 * excess**2) / 2.0)


@dataclass(frozen=True)
class SearchBudget:
    """How much a search-only store is asked per version of a check.

    Attributes:
        per_operation: traces searched per operation (span name), over all slices: what one
            span group needs for its verdict (see :meth:`from_policy`).
        error_traces: error traces fetched per version, over all slices.
        slices: the served range is cut into this many slices, each with its share.
        max_operations: operations searched one by one; the others share one search per slice.
        locate_steps: bisection steps per edge of the served range at least (to 1/2^steps of
            the window); more, to 1/2^steps of the range served, when that is a small part.
        locate_limit: traces asked by the first, whole-window search.
    """

    per_operation: int = 494
    error_traces: int = 400
    slices: int = 4
    max_operations: int = 30
    locate_steps: int = 4
    locate_limit: int = 20

    @classmethod
    def from_policy(
        cls,
        policy: DetectionPolicy | None = None,
        *,
        ratio: float = 1.15,
        sigma: float = 0.5,
        tests: int = 40,
    ) -> SearchBudget:
        """The budget at which one group's +15% shift is found with the policy's power.

        Spans per operation: the Mann-Whitney sample size for ``ratio`` (or the policy's
        ``latency.ratio_floor`` when larger: no smaller shift is reported) at log-sd ``sigma``,
        at the level a lone finding needs among ``tests`` tests (BH's q/m at one look) and the
        policy's power; never below the p95 check's nor the latency check's minimum spans.
        Defaults: 494 spans, i.e. +15% at σ = 0.5 with 80% power at α = 0.0125/40 (+20% then
        has about 99%).
        """
        policy = policy or DetectionPolicy()
        alpha = policy.looks.lone_test_level(tests)
        # A service that reports only larger shifts (its latency.ratio_floor) needs fewer spans.
        ratio = max(ratio, policy.latency.ratio_floor)
        needed = mwu_sample_size(ratio, sigma=sigma, alpha=alpha, power=policy.power)
        floor = max(policy.tail.p95_min_samples, policy.latency.min_samples)
        return cls(per_operation=max(needed, floor))

    @property
    def per_slice(self) -> int:
        """Traces asked per operation and slice."""
        return max(1, math.ceil(self.per_operation / self.slices))

    def max_requests(self, operations: int, window: timedelta | None = None) -> int:
        """Requests one version's collect makes at most, retries not counted.

        Locating (:meth:`locate_requests`: ``2 + 2·locate_steps`` when the version served most
        of its window, up to ``2 + 2·log2(window / 1 s)`` when it served seconds of it), the
        operations (1), per slice one search of the whole service and one per operation
        (``max_operations`` at most), and one error search per slice.
        """
        return (
            self.locate_requests(window)
            + 1
            + self.slices * (min(operations, self.max_operations) + 2)
        )

    def locate_requests(self, window: timedelta | None = None) -> int:
        """Requests to locate the served range: ``2 + 2·locate_steps`` when the version served
        most of its window; with ``window``, the most a version serving a sliver of it costs
        (each edge bisected to the second)."""
        steps = self.locate_steps
        if window is not None:
            steps = max(steps, _steps_to_second(window // timedelta(microseconds=1) * 1000))
        return 2 + 2 * steps


@dataclass(frozen=True)
class Probe:
    """One search: ``[start, end)``, at most ``limit`` traces, one operation or all, errors only."""

    start: datetime
    end: datetime
    limit: int
    operation: str | None = None
    errors: bool = False


#: Asks the store: every span of the traces one probe finds (other services' spans too).
Find = Callable[[Probe], list[SpanRow]]


@dataclass
class _Slice:
    """One slice's searches: the service-wide answer and the operations searched alone.

    Attributes:
        overall: traces the service-wide answer stands for.
        entries: its traces by entry operation (the name of a trace's first span here).
        searched: operation → traces its own answer stands for.
        exhausted: the service-wide answer was not full: every trace of the slice is in hand.
    """

    overall: float = 0.0
    entries: Counter[str] = field(default_factory=Counter)
    searched: dict[str, float] = field(default_factory=dict)
    exhausted: bool = False


@dataclass
class _Sample:
    """Traces found so far: rows by trace and the slice each was found in; error traces."""

    rows: dict[str, list[SpanRow]] = field(default_factory=dict)
    slice_of: dict[str, int] = field(default_factory=dict)
    slices: list[_Slice] = field(default_factory=list)
    errors: dict[str, list[SpanRow]] = field(default_factory=dict)
    full_strata: int = 0
    errors_capped: bool = False


def _own(rows: Iterable[SpanRow], query: SpanQuery) -> Iterable[SpanRow]:
    """Rows of the query's service and version (any time)."""
    return (r for r in rows if r["service"] == query.service and r["version"] == query.version)


def _starts(rows: Iterable[SpanRow], query: SpanQuery, low: int, high: int) -> list[int]:
    return [r["start_ns"] for r in _own(rows, query) if low <= r["start_ns"] < high]


@dataclass(frozen=True)
class Located:
    """Where a version served: ``window``, and the first search's rows (``complete`` when that
    search was not full, so it holds every trace of the version in the query's window)."""

    window: tuple[datetime, datetime]
    rows: list[SpanRow]
    complete: bool


def locate(find: Find, query: SpanQuery, budget: SearchBudget) -> Located | None:
    """The part of the query's window where the version served, or None when it did not.

    The window contains every span of the version in the query's window (each edge is kept on
    the safe side of the bisection, to the microsecond) and is at most 1/2^steps of the
    range served (or a second) wider on each side.
    """
    low, high = to_ns(query.start), to_ns(query.end)
    rows = find(Probe(query.start, query.end, budget.locate_limit))
    seen = _starts(rows, query, low, high)
    if not seen:
        return None
    complete = len({r["trace_id"] for r in rows}) < budget.locate_limit
    if complete:
        return Located((_floor_us(min(seen)), _after_us(max(seen))), rows, True)
    steps = max(budget.locate_steps, _steps_to_second(high - low))

    def fine(lo: int, hi: int, served: int) -> bool:
        """Whether the edge, known to lie in [lo, hi], is within 1/2^locate_steps of ``served``
        (the range known to be served) and of the window, or within a second."""
        span = min(high - low, max(0, served))
        return hi - lo <= max(_SECOND, span >> budget.locate_steps)

    def probe(a: int, b: int) -> list[int] | None:
        """Starts of the version's spans in the answer for ``[a, b)``, whole seconds (Tempo's
        unit), kept to the query's window; None when the store answered with a trace but none
        of this version's spans starts in the range (a newer trace of another version where
        the store cannot filter by version, Zipkin's millisecond ``endTs``/``lookback``): the
        range is then not known to be empty, and an edge never moves past it."""
        if a >= b:
            return []
        rows = find(Probe(from_ns(a), from_ns(b), 1))
        starts = _starts(rows, query, max(a, low), min(b, high))
        return None if rows and not starts else starts

    # The first span lies in [lo, hi]: a find in [lo, mid) moves hi down to what it found.
    lo, hi = low // _SECOND * _SECOND, min(seen)
    for _ in range(steps):
        if fine(lo, hi, max(seen) - hi):
            break
        mid = (lo + hi) // (2 * _SECOND) * _SECOND
        found = probe(lo, mid) if mid > lo else []
        if found is None:  # something in [lo, mid): the first span is no later than mid
            hi = min(hi, mid)
        else:
            lo, hi = (lo, min(found)) if found else (max(lo, mid), hi)
    first = max(lo, low)
    # The last lies in [lo, hi). Stores answering newest first gave it already: one check.
    after = -(-(max(seen) + 1) // _SECOND) * _SECOND
    later = probe(after, high)
    if later == []:
        return Located((_floor_us(first), from_ns(after)), rows, False)
    lo, hi = max(later) if later else after, high
    for _ in range(steps):
        if fine(lo, hi, lo - first):
            break
        mid = -(-(lo + hi) // (2 * _SECOND)) * _SECOND
        found = probe(mid, hi)
        if found is None:  # something in [mid, hi): the last span is no earlier than mid
            lo = max(lo, mid)
        else:
            lo, hi = (max(found), hi) if found else (lo, mid)
    return Located((_floor_us(first), _after_us(hi - 1)), rows, False)


_SECOND = 1_000_000_000


def _steps_to_second(window_ns: int) -> int:
    """Halvings of ``window_ns`` down to a second."""
    return max(0, (window_ns - 1) // _SECOND).bit_length()


def _floor_us(ns: int) -> datetime:
    """``ns`` as a datetime (microseconds), rounded down."""
    return from_ns(ns // 1000 * 1000)


def _after_us(ns: int) -> datetime:
    """The first microsecond after ``ns``: an exclusive end that keeps a span starting at ``ns``."""
    return from_ns((ns // 1000 + 1) * 1000)


def split(start: datetime, end: datetime, slices: int) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into ``slices`` consecutive windows of equal length."""
    step = (end - start) / max(1, slices)
    bounds = [start + step * i for i in range(slices)] + [end]
    return [(bounds[i], bounds[i + 1]) for i in range(slices) if bounds[i] < bounds[i + 1]]


def _by_trace(rows: Iterable[SpanRow]) -> dict[str, list[SpanRow]]:
    traces: dict[str, list[SpanRow]] = {}
    for row in rows:
        traces.setdefault(row["trace_id"], []).append(row)
    return traces


def _density(starts: Sequence[int], returned: int, limit: int, a: int, b: int) -> float:
    """Traces a newest-first answer stands for in ``[a, b)`` (exact when it was not full).

    The newest ``L`` traces reach back to ``t``: ``(L − 1)/(b − t)`` is the rate's unbiased
    estimate for Poisson arrivals, times the slice's length; never below ``L``.
    """
    if returned < limit or not starts:
        return float(returned)
    covered = max(1, b - min(starts))
    return max(float(returned), (returned - 1) * (b - a) / covered)


class _Planner:
    def __init__(
        self,
        find: Find,
        query: SpanQuery,
        budget: SearchBudget,
        *,
        newest_first: bool,
        fold: Callable[[str], str],
    ) -> None:
        self.find, self.query, self.budget = find, query, budget
        self.newest_first, self.fold = newest_first, fold
        self.sample = _Sample()

    def entry(self, rows: list[SpanRow]) -> str:
        """A trace's entry operation here: the name of its first span of the version."""
        own = list(_own(rows, self.query))
        return self.fold(min(own, key=lambda r: r["start_ns"])["name"]) if own else ""

    def overall(self, window: tuple[datetime, datetime]) -> bool:
        """Search a slice for the whole service; whether the slice holds more than it found."""
        probe = Probe(*window, self.budget.per_slice)
        traces = _by_trace(self.find(probe))
        estimate, full = self.take(probe, traces)
        entries = Counter(self.entry(rows) for rows in traces.values())
        self.sample.slices.append(_Slice(estimate, entries, exhausted=not full))
        return full

    def operation(self, window: tuple[datetime, datetime], name: str) -> None:
        """Search one operation in the current slice unless the sample holds its share."""
        probe = Probe(*window, self.budget.per_slice, operation=name)
        a, b = to_ns(probe.start), to_ns(probe.end)
        wanted = self.fold(name)
        have = {
            trace_id
            for trace_id, rows in self.sample.rows.items()
            for r in _own(rows, self.query)
            if a <= r["start_ns"] < b and self.fold(r["name"]) == wanted
        }
        if len(have) >= probe.limit:
            return
        estimate, _ = self.take(probe, _by_trace(self.find(probe)))
        self.sample.slices[-1].searched[wanted] = estimate

    def take(self, probe: Probe, traces: dict[str, list[SpanRow]]) -> tuple[float, bool]:
        """Keep an answer's new traces in the current slice; what it stands for, and if full."""
        a, b = to_ns(probe.start), to_ns(probe.end)
        # Each trace's newest span here: what a newest-first store sorted on.
        keys = [max(_starts(rows, self.query, a, b), default=a) for rows in traces.values()]
        returned = len(traces)
        full = returned >= probe.limit
        self.sample.full_strata += full
        # The service-wide search opens its slice; an operation's adds to the open one.
        index = len(self.sample.slices) - (probe.operation is not None)
        estimate = _density(keys, returned, probe.limit, a, b) if self.newest_first else returned
        for trace_id, rows in traces.items():
            if trace_id not in self.sample.rows:
                self.sample.errors.pop(trace_id, None)  # found by the sample: part of it
                self.sample.rows[trace_id] = rows
                self.sample.slice_of[trace_id] = index
        return float(estimate), full

    def errors(self, window: tuple[datetime, datetime], limit: int) -> None:
        """Fetch the error traces of one slice; those already sampled are not kept twice."""
        traces = _by_trace(self.find(Probe(*window, limit, errors=True)))
        self.sample.errors_capped |= len(traces) >= limit
        for trace_id, rows in traces.items():
            if trace_id not in self.sample.rows:
                self.sample.errors[trace_id] = rows

    def weights(self) -> dict[tuple[int, str], float]:
        """The weight of each (slice, entry operation) bucket of sampled traces.

        Post-stratified: an entry operation searched alone in a slice stands for what its own
        answer does; any other for its share of the service-wide answer. Each sampled trace
        counts for its bucket's total over the bucket's sampled traces (at least 1).
        """
        held = Counter(
            (self.sample.slice_of[t], self.entry(rows)) for t, rows in self.sample.rows.items()
        )
        weights = {}
        for (index, entry), sampled in held.items():
            part = self.sample.slices[index] if index < len(self.sample.slices) else _Slice()
            if part.exhausted or not self.newest_first:
                total = float(sampled)
            elif entry in part.searched:
                total = part.searched[entry]
            elif part.entries[entry]:
                total = part.overall * part.entries[entry] / sum(part.entries.values())
            else:
                total = float(sampled)
            weights[index, entry] = max(1.0, total / sampled)
        return weights


def sampled_collect(
    find: Find,
    operations: Callable[[], list[str]],
    query: SpanQuery,
    budget: SearchBudget,
    *,
    newest_first: bool,
    fold: Callable[[str], str] = str,
) -> tuple[ReleaseData, dict[str, int]]:
    """Plan and run the searches for ``query`` (see the module docstring); aggregate them.

    Args:
        find: runs one :class:`Probe` against the store.
        operations: the service's span names, as the store lists them.
        query: the spans wanted.
        budget: how much to ask.
        newest_first: the store answers a search with its newest traces (Jaeger, Zipkin), so
            the density of an answer estimates the traffic it stands for.
        fold: how the store spells names (Zipkin lower-cases them).

    Returns:
        The release data (counts estimated, see the module docstring) and figures for the note:
        ``operations``, ``searched`` (operations searched one by one), ``sampled`` (traces),
        ``estimated`` (traces they stand for), ``errors`` (error traces outside the sample),
        ``capped`` (1 when the error search hit its cap), ``full`` (strata that were samples).
    """
    located = locate(find, query, budget)
    if located is None:
        return aggregate([], query), {"operations": 0, "searched": 0, "sampled": 0}
    planner = _Planner(find, query, budget, newest_first=newest_first, fold=fold)
    names: list[str] = []
    if located.complete:  # the first search found every trace: nothing more to ask
        planner.take(Probe(query.start, query.end, budget.locate_limit), _by_trace(located.rows))
        planner.sample.slices.append(_Slice(exhausted=True))
    else:
        names = sorted(dict.fromkeys(operations()))
        windows = split(*located.window, budget.slices)
        # Error traces first, so that the sample's searches can claim those they also find.
        per_slice_errors = max(1, math.ceil(budget.error_traces / len(windows)))
        for window in windows:
            planner.errors(window, per_slice_errors)
        for window in windows:
            # The whole service first: a slice it exhausts needs no search per operation.
            if planner.overall(window):
                for name in names[: budget.max_operations]:
                    planner.operation(window, name)
    sample = planner.sample
    weights = planner.weights()
    data = assemble(
        sample, query, weights, planner.entry, totals=newest_first or not sample.full_strata
    )
    figures = {
        "operations": len(names),
        "searched": min(len(names), budget.max_operations),
        "sampled": data.traces,
        "estimated": round(
            sum(
                w
                for t, rows in sample.rows.items()
                for w in [weights[sample.slice_of[t], planner.entry(rows)]]
                if any(_own(rows, query))
            )
        ),
        "errors": len(sample.errors),
        "capped": int(sample.errors_capped),
        "full": sample.full_strata,
        "complete": int(located.complete),
        # Where the version served, whole seconds on the safe side (see :func:`served`).
        "served_from_s": math.floor(located.window[0].timestamp()),
        "served_until_s": math.ceil(located.window[1].timestamp()),
    }
    return data, figures


def served(query: SpanQuery, figures: dict[str, int]) -> SpanQuery:
    """The query narrowed to where :func:`sampled_collect` located the version, never wider.

    Every span of the version in the query's window lies in the located range, so a count
    over the narrowed window is the count over the whole one (Tempo's metrics need a window
    of at most a day: a check whose baseline window runs over days still gets exact counts
    when the version served less than that). Without a located range, the query itself.
    """
    if "served_from_s" not in figures:
        return query
    start = datetime.fromtimestamp(figures["served_from_s"], UTC)
    end = datetime.fromtimestamp(figures["served_until_s"], UTC)
    return replace(query, start=max(query.start, start), end=min(query.end, end))


def assemble(
    sample: _Sample,
    query: SpanQuery,
    weights: dict[tuple[int, str], float],
    entry: Callable[[list[SpanRow]], str],
    *,
    totals: bool,
) -> ReleaseData:
    """The sample's release data with each group's count (and errors) weighted to the total.

    Durations and everything else come from the stratified sample; see the module docstring for
    the errors and exceptions of the error traces. Without ``totals`` (the counts could not be
    estimated: a store not answering newest first) errors stay the sample's and the error
    traces add exception types only.
    """
    # In start order, so the example traces are the earliest, whatever order the API uses.
    all_rows = sorted(
        (row for rows in sample.rows.values() for row in rows), key=lambda r: r["start_ns"]
    )
    main = aggregate(all_rows, query)
    buckets: dict[tuple[int, str], list[SpanRow]] = {}
    for trace_id, rows in sample.rows.items():
        buckets.setdefault((sample.slice_of[trace_id], entry(rows)), []).extend(rows)
    counts: dict[tuple[str, str], float] = {}
    errors: dict[tuple[str, str], float] = {}
    for bucket, rows in buckets.items():
        for group in aggregate(rows, query).groups:
            key = (group.name, group.kind)
            counts[key] = counts.get(key, 0.0) + group.count * weights[bucket]
            errors[key] = errors.get(key, 0.0) + group.errors * weights[bucket]
    error_rows = [row for rows in sample.errors.values() for row in rows]
    union = {(g.name, g.kind): g for g in aggregate([*all_rows, *error_rows], query).groups}
    groups = []
    for group in main.groups:
        key = (group.name, group.kind)
        seen = union.get(key, group)
        count = max(round(counts.get(key, group.count)), seen.count)
        if sample.errors_capped or not totals:
            wrong = max(round(errors.get(key, group.errors)), group.errors)
        else:
            wrong = seen.errors
        groups.append(
            replace(group, count=count, errors=min(wrong, count), exceptions=seen.exceptions)
        )
    known = {(g.name, g.kind) for g in main.groups}
    groups += [_without_durations(g) for key, g in union.items() if key not in known]
    groups.sort(key=lambda s: (-s.count, s.name, s.kind))
    return replace(main, groups=groups)


def _without_durations(group: SpanGroupStats) -> SpanGroupStats:
    """A group seen only in error traces: counted, with its exceptions, but no durations."""
    return SpanGroupStats(
        name=group.name,
        kind=group.kind,
        count=group.count,
        errors=group.errors,
        exceptions=group.exceptions,
        code=group.code,
        callers=group.callers,
    )


def note(backend: str, figures: dict[str, int], requests: int, *, exact: str = "") -> str:
    """The report's line on how much of the data one collect saw.

    Args:
        backend: the backend's name, first word of the line.
        figures: what :func:`sampled_collect` returned beside the data.
        requests: the requests the collect made.
        exact: what is said of the counts when the answer was a sample (default: estimates).
    """
    asked = f"{requests} request" + ("" if requests == 1 else "s")
    if not figures.get("sampled"):
        return f"{backend}: no traces of this version found ({asked})"
    if figures.get("complete"):
        return f"{backend}: all {figures['sampled']:,} traces of this version found in {asked}"
    about = max(figures["estimated"], figures["sampled"])
    errors = f"{figures['errors']} error traces fetched"
    if figures["capped"]:
        errors += ", the error search hit its cap: exception counts are a lower bound"
    line = (
        f"{backend}: {figures['sampled']:,} of about {about:,} traces searched in {asked} "
        f"(stratified over {figures['operations']} operations, {errors})"
    )
    if figures.get("full"):
        line += "; " + (exact or f"span counts are estimates ({backend} has no exact counts)")
    return line
