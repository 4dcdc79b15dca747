"""Streaming spans into :class:`~feedbot.backends.base.ReleaseData`; pure, no I/O.

Backends that cannot aggregate on their side (the embedded store, OTLP files, trace-by-id APIs)
feed span rows to an :class:`Aggregator` one at a time. Memory is what the answer needs (a
duration and an instance index per span, bounded exception and code tables per group) plus the
spans of traces still open: a trace's caller links and N+1 counters are resolved when it closes,
which is at :meth:`Aggregator.result`, or earlier when more than ``max_open_spans`` spans are held
(the trace seen first closes first; a parent arriving after its trace closed counts as remote).
"""

from __future__ import annotations

import re
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
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
from feedbot.store.spans import SpanRow

ROOT = "(root)"
REMOTE = "(remote)"
UNKNOWN_INSTANCE = "(unknown)"
#: Distinct exception types and code locations kept per group; the rest are not itemised.
MAX_EXCEPTION_TYPES = 20
MAX_CODE_LOCATIONS = 50
MAX_OPEN_SPANS = 100_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CODE_KEYS = frozenset(
    ("code.function.name", "code.function", "code.file.path", "code.filepath")
    + ("code.line.number", "code.lineno")
)


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


def label(name: str, kind: str, method: str | None, route: str | None) -> str:
    """The name a group is reported under: "METHOD route" for routed SERVER spans, else name."""
    if kind == "SERVER" and route:
        return f"{method} {route}" if method else route
    return name


def group_label(row: SpanRow) -> str:
    """The group label of a span row (see :func:`label`)."""
    return label(row["name"], row["kind"], row["method"], row["route"])


_LITERAL = re.compile(
    r"""(?P<str>'(?:[^']|'')*')"""
    r"""|(?P<ident>"(?:[^"]|"")*")"""
    r"""|(?P<num>(?<![\w.$])(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?!\w))"""
    r"""|(?P<param>\$\d+)"""
)
_IN_LIST = re.compile(r"\b(IN) ?\( ?\?(?: ?, ?\?)* ?\)", re.IGNORECASE)


def _literal(match: re.Match[str]) -> str:
    return match.group() if match.lastgroup == "ident" else "?"


@lru_cache(maxsize=4096)
def normalize_statement(sql: str) -> str:
    """A statement with its literals replaced, so repeats with different values compare equal.

    String and numeric literals and ``$n`` parameters become ``?``, ``IN (?, ?, ?)`` becomes
    ``IN (?)``, runs of whitespace become one space. Quoted identifiers and the case of keywords
    are kept.
    """
    out = " ".join(_LITERAL.sub(_literal, sql).split())
    if "?," in out or "? ," in out or "( ?" in out or "? )" in out:
        out = _IN_LIST.sub(lambda m: f"{m.group(1)} (?)", out)
    return out


def code_location(attributes: dict[str, Any]) -> tuple[str | None, str | None, int | None]:
    """(qualified function, file path, line) from either generation of ``code.*`` attributes."""
    function, namespace = attributes.get("code.function.name"), attributes.get("code.namespace")
    if function is None:
        function = attributes.get("code.function")
    if function is not None and namespace and "." not in str(function):
        # Old SDKs: bare function plus namespace; 1.30-era: bare code.function.name likewise.
        function = f"{namespace}.{function}"
    path = attributes.get("code.file.path", attributes.get("code.filepath"))
    line = attributes.get("code.line.number", attributes.get("code.lineno"))
    return (
        None if function is None else str(function),
        None if path is None else str(path),
        line if isinstance(line, int) and not isinstance(line, bool) else None,
    )


@dataclass(eq=False)
class _Group:
    name: str
    kind: str
    count: int = 0
    errors: int = 0
    durations: array[float] = field(default_factory=lambda: array("d"))
    instances: array[int] = field(default_factory=lambda: array("i"))
    instance_ids: dict[str | None, int] = field(default_factory=dict)
    exceptions: dict[str, list[Any]] = field(default_factory=dict)
    code: dict[tuple[str | None, str | None, int | None], int] = field(default_factory=dict)
    callers: dict[str, int] = field(default_factory=dict)

    def add(self, row: SpanRow) -> None:
        self.count += 1
        self.durations.append(row["duration_ns"] / 1e6)
        instance = row["instance"]
        index = self.instance_ids.get(instance)
        if index is None:
            index = self.instance_ids[instance] = len(self.instance_ids)
        self.instances.append(index)
        if row["is_error"]:
            self.errors += 1
        if row["events"] or row["is_error"]:
            self._exceptions(row)
        if not _CODE_KEYS.isdisjoint(row["attributes"]):
            self._code(row["attributes"])

    def _exceptions(self, row: SpanRow) -> None:
        seen = False
        for event in row["events"]:
            name = event.get("name", "")
            if name == "exception" or name.endswith(".exception"):
                attributes = event.get("attributes") or {}
                kind = attributes.get("exception.type") or attributes.get("error.type")
                self._exception(str(kind or "(unknown)"), attributes, row["trace_id"])
                seen = True
        error_type = row["attributes"].get("error.type")
        if not seen and row["is_error"] and error_type:
            # No exception event (semconv 1.40+ moves them to logs): the span's error.type.
            self._exception(str(error_type), {}, row["trace_id"])

    def _exception(self, kind: str, attributes: dict[str, Any], trace_id: str) -> None:
        entry = self.exceptions.get(kind)
        if entry is not None:
            entry[0] += 1
        elif len(self.exceptions) < MAX_EXCEPTION_TYPES:
            message = str(attributes.get("exception.message") or "")
            self.exceptions[kind] = [1, message, trace_id]

    def _code(self, attributes: dict[str, Any]) -> None:
        location = code_location(attributes)
        known = location in self.code or len(self.code) < MAX_CODE_LOCATIONS
        if known and location != (None, None, None):
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


