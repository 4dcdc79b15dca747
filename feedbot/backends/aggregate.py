"""Streaming spans into :class:`~feedbot.backends.base.ReleaseData`; pure, no I/O.

Backends that cannot aggregate on their side (the embedded store, OTLP files, trace-by-id APIs)
feed span rows to an :class:`Aggregator` one at a time (:meth:`Aggregator.add`), or, where
building a row per span would cost more than the counting, the few fields the answer needs
(:meth:`Aggregator.add_span`, used by :mod:`feedbot.backends.otlp_scan`). What a span's
attributes mean is read by :mod:`feedbot.backends.semconv`. Memory is what the answer needs (a
duration and an instance index per span, bounded exception and code tables per group) plus the
spans of traces still open: a trace's caller links and N+1 counters are resolved when it closes,
which is at :meth:`Aggregator.result`, or earlier when more than ``max_open_spans`` spans are held
(the trace seen first closes first; a parent arriving after its trace closed counts as remote).
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from feedbot.backends.base import (
    CodeSeen,
    ExceptionSeen,
    ReleaseData,
    RepeatedStatement,
    SpanGroupStats,
    SpanQuery,
)
from feedbot.backends.semconv import CodeLocation, Extras, extras_of, label, statement_of
from feedbot.store.spans import SpanRow

ROOT = "(root)"
REMOTE = "(remote)"
UNKNOWN_INSTANCE = "(unknown)"
#: Distinct exception types and code locations kept per group; the rest are not itemised.
MAX_EXCEPTION_TYPES = 20
MAX_CODE_LOCATIONS = 50
MAX_OPEN_SPANS = 100_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: (span name, kind, method, route): what a span is grouped by before labelling.
GroupKey = tuple[str, str, str | None, str | None]


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


def group_label(row: SpanRow) -> str:
    """The group label of a span row (see :func:`~feedbot.backends.semconv.label`)."""
    return label(row["name"], row["kind"], row["method"], row["route"])


@dataclass(eq=False)
class _Group:
    name: str
    kind: str
    index: int
    count: int = 0
    errors: int = 0
    durations: array[float] = field(default_factory=lambda: array("d"))
    instances: array[int] = field(default_factory=lambda: array("i"))
    instance_ids: dict[str | None, int] = field(default_factory=dict)
    exceptions: dict[str, list[Any]] = field(default_factory=dict)
    code: dict[CodeLocation, int] = field(default_factory=dict)
    callers: dict[str, int] = field(default_factory=dict)

    def add(self, duration_ms: float, instance: str | None, is_error: bool) -> None:
        self.count += 1
        self.durations.append(duration_ms)
        index = self.instance_ids.get(instance)
        if index is None:
            index = self.instance_ids[instance] = len(self.instance_ids)
        self.instances.append(index)
        if is_error:
            self.errors += 1

    def add_extras(self, extras: Extras, trace_id: str) -> None:
        exceptions, location = extras
        for kind, message in exceptions:
            entry = self.exceptions.get(kind)
            if entry is not None:
                entry[0] += 1
            elif len(self.exceptions) < MAX_EXCEPTION_TYPES:
                self.exceptions[kind] = [1, message, trace_id]
        if location is not None and (location in self.code or len(self.code) < MAX_CODE_LOCATIONS):
            self.code[location] = self.code.get(location, 0) + 1

    def stats(self) -> SpanGroupStats:
        named = list(self.instance_ids) != [None]  # No span said: both stay empty.
        names = tuple(UNKNOWN_INSTANCE if k is None else k for k in self.instance_ids)
        instances = np.frombuffer(self.instances, dtype=np.int32)[: None if named else 0]
        return SpanGroupStats(
            name=self.name,
            kind=self.kind,
            count=self.count,
            errors=self.errors,
            durations_ms=np.frombuffer(self.durations, dtype=np.float64).copy(),
            instances=instances.copy(),
            instance_names=names if named else (),
            exceptions=tuple(
                ExceptionSeen(type=k, count=n, message=m, example_trace_id=t)
                for k, (n, m, t) in sorted(self.exceptions.items(), key=lambda i: (-i[1][0], i[0]))
            ),
            code=tuple(
                CodeSeen(function=f, filepath=p, lineno=n, count=c)
                for (f, p, n), c in sorted(self.code.items(), key=_code_order)
            ),
            callers=tuple(sorted(self.callers.items(), key=lambda i: (-i[1], i[0]))),
        )


def _code_order(item: tuple[CodeLocation, int]) -> tuple[Any, ...]:
    (function, path, line), count = item
    return (-count, function or "", path or "", line or 0)


class _Trace:
    """The open part of one trace: group index per span id, caller links, DB statement counts.

    Group indexes rather than groups, ints and floats rather than lists, so that the tables
    hold no objects the cyclic garbage collector has to visit: with a hundred thousand open
    spans those visits cost more than the counting.
    """

    __slots__ = ("children", "db", "db_ms", "parents", "size", "spans")

    def __init__(self) -> None:
        self.size = 0
        self.spans: dict[str, int] = {}
        self.parents: list[str] = []  # a linked span's parent id ...
        self.children: array[int] = array("i")  # ... and the linked span's group index
        # Per (parent span id, statement): spans and their summed milliseconds. Two flat
        # dicts, which the collector stops tracking once their tuple keys are untracked.
        self.db: dict[tuple[str, str], int] = {}
        self.db_ms: dict[tuple[str, str], float] = {}


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
    """

    def __init__(self, *, max_open_spans: int = MAX_OPEN_SPANS) -> None:
        self._max_open = max_open_spans
        self._groups: dict[GroupKey, _Group] = {}
        self._by_label: dict[tuple[str, str], _Group] = {}
        self._indexed: list[_Group] = []
        self._open: dict[str, _Trace] = {}
        self._opened: deque[str] = deque()
        self._open_spans = 0
        self._closed: array[int] = array("q")
        self._repeats: dict[tuple[str, str], _Repeats] = {}

    def add(self, row: SpanRow) -> None:
        """Count one span row."""
        attributes = row["attributes"]
        self.add_span(
            (row["trace_id"], row["span_id"], row["parent_span_id"]),
            (row["name"], row["kind"], row["method"], row["route"]),
            row["duration_ns"],
            row["instance"],
            row["is_error"],
            statement_of(attributes),
            extras_of(row["events"], attributes, row["is_error"]),
        )

    def add_many(self, rows: Iterable[SpanRow]) -> None:
        """Count every row of ``rows``."""
        add = self.add
        for row in rows:
            add(row)

    def add_span(
        self,
        ids: tuple[str, str, str | None],
        key: GroupKey,
        duration_ns: int,
        instance: str | None,
        is_error: bool,
        statement: str | None,
        extras: Extras | None,
    ) -> None:
        """Count one span given as the fields the answer needs (what :meth:`add` reads).

        Args:
            ids: (trace id, span id, parent span id or None).
            key: (name, kind, method, route), as in a span row.
            duration_ns: the span's duration.
            instance: ``service.instance.id`` (else ``host.name``) or None.
            is_error: whether the span's status is ERROR.
            statement: the normalised DB statement (:func:`~feedbot.backends.semconv.statement_of`).
            extras: exceptions and code location (:func:`~feedbot.backends.semconv.extras_of`).
        """
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = self._group(key)
        duration_ms = duration_ns / 1e6
        group.add(duration_ms, instance, is_error)
        if extras is not None:
            group.add_extras(extras, ids[0])
        self._link(ids, group, statement, duration_ms)
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
        while self._open:
            self._close_oldest()
        groups = sorted(
            (group.stats() for group in self._by_label.values()),
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
        traces = len(np.unique(np.frombuffer(self._closed, dtype=np.int64)))
        return ReleaseData(
            groups=groups,
            repeats=repeats,
            traces=traces,
            sampled_traces=sampled_traces,
            notes=notes,
        )

    def _group(self, key: GroupKey) -> _Group:
        name, kind, method, route = key
        reported = (label(name, kind, method, route), kind)
        group = self._by_label.get(reported)
        if group is None:
            group = _Group(name=reported[0], kind=kind, index=len(self._indexed))
            self._by_label[reported] = group
            self._indexed.append(group)
        return group

    def _link(
        self,
        ids: tuple[str, str, str | None],
        group: _Group,
        statement: str | None,
        duration_ms: float,
    ) -> None:
        """Remember the span in its open trace: its group, its parent, its DB statement."""
        trace_id, span_id, parent = ids
        trace = self._open.get(trace_id)
        if trace is None:
            trace = self._open[trace_id] = _Trace()
            self._opened.append(trace_id)
        trace.spans[span_id] = group.index
        trace.size += 1
        if parent is None:
            group.callers[ROOT] = group.callers.get(ROOT, 0) + 1
        else:
            trace.parents.append(parent)
            trace.children.append(group.index)
        if statement:
            db_key = (parent or "", statement)
            trace.db[db_key] = trace.db.get(db_key, 0) + 1
            trace.db_ms[db_key] = trace.db_ms.get(db_key, 0.0) + duration_ms

    def _close_oldest(self) -> None:
        trace_id = self._opened.popleft()
        trace = self._open.pop(trace_id)
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
        query: the filter (:func:`matches`); None keeps every row.
        sampled_traces: passed to :meth:`Aggregator.result`, as is ``notes``.
        notes: remarks for the report.
    """
    aggregator = Aggregator()
    if query is not None:
        rows = filter(matcher(query), rows)
    aggregator.add_many(rows)
    return aggregator.result(sampled_traces=sampled_traces, notes=notes)
