"""Streaming spans into :class:`~feedbot.spans.model.ReleaseData`; pure, no I/O.

Backends that cannot aggregate on their side (the embedded store, OTLP files, trace-by-id APIs)
feed span rows to an :class:`Aggregator` one at a time (:meth:`Aggregator.add`), or, where
building a row per span would cost more than the counting, the few fields the answer needs
(:meth:`Aggregator.add_span`, used by :mod:`feedbot.spans.otlp_scan`). What a span's
attributes mean is read by :mod:`feedbot.spans.semconv`. Memory is what the answer needs (a
duration, an instance index, an error flag and a label-set code per span, bounded exception,
code and label tables per group: :mod:`feedbot.spans.labels`) plus the spans of traces still
open: a trace's caller links and N+1 counters are resolved when it closes,
which is at :meth:`Aggregator.result`, or earlier when more than ``max_open_spans`` spans are held
(the trace seen first closes first; a parent arriving after its trace closed counts as remote).
A closing trace's spans are also offered to :class:`~feedbot.spans.critical.PathRecorder`, which
walks the critical paths of a bounded sample of each group's spans.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from feedbot.spans.critical import PathRecorder
from feedbot.spans.dedupe import SeenSpans, UniqueSpans
from feedbot.spans.group import GroupTally
from feedbot.spans.labels import Labels, labels_of
from feedbot.spans.model import ReleaseData, RepeatedStatement, SpanQuery, observed_range
from feedbot.spans.resources import asgi_event
from feedbot.spans.rows import SpanRow
from feedbot.spans.semconv import Extras, extras_of, label, resource_key, statement_of

ROOT = "(root)"
REMOTE = "(remote)"
MAX_OPEN_SPANS = 100_000
#: Groups named by a resource (statement, templated path) per aggregator; later ones share one.
MAX_RESOURCE_GROUPS = 200
OTHER_PATHS = "(other paths)"
OTHER_STATEMENTS = "(other statements)"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_NS = 2**63 - 1
#: (span name, kind, method, route, resource): what a span is grouped by before labelling.
GroupKey = tuple[str, str, str | None, str | None, str | None]
#: The observed range before any span: low above every start, high below every start.
_NONE_YET = (2**63, -(2**63))


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime, without float rounding.

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} given as a span query bound")
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def matcher(query: SpanQuery) -> Callable[[SpanRow], bool]:
    """A predicate equivalent to :func:`matches` with the window converted once."""
    start, end = to_ns(query.start), to_ns(query.end)
    service, version, environment = query.service, query.version, query.environment
    name = query.span_name

    def test(row: SpanRow) -> bool:
        return (
            row["service"] == service
            and row["version"] == version
            and start <= row["start_ns"] < end
            and (environment is None or row["environment"] in (None, environment))
            and (name is None or row["name"] == name)
        )

    return test


def matches(row: SpanRow, query: SpanQuery) -> bool:
    """Whether ``row`` belongs to ``query``: service, version, environment, window, span name.

    Rows without an environment match every environment: a release must not look unused because
    the SDK left ``deployment.environment`` out. The window is ``[start, end)`` on span start.
    """
    return matcher(query)(row)


def span_end(start_ns: int, duration_ms: float) -> int:
    """A span's end from its start and milliseconds, as the columnar reader has them (so both
    readers answer alike), held within int64."""
    ns, cap = round(duration_ms * 1e6), MAX_NS - start_ns
    return start_ns + (cap if ns >= 2**62 else min(max(ns, 0), cap))


def row_key(row: SpanRow, statement: str | None) -> GroupKey:
    """The group key of a span row whose normalised statement is ``statement``."""
    raw = (row["name"], row["kind"], row["method"], row["route"])
    return (*raw, resource_key(raw, row["attributes"], statement))


def group_label(row: SpanRow) -> str:
    """The group label of a span row (see :func:`~feedbot.spans.semconv.label`)."""
    return label(*row_key(row, statement_of(row["attributes"])))


class _Closable(Protocol):
    def close_all(self) -> None: ...


class _Trace:
    """The open part of one trace: group index per span id, caller links, DB statement counts.

    Group indexes rather than groups, ints and floats rather than lists, so that the tables
    hold no objects the cyclic garbage collector has to visit: with a hundred thousand open
    spans those visits cost more than the counting.
    """

    __slots__ = (
        "children",
        "db",
        "db_ms",
        "held",
        "parents",
        "path_groups",
        "path_ids",
        "path_instances",
        "path_parents",
        "path_times",
        "size",
        "spans",
    )

    def __init__(self, held: bool = False) -> None:
        self.held = held  # Not closed early, nor counted towards max_open_spans.
        self.size = 0
        self.spans: dict[str, int] = {}
        self.parents: list[str] = []  # a linked span's parent id ...
        self.children: array[int] = array("i")  # ... and the linked span's group index
        # Per (parent span id, statement): spans and their summed milliseconds. Two flat
        # dicts, which the collector stops tracking once their tuple keys are untracked.
        self.db: dict[tuple[str, str], int] = {}
        self.db_ms: dict[tuple[str, str], float] = {}
        # Per span in arrival order, for its critical path: id, parent id, group, start and
        # end (two entries), instance.
        self.path_ids: list[str] = []
        self.path_parents: list[str | None] = []
        self.path_groups: array[int] = array("i")
        self.path_times: array[int] = array("q")
        self.path_instances: list[str | None] = []

    def path_rows(self) -> tuple[list[int], list[int], list[int], list[int], list[str | None]]:
        """What :meth:`PathRecorder.close` takes: parent rows, groups, starts, ends, instances."""
        rows = {span: row for row, span in enumerate(self.path_ids)}
        parents = [-1 if p is None else rows.get(p, -1) for p in self.path_parents]
        times = self.path_times
        return (
            parents,
            self.path_groups.tolist(),
            times[0::2].tolist(),
            times[1::2].tolist(),
            (self.path_instances),
        )


@dataclass(eq=False)
class _Repeats:
    repeats: array[int] = field(default_factory=lambda: array("i"))
    total_ms: array[float] = field(default_factory=lambda: array("d"))
    example: tuple[int, str] = (0, "")


class Aggregator:
    """Folds span rows, in any order, into one :class:`ReleaseData`.

    Args:
        max_open_spans: how many spans of unfinished traces to hold before the oldest trace is
            closed (its unresolved parents then count as remote).
        warmup: leave out the durations of spans starting within this long of their
            instance's first span (:attr:`~feedbot.spans.model.SpanQuery.warmup`).
        hold_first: the traces of the first ``hold_first`` spans are never closed early: a
            reader of one part of a file keeps them open for :meth:`absorb` to join with the
            part before (see :mod:`feedbot.spans.otlp_parallel`).
        unique: the source stores each (trace id, span id) once, so spans are not checked for
            repeats (and their keys are not kept).
    """

    def __init__(
        self,
        *,
        max_open_spans: int = MAX_OPEN_SPANS,
        warmup: timedelta = timedelta(0),
        hold_first: int = 0,
        unique: bool = False,
    ) -> None:
        self._max_open = max_open_spans
        self._warmup_ns = warmup // timedelta(microseconds=1) * 1000
        # Per instance, the start of its first span: the warm-up is measured from it.
        self._first: dict[str | None, int] = {}
        self._hold = hold_first
        self._held: list[str] = []  # The held traces, in the order they were first seen.
        self._groups: dict[GroupKey, GroupTally] = {}
        self._by_label: dict[tuple[str, str], GroupTally] = {}
        # Group names taken from a resource, each with the name it would share over the cap.
        self._resources: dict[str, str] = {}
        self._folded = 0  # Keys whose resource was over the cap.
        self._indexed: list[GroupTally] = []
        self._open: dict[str, _Trace] = {}
        self._opened: deque[str] = deque()
        self._open_spans = 0
        self._closed: array[int] = array("q")
        # The first and last span start counted (ns); _NONE_YET until a span is.
        self._low, self._high = _NONE_YET
        self._repeats: dict[tuple[str, str], _Repeats] = {}
        # Traces fed as columns (feedbot.spans.aggregate_columns), held apart until closed.
        self.open_columns: _Closable | None = None
        # Spans sent twice are counted once (feedbot.spans.dedupe).
        self.seen = UniqueSpans() if unique else SeenSpans()
        self.paths = PathRecorder()

    @property
    def tallies(self) -> list[GroupTally]:
        """The groups so far, by index."""
        return self._indexed

    @property
    def warmup_ns(self) -> int:
        """The warm-up left out, in nanoseconds (0: none)."""
        return self._warmup_ns

    @property
    def max_open_spans(self) -> int:
        """How many spans of open traces are held before the oldest trace closes."""
        return self._max_open

    def tally(self, key: GroupKey) -> GroupTally:
        """The group of spans of ``key``, made when first asked for."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = self._group(key)
        return group

    def first_start(self, instance: str | None, start_ns: int) -> None:
        """Note a span of ``instance`` starting at ``start_ns`` (warm-up counts from the first)."""
        first = self._first.get(instance)
        if first is None or start_ns < first:
            self._first[instance] = start_ns

    def observe(self, low_ns: int, high_ns: int) -> None:
        """Widen the observed range of span starts to cover ``[low_ns, high_ns]``."""
        self._low = min(self._low, low_ns)
        self._high = max(self._high, high_ns)

    def add_closed(self, trace_hashes: Iterable[int]) -> None:
        """Count closed traces by the ``hash`` of their ids."""
        self._closed.extend(trace_hashes)

    def fold_statements(
        self,
        statements: list[str],
        repeats: Iterable[tuple[str, int, Any, Any, str]],
    ) -> None:
        """Add closed traces' worst repeats: (caller, statement code, counts, totals, example)."""
        for name, code, counts, totals, example in repeats:
            entry = self._repeats.setdefault((name, statements[code]), _Repeats())
            entry.repeats.frombytes(counts.tobytes())
            entry.total_ms.frombytes(totals.tobytes())
            best = int(counts.max())
            if best > entry.example[0]:
                entry.example = (best, example)

    def _close_columns(self) -> None:
        if self.open_columns is not None:
            self.open_columns.close_all()

    def add(self, row: SpanRow) -> None:
        """Count one span row."""
        attributes = row["attributes"]
        statement = statement_of(attributes)
        self.add_span(
            row["trace_id"],
            row["span_id"],
            row["parent_span_id"],
            row_key(row, statement),
            row["start_ns"],
            row["duration_ns"],
            row["instance"],
            row["is_error"],
            statement,
            extras_of(row["events"], attributes, row["is_error"]),
            labels_of(attributes),
        )

    def add_many(self, rows: Iterable[SpanRow]) -> None:
        """Count every row of ``rows``."""
        add = self.add
        for row in rows:
            add(row)

    def add_span(
        self,
        trace_id: str,
        span_id: str,
        parent: str | None,
        key: GroupKey,
        start_ns: int,
        duration_ns: int,
        instance: str | None,
        is_error: bool,
        statement: str | None,
        extras: Extras | None,
        labels: Labels = (),
    ) -> None:
        """Count one span given as the fields the answer needs (what :meth:`add` reads).

        Args:
            trace_id: the span's trace.
            span_id: the span's id.
            parent: its parent span's id, or None for a root span.
            key: (name, kind, method, route, resource): :func:`row_key`.
            start_ns: the span's start.
            duration_ns: the span's duration.
            instance: ``service.instance.id`` (else ``host.name``) or None.
            is_error: whether the span's status is ERROR.
            statement: the normalised DB statement (:func:`~feedbot.spans.semconv.statement_of`).
            extras: exceptions and code location (:func:`~feedbot.spans.semconv.extras_of`).
            labels: its low-cardinality attribute values (:func:`~feedbot.spans.labels.labels_of`).
        """
        # The hot path of `feedbot report --traces`: inlined, one dict look-up per table.
        if not self.seen.fresh(trace_id, span_id):
            return
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = self._group(key)
        group.count += 1
        if start_ns < self._low:
            self._low = start_ns
        if start_ns > self._high:
            self._high = start_ns
        # A negative duration marks a span without an end time: counted, but never timed.
        duration_ms = max(duration_ns, 0) / 1e6
        if duration_ns < 0:
            group.untimed += 1
        else:
            group.durations.append(duration_ms)
            index = group.instance_ids.get(instance)
            if index is None:
                index = group.instance_ids[instance] = len(group.instance_ids)
            group.instances.append(index)
            group.errored.append(is_error)
            group.labels.add(labels)
            group.starts.append(start_ns)
        if self._warmup_ns and instance is not None:
            first = self._first.get(instance)
            if first is None or start_ns < first:
                self._first[instance] = start_ns
        if is_error:
            group.errors += 1
        if extras is not None:
            group.add_extras(extras, trace_id)
        trace = self._open.get(trace_id)
        if trace is None:
            trace = self._open[trace_id] = _Trace(self._hold > 0)
            (self._held if trace.held else self._opened).append(trace_id)
        trace.spans[span_id] = group.index
        trace.size += 1
        trace.path_ids.append(span_id)
        trace.path_parents.append(parent)
        trace.path_groups.append(group.index)
        trace.path_times.append(start_ns)
        trace.path_times.append(span_end(start_ns, duration_ms))
        trace.path_instances.append(instance)
        if parent is None:
            group.callers[ROOT] = group.callers.get(ROOT, 0) + 1
        else:
            trace.parents.append(parent)
            trace.children.append(group.index)
        if statement:
            db_key = (parent or "", statement)
            trace.db[db_key] = trace.db.get(db_key, 0) + 1
            trace.db_ms[db_key] = trace.db_ms.get(db_key, 0.0) + duration_ms
        self._hold -= 1
        if not trace.held:
            self._open_spans += 1
            if self._open_spans > self._max_open:
                self._close_oldest()

    def result(
        self, *, sampled_traces: int | None = None, notes: tuple[str, ...] = ()
    ) -> ReleaseData:
        """Close every open trace and return what was seen, groups largest first.

        Args:
            sampled_traces: set when the rows came from a sample of traces.
            notes: remarks for the report (passed through).
        """
        self._close_columns()
        # Held traces were seen first, so closing them first keeps first-seen order.
        self._opened.extendleft(reversed(self._held))
        self._held.clear()
        while self._opened:
            self._close_oldest()
        warmup = (self._warmup_ns, self._first) if self._warmup_ns else None
        labels = [(t.name, t.kind) for t in self._indexed]
        groups = sorted(
            (
                replace(
                    group.stats(warmup),
                    critical_path=self.paths.stats(group.index, labels, warmup),
                )
                for group in self._by_label.values()
            ),
            key=lambda s: (-s.count, s.name, s.kind),
        )
        repeats = [
            RepeatedStatement(
                parent=parent,
                statement=statement,
                repeats=np.frombuffer(r.repeats, dtype=np.int32).copy(),
                total_ms=np.frombuffer(r.total_ms, dtype=np.float64).copy(),
                example_trace_id=r.example[1],
            )
            for (parent, statement), r in sorted(self._repeats.items())
        ]
        traces = _distinct(np.frombuffer(self._closed, dtype=np.int64))
        return ReleaseData(
            groups=groups,
            repeats=repeats,
            traces=traces,
            sampled_traces=sampled_traces,
            notes=notes + self._cap_note() + self._odd_notes(),
            observed=observed_range(*self.observed_ns()),
        )

    def observed_ns(self) -> tuple[int | None, int | None]:
        """The first and last span start counted so far, in ns (None, None before any)."""
        if self._high < self._low:
            return None, None
        return self._low, self._high

    def _odd_notes(self) -> tuple[str, ...]:
        """What was counted differently from how it arrived: repeats, spans never ended."""
        notes = []
        if self.seen.duplicates:
            notes.append(
                f"{self.seen.duplicates} spans arrived again (same trace id and span id) and "
                "were counted once."
            )
        untimed = sum(g.untimed for g in self._indexed)
        if untimed:
            notes.append(
                f"{untimed} spans had no end time: counted as spans and errors, left out of "
                "latency (not taken as 0 ms)."
            )
        return tuple(notes)

    def _cap_note(self) -> tuple[str, ...]:
        if not self._folded:
            return ()
        return (
            f"More than {MAX_RESOURCE_GROUPS} distinct DB statements or URL paths: "
            f"{self._folded} more are counted as "
            f'"METHOD {OTHER_PATHS}" or "{OTHER_STATEMENTS}".',
        )

    def absorb(self, later: Aggregator) -> None:
        """Add in what ``later`` counted, as if its spans had come after this one's.

        Their open (and held) traces join this one's open traces of the same id, so a trace
        cut in two by a split of the input is linked as a whole at :meth:`result`. ``later``
        is not usable afterwards.
        """
        self._close_columns()
        later._close_columns()
        indexes = [self._merge_group(group, later._resources) for group in later._indexed]
        for key, group in later._groups.items():
            self._groups.setdefault(key, self._indexed[indexes[group.index]])
        self.seen.absorb(later.seen)
        for instance, first in later._first.items():
            if first < self._first.get(instance, first + 1):
                self._first[instance] = first
        self._closed.extend(later._closed)
        if later._high >= later._low:
            self.observe(later._low, later._high)
        self._folded += later._folded
        for statement_key, theirs in later._repeats.items():
            mine = self._repeats.setdefault(statement_key, _Repeats())
            mine.repeats.extend(theirs.repeats)
            mine.total_ms.extend(theirs.total_ms)
            if theirs.example[0] > mine.example[0]:
                mine.example = theirs.example
        self.paths.absorb(later.paths, indexes)
        for trace_id in (*later._held, *later._opened):
            self._join(trace_id, later._open[trace_id], indexes)

    def _merge_group(self, theirs: GroupTally, resources: dict[str, str]) -> int:
        """Fold another aggregator's group into this one's of the same label; its index.

        ``resources`` is the other aggregator's: its group names taken from a resource.
        """
        name = theirs.name
        if name in resources:
            name = self._resource_label(name, resources[name])
        mine = self._by_label.get((name, theirs.kind))
        if mine is None:
            mine = GroupTally(name=name, kind=theirs.kind, index=len(self._indexed))
            self._by_label[(name, theirs.kind)] = mine
            self._indexed.append(mine)
        mine.merge(theirs)
        return mine.index

    def _join(self, trace_id: str, theirs: _Trace, indexes: list[int]) -> None:
        mine = self._open.get(trace_id)
        if mine is None:
            mine = self._open[trace_id] = _Trace()
            self._opened.append(trace_id)
        self._open_spans += theirs.size
        mine.size += theirs.size
        mine.spans.update((span, indexes[group]) for span, group in theirs.spans.items())
        mine.parents += theirs.parents
        mine.children.extend(indexes[group] for group in theirs.children)
        mine.path_ids += theirs.path_ids
        mine.path_parents += theirs.path_parents
        mine.path_groups.extend(indexes[group] for group in theirs.path_groups)
        mine.path_times.extend(theirs.path_times)
        mine.path_instances += theirs.path_instances
        for key, count in theirs.db.items():
            mine.db[key] = mine.db.get(key, 0) + count
            mine.db_ms[key] = mine.db_ms.get(key, 0.0) + theirs.db_ms[key]

    def _group(self, key: GroupKey) -> GroupTally:
        name, kind, method, route, resource = key
        reported = (label(name, kind, method, route, resource), kind)
        if resource is not None and reported[0] == resource:
            other = f"{method} {OTHER_PATHS}" if method else OTHER_STATEMENTS
            event = asgi_event(resource) if kind == "INTERNAL" else None
            if event is not None:  # "GET /covers/{id} http send": an ASGI event's span
                other = f"{event[0]} {OTHER_PATHS} {event[1]}"
            reported = (self._resource_label(resource, other), kind)
        group = self._by_label.get(reported)
        if group is None:
            group = GroupTally(name=reported[0], kind=kind, index=len(self._indexed))
            self._by_label[reported] = group
            self._indexed.append(group)
        return group

    def _resource_label(self, resource: str, other: str) -> str:
        """``resource`` while under :data:`MAX_RESOURCE_GROUPS` distinct ones, else ``other``."""
        if resource in self._resources:
            return resource
        if len(self._resources) < MAX_RESOURCE_GROUPS:
            self._resources[resource] = other
            return resource
        self._folded += 1
        return other

    def _close_oldest(self) -> None:
        trace_id = self._opened.popleft()
        trace = self._open.pop(trace_id)
        if not trace.held:
            self._open_spans -= trace.size
        # Python's string hash is 64 bits and stable within a process: enough to count
        # distinct traces (a trace closed early and seen again is still counted once).
        self._closed.append(hash(trace_id))
        groups, spans = self._indexed, trace.spans
        for parent, child in zip(trace.parents, trace.children, strict=True):
            caller = spans.get(parent)
            group = groups[child]
            name = REMOTE if caller is None else groups[caller].name
            group.callers[name] = group.callers.get(name, 0) + 1
        if trace.db:
            self._fold_repeats(trace_id, trace)
        self.paths.close(*trace.path_rows())

    def _fold_repeats(self, trace_id: str, trace: _Trace) -> None:
        """Per (parent group, statement): the worst parent span of this trace."""
        worst: dict[tuple[str, str], tuple[int, float]] = {}
        for (parent, statement), count in trace.db.items():
            total = trace.db_ms[(parent, statement)]
            if count < 2:
                continue
            caller = trace.spans.get(parent) if parent else None
            if caller is not None:
                name = self._indexed[caller].name
            else:
                name = REMOTE if parent else ROOT
            seen = worst.get((name, statement))
            if seen is None or count > seen[0]:
                worst[(name, statement)] = (count, total)
        for key, (count, total) in worst.items():
            entry = self._repeats.setdefault(key, _Repeats())
            entry.repeats.append(count)
            entry.total_ms.append(total)
            if count > entry.example[0]:
                entry.example = (count, trace_id)


def aggregate(
    rows: Iterable[SpanRow],
    query: SpanQuery | None = None,
    *,
    sampled_traces: int | None = None,
    notes: tuple[str, ...] = (),
) -> ReleaseData:
    """Aggregate ``rows`` in one pass, keeping only those that match ``query`` when given.

    Args:
        rows: span rows in any order.
        query: the filter (:func:`matches`) and warm-up; None keeps every row.
        sampled_traces: passed to :meth:`Aggregator.result`, as is ``notes``.
        notes: remarks for the report.
    """
    aggregator = Aggregator(warmup=query.warmup if query is not None else timedelta(0))
    if query is not None:
        rows = filter(matcher(query), rows)
    aggregator.add_many(rows)
    return aggregator.result(sampled_traces=sampled_traces, notes=notes)


def _distinct(values: np.ndarray[Any, np.dtype[np.int64]]) -> int:
    """``len(np.unique(values))`` by a plain sort: numpy's hashed unique took 30 times as long
    on a million spans' 200,000 distinct trace hashes, at the end of the read, on one thread."""
    ordered = np.sort(values)
    return int(len(ordered) and 1 + np.count_nonzero(ordered[1:] != ordered[:-1]))
