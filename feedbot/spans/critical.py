"""Critical paths of closed traces, folded per span group; pure, no I/O.

When a trace closes (:class:`~feedbot.spans.aggregate.Aggregator`), each span of it is offered
to its group's sample (:class:`PathRecorder`). For a sampled span, :func:`walk` follows its
critical path the way Jaeger UI does
(jaegertracing/jaeger-ui ``TracePage/CriticalPath/index.tsx``):

* a child that starts after its parent ends or ends before it starts is dropped; one that
  overflows the parent's window (an async child ending after its parent, clock skew) is
  truncated to it, and its own children to the truncated window;
* from the span's end, step into the last-finishing child that ends at or before the current
  point (Jaeger: strictly before, which would leave back-to-back children to the parent); the
  gap between that child's end and the current point is the parent's own time; walk the child
  the same way, then carry on from the child's start; what is left down to the span's start is
  the parent's own time too.

So for every sampled span, its own time plus the time of each descendant group on its critical
path add up to its duration exactly. A descendant's time is exclusive (its own gaps, not its
children's), so the group where the time is actually spent is the one named, however deep it
lies; ``calls`` counts that group's spans on the path. Spans whose parent is not in the trace are
walked as roots of their own subtrees; a parent link that loops is followed once.

Memory is bounded: per group at most :data:`SAMPLE` spans are kept (Vitter's reservoir
algorithm R, seeded, so every span of the group is equally likely to be kept and a rerun gives
the same answer), each as its own time, start, instance, and per descendant group its time and
calls: at most ``groups × SAMPLE × (2 × descendant groups + 3)`` numbers. Only kept spans are
walked, so the time spent is bounded by the sample too, beyond one pass over each closed trace.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from feedbot.spans.model import CriticalPath

#: Spans kept per group (the reservoir's size).
SAMPLE = 1024
_SEED = 0x5EED
#: A walk's result: own ns, per descendant group (ns on the path, calls on the path).
Walk = tuple[int, dict[int, list[int]]]


def walk(
    root: int,
    children: Sequence[Sequence[int]],
    starts: Sequence[int],
    ends: Sequence[int],
    groups: Sequence[int],
) -> Walk:
    """The critical path of span ``root`` within its subtree.

    Args:
        root: the span's row.
        children: per row, the rows of its children (any order).
        starts: per row, the start in ns.
        ends: per row, the end in ns (not before the start).
        groups: per row, the group index.

    Returns:
        (the root's own ns, {descendant group: [ns on the path, spans on the path]}); the own
        time plus every descendant's ns is the root's duration.
    """
    own = 0
    found: dict[int, list[int]] = {}
    seen = {root}
    stack = [_Frame(root, starts[root], ends[root], children[root], starts, ends)]
    while stack:
        frame = stack[-1]
        kids, i, now = frame.kids, frame.next, frame.now
        while i < len(kids) and (kids[i][0] > now or kids[i][2] in seen):
            i += 1
        if i < len(kids):
            end, start, child = kids[i]
            frame.next, frame.now = i + 1, start
            gap = now - end
        else:
            stack.pop()
            gap, child = now - frame.lo, -1
        if frame.row == root:
            own += gap
        else:
            found[groups[frame.row]][0] += gap
        if child < 0:
            continue
        seen.add(child)
        found.setdefault(groups[child], [0, 0])[1] += 1
        stack.append(_Frame(child, start, end, children[child], starts, ends))
    return own, found


class _Frame:
    """A span being walked: its window ``[lo, now]`` left to cover, its children in it."""

    __slots__ = ("kids", "lo", "next", "now", "row")

    def __init__(
        self,
        row: int,
        lo: int,
        hi: int,
        rows: Sequence[int],
        starts: Sequence[int],
        ends: Sequence[int],
    ) -> None:
        self.row, self.lo, self.now, self.next = row, lo, hi, 0
        self.kids = _inside(rows, lo, hi, starts, ends)


def _inside(
    rows: Sequence[int], lo: int, hi: int, starts: Sequence[int], ends: Sequence[int]
) -> list[tuple[int, int, int]]:
    """Children within ``[lo, hi]``, truncated to it: (end, start, row), latest end first."""
    kept = [
        (min(ends[r], hi), max(starts[r], lo), r) for r in rows if starts[r] <= hi and ends[r] >= lo
    ]
    kept.sort(key=lambda k: (-k[0], -k[1]))
    return kept


class _Sample:
    """One group's reservoir of walked spans, as columns."""

    __slots__ = ("calls", "columns", "instances", "own_ms", "seen", "starts", "times")

    def __init__(self) -> None:
        self.seen = 0  # Spans offered (closed) so far.
        self.columns: dict[int, int] = {}  # Descendant group index → column.
        self.own_ms: array[float] = array("d")
        self.starts: array[int] = array("q")
        self.instances: list[str | None] = []
        self.times: list[array[float]] = []
        self.calls: list[array[int]] = []

    def put(self, slot: int, start: int, instance: str | None, result: Walk) -> None:
        """Write a walked span into ``slot`` (its length: append)."""
        own, found = result
        size = len(self.own_ms)
        for group in found:
            if group not in self.columns:
                self.columns[group] = len(self.times)
                self.times.append(array("d", bytes(8 * size)))
                self.calls.append(array("i", bytes(4 * size)))
        values = [0.0] * len(self.times)
        counts = [0] * len(self.times)
        for group, (ns, calls) in found.items():
            values[self.columns[group]] = ns / 1e6
            counts[self.columns[group]] = calls
        if slot == size:
            self.own_ms.append(own / 1e6)
            self.starts.append(start)
            self.instances.append(instance)
            for column, value in zip(self.times, values, strict=True):
                column.append(value)
            for calls_column, count in zip(self.calls, counts, strict=True):
                calls_column.append(count)
            return
        self.own_ms[slot], self.starts[slot], self.instances[slot] = own / 1e6, start, instance
        for column, calls_column, value, count in zip(
            self.times, self.calls, values, counts, strict=True
        ):
            column[slot], calls_column[slot] = value, count

    def rows(self) -> list[tuple[float, int, str | None, dict[int, tuple[float, int]]]]:
        """The kept spans as (own ms, start, instance, {group: (ms, calls)})."""
        out = []
        for r in range(len(self.own_ms)):
            found = {
                g: (self.times[c][r], self.calls[c][r])
                for g, c in self.columns.items()
                if self.calls[c][r] or self.times[c][r]
            }
            out.append((self.own_ms[r], self.starts[r], self.instances[r], found))
        return out


class PathRecorder:
    """Critical paths of the spans of closed traces, a bounded sample per group.

    Args:
        size: spans kept per group.
    """

    def __init__(self, size: int = SAMPLE) -> None:
        self._size = size
        self._random = random.Random(_SEED)
        self._samples: dict[int, _Sample] = {}

    def _slot(self, sample: _Sample) -> int:
        """Algorithm R: where the next offered span goes, or -1 when it is not kept."""
        sample.seen += 1
        if sample.seen <= self._size:
            return sample.seen - 1
        slot = self._random.randrange(sample.seen)
        return slot if slot < self._size else -1

    def close(
        self,
        parent_rows: Sequence[int],
        groups: Sequence[int],
        starts: Sequence[int],
        ends: Sequence[int],
        instances: Sequence[str | None],
    ) -> None:
        """Record the spans of closed traces.

        Args:
            parent_rows: per span, its parent's row among these spans, or -1.
            groups: per span, its group index.
            starts: per span, its start (ns).
            ends: per span, its end (ns), not before its start.
            instances: per span, its instance (for the warm-up).
        """
        samples, kept = self._samples, []
        for row, group in enumerate(groups):
            sample = samples.get(group)
            if sample is None:
                sample = samples[group] = _Sample()
            slot = self._slot(sample)
            if slot >= 0:
                kept.append((row, sample, slot))
        if not kept:
            return
        children: list[list[int]] = [[] for _ in groups]
        for row, parent in enumerate(parent_rows):
            if parent >= 0:
                children[parent].append(row)
        for row, sample, slot in kept:
            result = walk(row, children, starts, ends, groups)
            sample.put(slot, starts[row], instances[row], result)

    def close_arrays(
        self,
        parent_rows: npt.NDArray[np.intp],
        groups: npt.NDArray[np.intp],
        starts: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
        instances: Sequence[str | None],
    ) -> None:
        """:meth:`close` for columns (numpy arrays, instances per row), with the same result.

        Each span's count within its group is computed at once; only spans past the
        reservoir's size draw, in row order, as :meth:`_slot` draws; children are grouped by
        a stable sort rather than a loop over every span, and only within the subtrees of the
        kept spans that have some (:func:`_subtrees`).
        """
        if not len(groups):
            return
        distinct, first, inverse, counts = np.unique(
            groups, return_index=True, return_inverse=True, return_counts=True
        )
        inverse = inverse.reshape(-1)
        samples = self._samples
        before = np.empty(len(distinct), np.int64)
        # New samples in the order their groups first appear, as close() makes them (absorb
        # walks them in that order).
        for i in np.argsort(first).tolist():
            group = int(distinct[i])
            sample = samples.get(group)
            if sample is None:
                sample = samples[group] = _Sample()
            before[i] = sample.seen
            sample.seen += int(counts[i])
        order = np.argsort(inverse, kind="stable")
        rank = np.empty(len(groups), np.int64)
        firsts = np.cumsum(counts) - counts
        rank[order] = np.arange(len(groups)) - np.repeat(firsts, counts)
        seen = before[inverse] + rank + 1  # as _slot counts each span
        slots = seen - 1
        over = np.flatnonzero(seen > self._size)
        if len(over):
            slots[over] = _draws(self._random, seen[over].tolist(), self._size)
        kept_rows = np.flatnonzero(slots >= 0)
        if not len(kept_rows):
            return
        # A span without children is its own critical path: walked only when it has some.
        parents = parent_rows[parent_rows >= 0]
        leaf = np.bincount(parents, minlength=len(groups))[kept_rows] == 0
        kept = zip(
            kept_rows.tolist(),
            slots[kept_rows].tolist(),
            leaf.tolist(),
            groups[kept_rows].tolist(),
            starts[kept_rows].tolist(),
            (ends[kept_rows] - starts[kept_rows]).tolist(),
            strict=True,
        )
        local, lists = _subtrees(parent_rows, kept_rows[~leaf], starts, ends, groups)
        for row, slot, alone, group, start, own in kept:
            if alone:
                result: Walk = (own, {})
            else:
                result = walk(int(local[row]), *lists)
            samples[group].put(slot, start, instances[row], result)

    def absorb(self, later: PathRecorder, indexes: Sequence[int]) -> None:
        """Add another recorder's samples; ``indexes`` maps its group indexes to this one's."""
        for group, theirs in later._samples.items():
            mine = self._samples.setdefault(indexes[group], _Sample())
            rows = [(r, mine.seen) for r in mine.rows()]
            rows += [(_remap(r, indexes), theirs.seen) for r in theirs.rows()]
            total = mine.seen + theirs.seen
            if len(rows) > self._size:
                rows = self._thin(rows, len(mine.own_ms), mine.seen, total)
            merged = _Sample()
            merged.seen = total
            for slot, ((own, start, instance, found), _) in enumerate(rows):
                walked = (
                    round(own * 1e6),
                    {g: [round(ms * 1e6), n] for g, (ms, n) in found.items()},
                )
                merged.put(slot, start, instance, walked)
            self._samples[indexes[group]] = merged

    def _thin(self, rows: list[_Row], mine: int, seen: int, total: int) -> list[_Row]:
        """A sample of ``size`` rows, each side in proportion to the spans it stands for."""
        take = min(max(round(self._size * seen / total), self._size - (len(rows) - mine)), mine)
        first = self._random.sample(rows[:mine], take)
        return first + self._random.sample(rows[mine:], self._size - take)

    def stats(
        self,
        group: int,
        labels: Sequence[tuple[str, str]],
        warmup: tuple[int, dict[str | None, int]] | None,
    ) -> CriticalPath | None:
        """The group's :class:`CriticalPath`, or None when no kept span of it had a child.

        Args:
            group: the group index.
            labels: (name, kind) per group index.
            warmup: (ns, first start per instance) to leave the warm-up out, or None.
        """
        sample = self._samples.get(group)
        if sample is None or not sample.columns:
            return None
        keep = np.ones(len(sample.own_ms), np.bool_)
        if warmup is not None and warmup[0] > 0:
            ns, first = warmup
            limit = [-(2**63) if i is None else first.get(i, 0) + ns for i in sample.instances]
            keep = np.frombuffer(sample.starts, np.int64) >= np.array(limit, np.int64)
        order = sorted(sample.columns, key=lambda g: labels[g])
        columns = [sample.columns[g] for g in order]
        times = np.array([np.frombuffer(sample.times[c], np.float64) for c in columns])
        calls = np.array([np.frombuffer(sample.calls[c], np.int32) for c in columns])
        return CriticalPath(
            spans=sample.seen,
            children=tuple(labels[g] for g in order),
            own_ms=np.frombuffer(sample.own_ms, np.float64)[keep].copy(),
            child_ms=times.T[keep].copy(),
            calls=calls.T[keep].astype(np.int32),
        )


def _draws(rng: random.Random, seen: list[int], size: int) -> list[int]:
    """``rng.randrange(n)`` for each ``n`` of ``seen`` in order (-1 where not below ``size``).

    Inlines what ``Random.randrange(n)`` does for n > 0 (``_randbelow_with_getrandbits``:
    ``getrandbits(n.bit_length())`` until below n), so the stream is the same as
    :meth:`PathRecorder._slot`'s, without two calls per span.
    """
    bits = rng.getrandbits
    out = []
    for n in seen:
        k = n.bit_length()
        r = bits(k)
        while r >= n:
            r = bits(k)
        out.append(r if r < size else -1)
    return out


def _subtrees(
    parent_rows: npt.NDArray[np.intp],
    roots: npt.NDArray[np.intp],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    groups: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.intp], tuple[_Children, list[int], list[int], list[int]]]:
    """The rows :func:`walk` from ``roots`` can reach (they and their descendants) as lists
    for it, and each row's index in them (-1: not reached).

    A close walks a few hundred of its tens of thousands of spans: lists of only their
    subtrees, kept in row order (so each span's children keep theirs), walk as the whole
    would, without turning every span into Python numbers. Subtrees deeper than a few levels
    take every row.
    """
    reached = np.zeros(len(parent_rows), np.bool_)
    reached[roots] = True
    linked = parent_rows >= 0
    parent_of = np.where(linked, parent_rows, 0)
    for _ in range(_DEPTH):
        grown = reached | (linked & reached[parent_of])
        if (grown == reached).all():
            break
        reached = grown
    else:
        reached[:] = True
    rows = np.flatnonzero(reached)
    local = np.full(len(parent_rows), -1, np.intp)
    local[rows] = np.arange(len(rows))
    parents = np.where(linked[rows], local[parent_of[rows]], -1)
    lists = (_Children(parents), starts[rows].tolist(), ends[rows].tolist(), groups[rows].tolist())
    return local, lists


#: Levels of descendants :func:`_subtrees` follows before taking every row instead.
_DEPTH = 16


class _Children(Sequence[list[int]]):
    """Per row, the rows whose parent it is, in row order (as :meth:`PathRecorder.close`)."""

    def __init__(self, parent_rows: npt.NDArray[np.intp]) -> None:
        order = np.argsort(parent_rows, kind="stable")
        self._rows: list[int] = order.tolist()
        bounds = np.searchsorted(parent_rows[order], np.arange(len(parent_rows) + 1))
        self._bounds: list[int] = bounds.tolist()

    def __len__(self) -> int:
        return len(self._bounds) - 1

    def __getitem__(self, row: int) -> list[int]:  # type: ignore[override]
        return self._rows[self._bounds[row] : self._bounds[row + 1]]


_Row = tuple[tuple[float, int, str | None, dict[int, tuple[float, int]]], int]


def _remap(
    row: tuple[float, int, str | None, dict[int, tuple[float, int]]], indexes: Sequence[int]
) -> tuple[float, int, str | None, dict[int, tuple[float, int]]]:
    own, start, instance, found = row
    return own, start, instance, {indexes[g]: v for g, v in found.items()}