def _code_order(item: tuple[tuple[str | None, str | None, int | None], int]) -> tuple[Any, ...]:
    (function, path, line), count = item
    return (-count, function or "", path or "", line or 0)


class _Trace:
    """The open part of one trace: span groups by id, caller links and DB statement counts."""

    __slots__ = ("db", "links", "size", "spans")

    def __init__(self) -> None:
        self.size = 0
        self.spans: dict[str, _Group] = {}
        self.links: list[tuple[str, _Group]] = []
        self.db: dict[tuple[str, str], list[float]] = {}


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
        self._groups: dict[tuple[str, str, str | None, str | None], _Group] = {}
        self._by_label: dict[tuple[str, str], _Group] = {}
        self._open: dict[str, _Trace] = {}
        self._opened: deque[str] = deque()
        self._open_spans = 0
        self._closed: array[int] = array("q")
        self._repeats: dict[tuple[str, str], _Repeats] = {}

    def add(self, row: SpanRow) -> None:
        """Count one span row."""
        key = (row["name"], row["kind"], row["method"], row["route"])
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = self._group(key)
        group.add(row)
        self._link(row, group)
        self._open_spans += 1
        if self._open_spans > self._max_open:
            self._close_oldest()

    def add_many(self, rows: Iterable[SpanRow]) -> None:
        """Count every row of ``rows``."""
        add = self.add
        for row in rows:
            add(row)

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

    def _group(self, key: tuple[str, str, str | None, str | None]) -> _Group:
        name, kind, method, route = key
        reported = (label(name, kind, method, route), kind)
        group = self._by_label.get(reported)
        if group is None:
            group = self._by_label[reported] = _Group(name=reported[0], kind=kind)
        return group

    def _link(self, row: SpanRow, group: _Group) -> None:
        """Remember the span in its open trace: its group, its parent, its DB statement."""
        trace = self._open.get(row["trace_id"])
        if trace is None:
            trace = self._open[row["trace_id"]] = _Trace()
            self._opened.append(row["trace_id"])
        trace.spans[row["span_id"]] = group
        trace.size += 1
        parent = row["parent_span_id"]
        if parent is None:
            group.callers[ROOT] = group.callers.get(ROOT, 0) + 1
        else:
            trace.links.append((parent, group))
        attributes = row["attributes"]
        statement = attributes.get("db.query.text") or attributes.get("db.statement")
        if statement:
            counter = trace.db.setdefault(
                (parent or "", normalize_statement(str(statement))), [0, 0.0]
            )
            counter[0] += 1
            counter[1] += row["duration_ns"] / 1e6

    def _close_oldest(self) -> None:
        trace_id = self._opened.popleft()
        trace = self._open.pop(trace_id)
        self._open_spans -= trace.size
        # Python's string hash is 64 bits and stable within a process: enough to count
        # distinct traces (a trace closed early and seen again is still counted once).
        self._closed.append(hash(trace_id))
        for parent, group in trace.links:
            caller = trace.spans.get(parent)
            name = REMOTE if caller is None else caller.name
            group.callers[name] = group.callers.get(name, 0) + 1
        if trace.db:
            self._fold_repeats(trace_id, trace)

    def _fold_repeats(self, trace_id: str, trace: _Trace) -> None:
        """Per (parent group, statement): the worst parent span of this trace."""
        worst: dict[tuple[str, str], tuple[int, float]] = {}
        for (parent, statement), (count, total) in trace.db.items():
            if count < 2:
                continue
            caller = trace.spans.get(parent) if parent else None
            name = caller.name if caller is not None else (REMOTE if parent else ROOT)
            seen = worst.get((name, statement))
            if seen is None or count > seen[0]:
                worst[(name, statement)] = (int(count), total)
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
