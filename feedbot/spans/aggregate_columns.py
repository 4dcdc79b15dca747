"""Folding :class:`~feedbot.spans.columns.SpanColumns` into an aggregator; pure.

What :meth:`Aggregator.add_span` does one span at a time, done a block at a time with numpy:
group counts, durations, instances, errors, exceptions and code locations at once; callers,
N+1 counters and critical paths (:mod:`feedbot.spans.critical`) when traces close. Open traces
are held as columns (:class:`OpenTraces`): after each block, the traces not seen among the last
``max_open_spans`` spans close, oldest first, and :meth:`Aggregator.result` closes the rest.
Traces whose spans lie closer together than that (every file the Collector writes) are linked
exactly as :meth:`Aggregator.add_span` links them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from feedbot.spans.aggregate import MAX_NS, REMOTE, ROOT, Aggregator
from feedbot.spans.columns import SpanColumns
from feedbot.spans.dedupe import span_keys
from feedbot.spans.group import MAX_CODE_LOCATIONS, GroupTally

_ROOT, _REMOTE = -1, -2
#: Open spans as columns: trace id, span id, parent id, group, statement code, milliseconds;
#: then start and end (ns) and instance (a code into :attr:`OpenTraces.instances`), for the
#: critical paths.
_Part = tuple[
    pa.Array,
    pa.Array,
    pa.Array,
    npt.NDArray[np.intp],
    npt.NDArray[np.intp],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.intp],
]


def fold(aggregator: Aggregator, columns: SpanColumns) -> None:
    """Count ``columns`` into ``aggregator``, as :meth:`Aggregator.add_span` of each span would."""
    fresh = aggregator.seen.fresh_rows(span_keys(columns.trace_ids, columns.span_ids))
    if not fresh.all():
        columns = columns.select(np.flatnonzero(fresh))
    if not len(columns):
        return  # a block sent again whole (an exporter's retry): nothing new to count
    # Only the keys of spans still here make groups (a block's repeats may have been its only).
    indexes = np.full(len(columns.keys), -1, np.intp)
    for code in np.unique(columns.key_codes).tolist():
        indexes[code] = aggregator.tally(columns.keys[code]).index
    group = indexes[columns.key_codes]
    indexed = aggregator.tallies
    _count(indexed, group, columns)
    if len(columns):
        aggregator.observe(int(columns.starts.min()), int(columns.starts.max()))
    if aggregator.warmup_ns:
        _first_starts(aggregator, columns)
    trace_ids = columns.trace_ids
    for row, exceptions in columns.exceptions:
        indexed[group[row]].add_extras((exceptions, None), trace_ids[row].as_py())
    _code(indexed, group, columns)
    traces = aggregator.open_columns
    if not isinstance(traces, OpenTraces):
        traces = OpenTraces(aggregator)
        aggregator.open_columns = traces
    traces.add(columns, group)


def _segments(group: npt.NDArray[np.intp]) -> list[tuple[int, npt.NDArray[np.intp]]]:
    """(group index, its rows in order) per group present."""
    order = np.argsort(group, kind="stable")
    ordered = group[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    return [(int(ordered[rows[0]]), order[rows]) for rows in np.split(np.arange(len(order)), cuts)]


def _count(indexed: list[GroupTally], group: npt.NDArray[np.intp], columns: SpanColumns) -> None:
    for index, rows in _segments(group):
        tally = indexed[index]
        tally.count += len(rows)
        tally.errors += int(np.count_nonzero(columns.errors[rows]))
        timed = columns.durations_ms[rows] >= 0  # a negative duration: no end time
        if not timed.all():
            tally.untimed += len(rows) - int(np.count_nonzero(timed))
            rows = rows[timed]
        tally.durations.frombytes(columns.durations_ms[rows].tobytes())
        codes = columns.instance_codes[rows]
        unique, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        ids = tally.instance_ids
        local = np.zeros(len(unique), np.int32)
        for u in np.argsort(first, kind="stable").tolist():
            local[u] = ids.setdefault(columns.instances[unique[u]], len(ids))
        tally.instances.frombytes(local[inverse].tobytes())
        tally.errored.frombytes(columns.errors[rows].astype(np.int8).tobytes())
        _labels(tally, columns, rows)
        tally.starts.frombytes(columns.starts[rows].tobytes())


def _labels(tally: GroupTally, columns: SpanColumns, rows: npt.NDArray[np.intp]) -> None:
    """Each row's label set, interned in first-seen order (as one span at a time would)."""
    unique, first, inverse = np.unique(
        columns.label_codes[rows], return_index=True, return_inverse=True
    )
    local = np.zeros(len(unique), np.int32)
    for u in np.argsort(first, kind="stable").tolist():
        local[u] = tally.labels.intern(columns.label_sets[unique[u]])
    tally.labels.codes.frombytes(local[np.asarray(inverse).reshape(-1)].tobytes())


