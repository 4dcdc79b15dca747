"""The plain data that the span engine produces and the analysis reads.

A :class:`SpanQuery` names the spans of one service version in one window; a
:class:`ReleaseData` is what was found for it: per span group (:class:`SpanGroupStats`) the
counts, errors, durations (with the instance each came from), exception types
(:class:`ExceptionSeen`), code locations (:class:`CodeSeen`) and calling groups; plus DB
statements repeated under one parent in one trace (:class:`RepeatedStatement`, N+1
candidates); where the spans' time went, trace by trace (:class:`CriticalPath`). Backends
return these (see :class:`feedbot.backends.base.TraceBackend`); nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Span kinds that start a request (one per request the service took): their rate is the load.
ENTRY_KINDS = ("SERVER", "CONSUMER")


def _floats() -> npt.NDArray[np.float64]:
    return np.empty(0, dtype=np.float64)


def _ints() -> npt.NDArray[np.int32]:
    return np.empty(0, dtype=np.int32)


def _starts() -> npt.NDArray[np.int64]:
    return np.empty(0, dtype=np.int64)


def _flags() -> npt.NDArray[np.bool_]:
    return np.empty(0, dtype=np.bool_)


@dataclass(frozen=True)
class SpanQuery:
    """Spans of one service version in one environment that start within ``[start, end)``.

    ``warmup``: the durations of spans that start within ``warmup`` of their instance's first
    span in the window are marked :attr:`SpanGroupStats.early`; spans without an instance never
    are. The analysis leaves them out of latency only where they were really slower than the
    same instance's later spans (:mod:`feedbot.analysis.warmup`). Ask for it on a new version's
    query, whose instances are new; a baseline's instances are warm already.
    """

    service: str
    version: str
    start: datetime
    end: datetime
    environment: str | None = None
    span_name: str | None = None
    warmup: timedelta = timedelta(0)


@dataclass(frozen=True)
class ExceptionSeen:
    """One exception type recorded on a group's spans (``exception`` events)."""

    type: str
    count: int
    message: str = ""
    example_trace_id: str = ""


@dataclass(frozen=True)
class CodeSeen:
    """A code location that spans of a group ran in, from the ``code.*`` attributes.

    ``function`` is qualified (``vault.appraisal.Appraiser.appraise``): the new convention's
    ``code.function.name``, or the old ``code.namespace`` + ``.`` + ``code.function``.
    """

    function: str | None
    filepath: str | None
    lineno: int | None
    count: int


@dataclass(frozen=True)
class CriticalPath:
    """Where one group's spans spent their time on their own critical paths.

    Made by :mod:`feedbot.spans.critical` from a uniform sample of the group's spans (at most
    :data:`~feedbot.spans.critical.SAMPLE`), warm-up left out like ``durations_ms``. One row per
    sampled span: its own time (``own_ms``) and, per descendant group in ``children`` ((name,
    kind), sorted), the exclusive time that group spent on the span's critical path
    (``child_ms``, 0 when absent) and how many of its spans lay on it (``calls``). Each row's
    own time plus its ``child_ms`` is the span's duration.
    """

    spans: int
    children: tuple[tuple[str, str], ...]
    own_ms: npt.NDArray[np.float64] = field(default_factory=_floats, repr=False)
    child_ms: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.empty((0, 0), np.float64), repr=False
    )
    calls: npt.NDArray[np.int32] = field(
        default_factory=lambda: np.empty((0, 0), np.int32), repr=False
    )


