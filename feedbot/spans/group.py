"""One span group's tallies inside :class:`~feedbot.spans.aggregate.Aggregator`; pure.

Counts, durations with their instance (and start, when a warm-up is left out), bounded
exception and code tables, callers; folded into a
:class:`~feedbot.spans.model.SpanGroupStats` at the end.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from feedbot.spans.labels import LabelTally
from feedbot.spans.model import CodeSeen, ExceptionSeen, SpanGroupStats
from feedbot.spans.semconv import CodeLocation, Extras

UNKNOWN_INSTANCE = "(unknown)"
#: Distinct exception types and code locations kept per group; the rest are not itemised.
MAX_EXCEPTION_TYPES = 20
MAX_CODE_LOCATIONS = 50


@dataclass(eq=False)
class GroupTally:
    """What an aggregator has counted of one span group so far (see :class:`Aggregator`)."""

    name: str
    kind: str
    index: int
    count: int = 0
    errors: int = 0
    untimed: int = 0  # Spans without an end time: counted, but no duration.
    durations: array[float] = field(default_factory=lambda: array("d"))
    instances: array[int] = field(default_factory=lambda: array("i"))
    # Per duration: its span's start (ns since the epoch).
    starts: array[int] = field(default_factory=lambda: array("q"))
    instance_ids: dict[str | None, int] = field(default_factory=dict)
    exceptions: dict[str, list[Any]] = field(default_factory=dict)
    code: dict[CodeLocation, int] = field(default_factory=dict)
    callers: dict[str, int] = field(default_factory=dict)
    # Per duration: whether its span failed, and its labels (feedbot.spans.labels).
    errored: array[int] = field(default_factory=lambda: array("b"))
    labels: LabelTally = field(default_factory=LabelTally)

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

    def merge(self, theirs: GroupTally) -> None:
        """Add another aggregator's group of the same label after this one's spans."""
        self.count += theirs.count
        self.errors += theirs.errors
        self.untimed += theirs.untimed
        self.durations.extend(theirs.durations)
        self.starts.extend(theirs.starts)
        self.errored.extend(theirs.errored)
        self.labels.merge(theirs.labels)
        ids = self.instance_ids
        remap = np.array([ids.setdefault(k, len(ids)) for k in theirs.instance_ids], np.int32)
        self.instances.frombytes(remap[np.frombuffer(theirs.instances, np.int32)].tobytes())
        for kind, (count, message, trace_id) in theirs.exceptions.items():
            entry = self.exceptions.get(kind)
            if entry is not None:
                entry[0] += count
            elif len(self.exceptions) < MAX_EXCEPTION_TYPES:
                self.exceptions[kind] = [count, message, trace_id]
        for location, count in theirs.code.items():
            if location in self.code or len(self.code) < MAX_CODE_LOCATIONS:
                self.code[location] = self.code.get(location, 0) + count
        for caller, count in theirs.callers.items():
            self.callers[caller] = self.callers.get(caller, 0) + count

    def stats(self, warmup: tuple[int, dict[str | None, int]] | None) -> SpanGroupStats:
        """The group's answer; ``warmup`` is (nanoseconds, first start per instance) or None.

        With a warm-up, :attr:`~feedbot.spans.model.SpanGroupStats.early` marks the durations of
        spans in their instance's warm-up; none is left out here (the analysis decides).
        """
        named = list(self.instance_ids) != [None]  # No span said: both stay empty.
        names = tuple(UNKNOWN_INSTANCE if k is None else k for k in self.instance_ids)
        durations = np.frombuffer(self.durations, dtype=np.float64)
        instances = np.frombuffer(self.instances, dtype=np.int32)
        errored = np.frombuffer(self.errored, dtype=np.int8).astype(np.bool_)
        labels = np.frombuffer(self.labels.codes, dtype=np.int32)
        sets = self.labels.table()
        if not any(sets):  # No span carried a label.
            labels, sets = labels[:0], ()
        early = np.empty(0, dtype=np.bool_)
        if warmup is not None and warmup[0] > 0 and len(durations):
            early = ~self._after_warmup(instances, *warmup)
        return SpanGroupStats(
            name=self.name,
            kind=self.kind,
            count=self.count,
            errors=self.errors,
            early=early,
            untimed=self.untimed,
            durations_ms=durations.copy(),
            instances=instances[: None if named else 0].copy(),
            instance_names=names if named else (),
            errored=errored,
            starts_ns=np.frombuffer(self.starts, dtype=np.int64).copy(),
            labels=labels.copy(),
            label_sets=sets,
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

    def _after_warmup(
        self, instances: npt.NDArray[np.int32], warmup_ns: int, first: dict[str | None, int]
    ) -> npt.NDArray[np.bool_]:
        """Which durations to keep: not from a span starting in its instance's warm-up.

        Spans without an instance are always kept (their threshold is below every start).
        """
        never = np.iinfo(np.int64).min
        ends = np.array(
            [never if k is None else first[k] + warmup_ns for k in self.instance_ids],
            dtype=np.int64,
        )
        starts = np.frombuffer(self.starts, dtype=np.int64)
        return np.asarray(starts >= ends[instances])


def _code_order(item: tuple[CodeLocation, int]) -> tuple[Any, ...]:
    (function, path, line), count = item
    return (-count, function or "", path or "", line or 0)