def _first_starts(aggregator: Aggregator, columns: SpanColumns) -> None:
    codes = columns.instance_codes
    for code in np.unique(codes).tolist():
        start = int(columns.starts[codes == code].min())
        aggregator.first_start(columns.instances[code], start)


def _code(indexed: list[GroupTally], group: npt.NDArray[np.intp], columns: SpanColumns) -> None:
    """Code locations per group, counted per distinct location in first-seen order."""
    rows = np.flatnonzero(columns.location_codes >= 0)
    if not len(rows):
        return
    pairs = group[rows] * len(columns.locations) + columns.location_codes[rows]
    unique, first, counts = np.unique(pairs, return_index=True, return_counts=True)
    for u in np.argsort(first, kind="stable").tolist():
        tally, location = divmod(int(unique[u]), len(columns.locations))
        table = indexed[tally].code
        where = columns.locations[location]
        if where in table or len(table) < MAX_CODE_LOCATIONS:
            table[where] = table.get(where, 0) + int(counts[u])


class OpenTraces:
    """The spans of one aggregator's open traces, as columns, in arrival order."""

    def __init__(self, aggregator: Aggregator) -> None:
        self._aggregator = aggregator
        self._statements: dict[str, int] = {}
        self._instances: dict[str | None, int] = {}
        self.instances: list[str | None] = []  # Each instance held, by code.
        self._parts: list[_Part] = []
        self._size = 0
        # Each held span's trace as a code into the distinct trace ids held (kept across
        # closes, so that a close hashes only the block's ids, not every held span's).
        self._traces: pa.Array = pa.array([], pa.string())
        self._codes: list[npt.NDArray[np.intp]] = []

    def add(self, columns: SpanColumns, group: npt.NDArray[np.intp]) -> None:
        """Hold a block's spans; close the traces not seen in the last ``max_open_spans``."""
        known = self._statements
        codes = [known.setdefault(s, len(known)) for s in columns.statements]
        statement = np.array([*codes, -1], np.intp)[columns.statement_codes]  # -1 stays -1
        part = (columns.trace_ids, columns.span_ids, columns.parents, group, statement)
        durations = np.maximum(columns.durations_ms, 0.0)  # no end time (-1): no time added
        ends = span_ends(columns.starts, durations)
        seen = self._instances
        for name in columns.instances:
            if name not in seen:
                seen[name] = len(self.instances)
                self.instances.append(name)
        own = np.array([seen[name] for name in columns.instances], np.intp)
        instances = own[columns.instance_codes] if len(own) else columns.instance_codes
        self._parts.append((*part, durations, columns.starts, ends, instances))
        self._codes.append(self._trace_codes(columns.trace_ids))
        self._size += len(columns)
        if self._size > self._aggregator.max_open_spans:
            self._close(self._aggregator.max_open_spans)

    def close_all(self) -> None:
        """Close every trace held."""
        if self._size:
            self._close(0)

    def _trace_codes(self, trace_ids: pa.Array) -> npt.NDArray[np.intp]:
        """The codes of a block's trace ids, adding the ids not held yet."""
        if trace_ids.type != pa.string():
            trace_ids = trace_ids.cast(pa.string())
        found = pc.index_in(trace_ids, value_set=self._traces)
        codes = np.asarray(found.fill_null(-1).to_numpy(), np.intp)
        new = codes < 0
        if new.any():
            fresh = pc.dictionary_encode(trace_ids.filter(pa.array(new)))
            codes[new] = fresh.indices.to_numpy() + len(self._traces)
            self._traces = pa.concat_arrays([self._traces, fresh.dictionary])
        return codes

    def _close(self, keep: int) -> None:
        """Close the traces not seen in the last ``keep`` held spans (all when 0).

        The held spans stay in the parts they came in: only the closing ones are joined, and
        the trace ids held are renumbered without a sort, so a close costs what closes, not
        what stays held (a Collector file closes a block's worth every block).
        """
        codes = np.concatenate(self._codes)
        closing = np.ones(len(codes), np.bool_)
        if keep:
            last = np.zeros(len(self._traces), np.intp)
            last[codes] = np.arange(len(codes))
            closing = last[codes] < len(codes) - keep
        # Spans of a trace arrive together, so the closing ones are usually a prefix: slice.
        cut = int(np.argmin(closing)) if not closing.all() else len(closing)
        parts = self._parts
        if closing[cut:].any():
            whole = _join(parts)
            rows: slice | npt.NDArray[np.intp] = np.flatnonzero(closing)
            rest: slice | npt.NDArray[np.intp] = np.flatnonzero(~closing)
            done: _Part | None = _rows(whole, rows)
            parts = [_rows(whole, rest)]
        else:
            rest = slice(cut, None)
            before, parts = _split(parts, cut)
            done = _join(before) if before else None
        self._parts, self._size = parts, len(codes[rest])
        self._codes = [codes[rest]] if self._size else []
        self._renumber()
        if done is not None and len(done[3]):
            self._fold(done)

    def _renumber(self) -> None:
        """Forget the trace ids no held span has; codes keep their order (no sort)."""
        if not self._size:
            self._traces = pa.array([], pa.string())
            return
        codes = self._codes[0]
        present = np.zeros(len(self._traces), np.bool_)
        present[codes] = True
        if present.all():
            return
        renumbered = np.cumsum(present) - 1
        self._codes = [np.asarray(renumbered[codes], np.intp)]
        self._traces = self._traces.filter(pa.array(present))

    def _fold(self, done: _Part) -> None:
        trace, span, parent, group, statement, duration, start, end, instance = done
        closed = Closed(trace, span, parent)
        closed.fold(self._aggregator, group, statement, duration)
        named = _Named(self.instances, instance)
        self._aggregator.paths.close_arrays(closed.parent_row, group, start, end, named)
        self._aggregator.fold_statements(list(self._statements), closed.repeats)