@dataclass(frozen=True)
class SpanGroupStats:
    """One span group: spans of the same name and kind.

    SERVER spans with an ``http.route`` are grouped as ``"METHOD route"`` (or the route alone);
    DB spans by statement and HTTP spans without a route by templated path
    (:mod:`feedbot.spans.resources`).
    ``instances`` holds, for each duration, an index into ``instance_names``
    (``service.instance.id``, else ``host.name``); both are empty when no span said.
    ``callers`` counts the groups of parent spans (``"(root)"`` for root spans, ``"(remote)"``
    for parents in another service). ``early`` marks, per duration, a span that started in its
    instance's warm-up (:attr:`SpanQuery.warmup`; empty when none was asked for);
    ``warmup_excluded`` is how many durations the analysis left out as warm-up. ``untimed``
    counts spans without an end time: in ``count`` and ``errors``, not in ``durations_ms``.
    ``errored`` says, per duration, whether its span's status was ERROR; ``labels`` holds, per
    duration, an index into ``label_sets``: the span's low-cardinality attribute values as
    sorted (key, value) pairs (:mod:`feedbot.spans.labels`). Each is empty when the backend did
    not keep it (or, for labels, no span carried one).
    ``critical_path`` is where the spans' time went (:class:`CriticalPath`); None when no span
    of the group had a child, or when the backend aggregates on its side (ClickHouse).
    ``starts_ns`` holds, per duration, its span's start (ns since the epoch); empty when the
    backend did not keep it.
    """

    name: str
    kind: str
    count: int
    errors: int
    durations_ms: npt.NDArray[np.float64] = field(
        default_factory=_floats, compare=False, repr=False
    )
    instances: npt.NDArray[np.int32] = field(default_factory=_ints, compare=False, repr=False)
    instance_names: tuple[str, ...] = ()
    exceptions: tuple[ExceptionSeen, ...] = ()
    code: tuple[CodeSeen, ...] = ()
    callers: tuple[tuple[str, int], ...] = ()
    warmup_excluded: int = 0
    early: npt.NDArray[np.bool_] = field(default_factory=_flags, compare=False, repr=False)
    untimed: int = 0
    errored: npt.NDArray[np.bool_] = field(default_factory=_flags, compare=False, repr=False)
    labels: npt.NDArray[np.int32] = field(default_factory=_ints, compare=False, repr=False)
    label_sets: tuple[tuple[tuple[str, str], ...], ...] = field(default=(), repr=False)
    critical_path: CriticalPath | None = field(default=None, compare=False, repr=False)
    starts_ns: npt.NDArray[np.int64] = field(default_factory=_starts, compare=False, repr=False)


@dataclass(frozen=True)
class RepeatedStatement:
    """A normalised DB statement run more than once under one parent span in one trace.

    One object per (parent group, statement); the arrays hold one entry per trace where it
    repeated: how many times, and the summed duration of those spans.
    """

    parent: str
    statement: str
    repeats: npt.NDArray[np.int32] = field(default_factory=_ints, compare=False, repr=False)
    total_ms: npt.NDArray[np.float64] = field(default_factory=_floats, compare=False, repr=False)
    example_trace_id: str = ""


@dataclass(frozen=True)
class Elsewhere:
    """What a store holds of a query's service in its window when none of it matched.

    ``spans`` counts the service's spans per (environment, version), None where the span did
    not say, largest first: a deploy tagged ``production`` whose spans say ``prod``, or spans
    without ``service.version``, are named as such instead of "not serving yet".
    """

    query: SpanQuery
    spans: tuple[tuple[str | None, str | None, int], ...] = ()


@dataclass(frozen=True)
class ReleaseData:
    """What a backend found for one :class:`SpanQuery`.

    ``traces`` is the number of distinct traces seen; ``sampled_traces`` is set when the backend
    looked at a sample of traces rather than all of them (and the report says so).
    ``observed`` is the start of the first and of the last span counted (None when none was):
    the time the version was seen serving inside the query's window, which rates divide by.
    From a sample of traces it is the sample's range. ``elsewhere``: when nothing matched and
    the backend can survey its store, what it holds of the service in the window.
    """

    groups: list[SpanGroupStats]
    repeats: list[RepeatedStatement] = field(default_factory=list)
    traces: int = 0
    sampled_traces: int | None = None
    notes: tuple[str, ...] = ()
    observed: tuple[datetime, datetime] | None = None
    elsewhere: Elsewhere | None = None


def from_ns(ns: int) -> datetime:
    """The aware UTC datetime of ``ns`` nanoseconds since the Unix epoch (to the microsecond)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def observed_range(first_ns: int | None, last_ns: int | None) -> tuple[datetime, datetime] | None:
    """:attr:`ReleaseData.observed` from the first and last span starts, in nanoseconds."""
    if first_ns is None or last_ns is None:
        return None
    return from_ns(first_ns), from_ns(last_ns)
