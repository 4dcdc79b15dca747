"""Spans seen twice (the same trace id and span id) are counted once; pure, no I/O.

An exporter that retries after a timeout, or two Collector pipelines writing one file, send a span
again; counted twice it would weigh double in every test. A :class:`SeenSpans` remembers a 64-bit
key per span (the low 64 bits of the trace id and the span id, mixed): about 60 bytes a span.
Keys are the same whether a span arrives as a row or in a block of columns.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_MASK = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15
_NIBBLE = np.zeros(256, np.uint64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"abcdef", 10):
    _NIBBLE[ord(chr(_c).upper())] = _i
_SHIFTS = np.arange(60, -1, -4, dtype=np.uint64)


def span_key(trace_id: str, span_id: str) -> int:
    """The 64-bit key of one span (hex ids as :func:`span_keys` reads them; else a hash)."""
    try:
        return (int(trace_id[-16:], 16) * _MIX + int(span_id[-16:], 16)) & _MASK
    except ValueError:
        return hash((trace_id, span_id)) & _MASK


def span_keys(trace_ids: pa.Array, span_ids: pa.Array) -> npt.NDArray[np.uint64]:
    """:func:`span_key` of each span of a block whose ids are checked hex (32 and 16 digits)."""
    if not len(trace_ids):
        return np.empty(0, np.uint64)
    mixed = _last16(trace_ids) * np.uint64(_MIX) + _last16(span_ids)
    return np.asarray(mixed, np.uint64)


def _last16(ids: pa.Array) -> npt.NDArray[np.uint64]:
    """The last 16 hex digits of each string, as an unsigned 64-bit number."""
    wide = pa.types.is_large_string(ids.type)
    offsets = np.frombuffer(ids.buffers()[1], np.int64 if wide else np.int32)
    bounds = offsets[ids.offset : ids.offset + len(ids) + 1].astype(np.int64)
    data = np.frombuffer(ids.buffers()[2], np.uint8)
    fixed = _fixed_width(bounds, data)
    if fixed is not None:
        return fixed
    ends = bounds[1:]
    digits = _NIBBLE[data[ends[:, None] - 16 + np.arange(16)]]
    return np.asarray(np.bitwise_or.reduce(digits << _SHIFTS, axis=1), np.uint64)


def _fixed_width(
    bounds: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint64] | None:
    """:func:`_last16` of strings that all have one length (ids do), decoded by
    ``bytes.fromhex`` in one call; None when they differ or a digit is not hex."""
    count = len(bounds) - 1
    width = int(bounds[-1] - bounds[0]) // count
    if width < 16 or not (np.diff(bounds) == width).all():
        return None
    digits = data[bounds[0] : bounds[-1]].reshape(count, width)[:, width - 16 :]
    try:
        raw = bytes.fromhex(digits.tobytes().decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    if len(raw) != 8 * count:  # fromhex skips whitespace between digit pairs
        return None
    return np.frombuffer(raw, ">u8").astype(np.uint64)


class SeenSpans:
    """The keys of the spans counted so far, and how many were sent again.

    Keys of spans counted one at a time are kept in a set; those of blocks in sorted numpy
    runs (8 bytes a key, not the set's ~70), merged as they grow so that a lookup searches
    a few runs (as a log-structured merge tree does).
    """

    def __init__(self) -> None:
        self._keys: set[int] = set()
        self._runs: list[npt.NDArray[np.uint64]] = []
        self.duplicates = 0

    def fresh(self, trace_id: str, span_id: str) -> bool:
        """Whether the span is seen for the first time (it is remembered)."""
        key = span_key(trace_id, span_id)
        if key in self._keys or self._in_runs(np.array([key], np.uint64))[0]:
            self.duplicates += 1
            return False
        self._keys.add(key)
        return True

    def fresh_rows(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Which of a block's spans (by :func:`span_keys`) are new; all are remembered."""
        if not len(keys):
            return np.ones(0, np.bool_)
        ordered = np.sort(keys)
        if not self._keys and not (ordered[1:] == ordered[:-1]).any():
            # The usual block: no key twice in it, none kept one at a time. A plain sort
            # (no inverse) and a search of the sorted runs with sorted keys.
            known = self._in_runs(ordered)
            if not known.any():
                self._add_run(ordered)
                return np.ones(len(keys), np.bool_)
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        known = self._in_runs(distinct)
        if self._keys:
            seen = self._keys
            known |= np.fromiter((k in seen for k in distinct.tolist()), np.bool_, len(distinct))
        mask = np.zeros(len(keys), np.bool_)
        mask[first] = True  # the first of a key repeated inside the block
        mask &= ~known[np.asarray(inverse).reshape(-1)]
        self.duplicates += len(keys) - int(np.count_nonzero(mask))
        self._add_run(distinct[~known])
        return mask

    def absorb(self, later: SeenSpans) -> None:
        """Add what another reader saw of the input after this one's.

        A span sent in both parts stays counted in each: parts are cut between whole lines, so
        only an export retried across the cut is missed.
        """
        self.duplicates += later.duplicates
        self._keys |= later._keys
        for run in later._runs:
            self._add_run(run)

    def _in_runs(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Which of ``keys`` some run holds."""
        found = np.zeros(len(keys), np.bool_)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, keys), len(run) - 1)
            found |= run[at] == keys
        return found

    def _add_run(self, run: npt.NDArray[np.uint64]) -> None:
        """Keep a sorted run of new keys, merging runs while the one before is not larger."""
        if not len(run):
            return
        runs = self._runs
        runs.append(run)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            last = runs.pop()
            # Two sorted runs end to end: timsort ("stable") merges them in linear time.
            runs[-1] = np.sort(np.concatenate((runs[-1], last)), kind="stable")


class UniqueSpans(SeenSpans):
    """For a source that stores each (trace id, span id) once (the embedded store's unique
    index): every span is fresh and no key is kept, so memory does not grow per span."""

    def fresh(self, trace_id: str, span_id: str) -> bool:
        """Always True: the source has no repeats."""
        return True

    def fresh_rows(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """All True: the source has no repeats."""
        return np.ones(len(keys), np.bool_)