class _Named(Sequence[str | None]):
    """Instances by row, from their codes (only the few spans a sample keeps are looked up)."""

    def __init__(self, names: list[str | None], codes: npt.NDArray[np.intp]) -> None:
        self._names, self._codes = names, codes

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, row: int) -> str | None:  # type: ignore[override]
        return self._names[int(self._codes[row])]


def _join(parts: list[_Part]) -> _Part:
    """The parts' spans as one part."""
    if len(parts) == 1:
        return parts[0]
    strings = tuple(pa.concat_arrays([p[i] for p in parts]) for i in range(3))
    arrays = tuple(np.concatenate([p[i] for p in parts]) for i in range(3, 9))
    return cast("_Part", strings + arrays)


def _rows(part: _Part, rows: slice | npt.NDArray[np.intp]) -> _Part:
    """The spans of ``part`` at ``rows``."""
    strings = tuple(_take(part[i], rows) for i in range(3))
    return cast("_Part", strings + tuple(part[i][rows] for i in range(3, 9)))


def _split(parts: list[_Part], cut: int) -> tuple[list[_Part], list[_Part]]:
    """The parts' first ``cut`` spans, and the rest, without copying (slices)."""
    before: list[_Part] = []
    after: list[_Part] = []
    seen = 0
    for part in parts:
        size = len(part[3])
        if seen + size <= cut:
            before.append(part)
        elif seen >= cut:
            after.append(part)
        else:
            before.append(_rows(part, slice(0, cut - seen)))
            after.append(_rows(part, slice(cut - seen, None)))
        seen += size
    return before, after


def span_ends(
    starts: npt.NDArray[np.int64], durations_ms: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """:func:`~feedbot.spans.aggregate.span_end` of each span."""
    cap = MAX_NS - starts
    ns = np.rint(durations_ms * 1e6)
    over = ns >= 2.0**62
    exact = np.where(over, 0.0, np.maximum(ns, 0.0)).astype(np.int64)
    return starts + np.where(over, cap, np.minimum(exact, cap))


def _take(values: pa.Array, rows: slice | npt.NDArray[np.intp]) -> pa.Array:
    if isinstance(rows, slice):
        return values[rows]
    return values.take(pa.array(rows))


class Closed:
    """The spans of traces that closed: their callers and repeated statements."""

    def __init__(self, trace: pa.Array, span: pa.Array, parent: pa.Array) -> None:
        encoded = pc.dictionary_encode(trace)
        self.trace_ids: list[str] = encoded.dictionary.to_pylist()
        self.traces = encoded.indices.to_numpy().astype(np.intp)
        self.parent = parent
        # The parent's row in the same trace (the last span of that id), else -1.
        own = pc.binary_join_element_wise(trace, span, "")[::-1]
        found = pc.index_in(pc.binary_join_element_wise(trace, parent, ""), value_set=own)
        back = found.fill_null(-1).to_numpy()
        self.parent_row = np.where(back >= 0, len(back) - 1 - back, -1)
        self.repeats: list[
            tuple[str, int, npt.NDArray[np.int32], npt.NDArray[np.float64], str]
        ] = []

    def fold(
        self,
        aggregator: Aggregator,
        group: npt.NDArray[np.intp],
        statement: npt.NDArray[np.intp],
        duration: npt.NDArray[np.float64],
    ) -> None:
        """Count the traces, each span's caller, and each trace's worst repeated statements."""
        aggregator.add_closed(map(hash, self.trace_ids))
        rooted = pc.is_valid(self.parent).to_numpy(zero_copy_only=False)
        caller = np.where(self.parent_row >= 0, group[self.parent_row], _REMOTE)
        caller = np.where(rooted, caller, _ROOT)
        indexed = aggregator.tallies
        names = {_ROOT: ROOT, _REMOTE: REMOTE}
        pairs = group * (len(indexed) + 2) + (caller + 2)
        unique, counts = np.unique(pairs, return_counts=True)
        for pair, count in zip(unique.tolist(), counts.tolist(), strict=True):
            child, code = divmod(pair, len(indexed) + 2)
            name = names.get(code - 2) or indexed[code - 2].name
            callers = indexed[child].callers
            callers[name] = callers.get(name, 0) + count
        self._repeated(indexed, caller, statement, duration)

    def _repeated(
        self,
        indexed: list[GroupTally],
        caller: npt.NDArray[np.intp],
        statement: npt.NDArray[np.intp],
        duration: npt.NDArray[np.float64],
    ) -> None:
        """Per trace and (caller name, statement), the parent span repeating it most."""
        rows = np.flatnonzero(statement >= 0)
        if not len(rows):
            return
        parents = pc.dictionary_encode(self.parent.take(pa.array(rows)))
        parent = parents.indices.fill_null(-1).to_numpy() + 1
        unique, first, inverse, counts = _unique_rows(self.traces[rows], parent, statement[rows])
        totals = np.bincount(inverse, weights=duration[rows])
        repeated = np.flatnonzero(counts >= 2)
        if not len(repeated):
            return
        name_of = {_ROOT: ROOT, _REMOTE: REMOTE}
        by_name: dict[str, int] = {}
        # Each distinct caller's name numbered in first-seen order, as a loop over the rows
        # would number them: once per caller, not per row.
        callers, seen_at, back = np.unique(
            caller[rows[first[repeated]]], return_index=True, return_inverse=True
        )
        per_caller = np.empty(len(callers), np.intp)
        for u in np.argsort(seen_at, kind="stable").tolist():
            c = int(callers[u])
            per_caller[u] = by_name.setdefault(name_of.get(c) or indexed[c].name, len(by_name))
        name = per_caller[np.asarray(back).reshape(-1)]
        trace, stmt = unique[repeated, 0], unique[repeated, 2]
        count, total, seen = counts[repeated], totals[repeated], first[repeated]
        # Worst per (trace, name, statement): most repeats, the first seen on a tie.
        order = np.lexsort((seen, -count, stmt, name, trace))
        head = np.ones(len(order), np.bool_)
        group_key = np.stack([trace[order], name[order], stmt[order]], axis=1)
        head[1:] = (group_key[1:] != group_key[:-1]).any(axis=1)
        worst = order[head]
        # Per (name, statement), in trace order.
        worst = worst[np.lexsort((trace[worst], stmt[worst], name[worst]))]
        labels = list(by_name)
        cuts = np.flatnonzero(np.diff(name[worst]) | np.diff(stmt[worst])) + 1
        for part in np.split(worst, cuts):
            best = int(part[np.argmax(count[part])])
            self.repeats.append(
                (
                    labels[int(name[part[0]])],
                    int(stmt[part[0]]),
                    count[part].astype(np.int32),
                    total[part].astype(np.float64),
                    self.trace_ids[int(trace[best])],
                )
            )


def _unique_rows(
    *columns: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """``np.unique(rows, axis=0)`` of non-negative columns: rows, first index, inverse, counts.

    Packed into one integer per row when the product of the columns' ranges allows (ten
    times faster than sorting rows).
    """
    sizes = [int(c.max()) + 1 for c in columns]
    if float(np.prod(np.array(sizes, np.float64))) >= 2**62:
        rows = np.stack(columns, axis=1)
        unique, first, inverse, counts = np.unique(
            rows, axis=0, return_index=True, return_inverse=True, return_counts=True
        )
        return unique, first, inverse.reshape(-1), counts
    packed = np.zeros(len(columns[0]), np.int64)
    for column, size in zip(columns, sizes, strict=True):
        packed = packed * size + column
    keys, first, inverse, counts = np.unique(
        packed, return_index=True, return_inverse=True, return_counts=True
    )
    unpacked = []
    for size in reversed(sizes):
        keys, part = np.divmod(keys, size)
        unpacked.append(part)
    return np.stack(unpacked[::-1], axis=1), first, inverse, counts
