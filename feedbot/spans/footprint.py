"""What one check saw of each operation, function and file: the rows of the code history.

:func:`footprints` turns a version's :class:`~feedbot.spans.model.ReleaseData` into one
:class:`Footprint` per span group (``operation``), per qualified function named by the spans'
``code.*`` attributes (``function``: ``code.function.name``, or ``code.namespace`` +
``code.function``) and per source file (``file``: ``code.file.path`` / ``code.filepath``).
The store keeps them per check as a time series (:mod:`feedbot.store.history`), so
``/feedback <function | file | route>`` is answered without asking the trace store.

A function's numbers come from the span groups it ran in, each weighted by the share of the
group's spans that named it: calls are exact, errors and exception counts are that share of the
group's, and its p50/p95 are those of the group where it ran most. Its callers are its groups'
callers; where its group is an entry point (``(root)``) the group itself is the caller, so a
controller method set on a SERVER span is "called by" its route. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from feedbot.spans.model import ReleaseData, SpanGroupStats

#: The longest name kept; longer span names (DB statements) are cut.
MAX_NAME = 500
#: Callers and exception types kept per key, busiest first.
MAX_LISTED = 8
KINDS = ("operation", "function", "file")

_METHOD = re.compile(r"^[A-Za-z]+ (?=/)")
_SEPARATORS = re.compile(r"[.:#\\/ ]+")


@dataclass(frozen=True)
class Footprint:
    """One key's numbers at one check.

    Attributes:
        kind: ``operation`` (a span group), ``function`` or ``file``.
        name: The span group, the qualified function or the file path.
        calls: Spans (an operation's), or spans that named the function or file.
        errors: Of those, spans whose status was ERROR (a function's: its share of its groups').
        p50_ms: Median duration, None when no span had an end time.
        p95_ms: 95th percentile duration.
        callers: ``(caller, spans)``: the groups of parent spans (``(remote)`` for a parent in
            another service), busiest first.
        exceptions: ``(type, spans)``, busiest first.
        file: The function's source file, when the spans said.
        insights: What the check's findings said about the key (``latency_regression``,
            ``n_plus_one``, ...); filled in by the pipeline.
    """

    kind: str
    name: str
    calls: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    callers: tuple[tuple[str, int], ...] = ()
    exceptions: tuple[tuple[str, int], ...] = ()
    file: str | None = None
    insights: tuple[str, ...] = ()


def short_name(kind: str, name: str) -> str:
    """The part of a name people type, lower case: how a key is looked up.

    An operation's route without its method (``GET /vaults/{id}`` → ``/vaults/{id}``), a
    function's last identifier (``vault.appraisal.Appraiser.appraise`` → ``appraise``,
    ``App\\Http\\VaultController::show`` → ``show``), a file's base name.
    """
    text = name.strip()
    if kind == "operation":
        return _METHOD.sub("", text).lower()[:MAX_NAME]
    parts = [p for p in _SEPARATORS.split(text) if p]
    if kind == "file" and len(parts) > 1 and "." in text.rsplit("/", 1)[-1]:
        return text.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return (parts[-1] if parts else text).lower()[:MAX_NAME]


def footprints(data: ReleaseData) -> list[Footprint]:
    """One footprint per operation, function and file that ``data``'s spans show."""
    out = [_operation(g) for g in data.groups if g.count > 0]
    functions: dict[str, _Sum] = defaultdict(_Sum)
    files: dict[str, _Sum] = defaultdict(_Sum)
    for group in data.groups:
        if group.count <= 0:
            continue
        for code in group.code:
            share = min(1.0, code.count / group.count)
            if code.function:
                functions[code.function].add(group, code.count, share, code.filepath)
            if code.filepath:
                files[code.filepath].add(group, code.count, share, code.filepath)
    out += [total.footprint("function", name) for name, total in sorted(functions.items())]
    out += [total.footprint("file", name) for name, total in sorted(files.items())]
    return out


def with_insights(
    prints: Iterable[Footprint], findings: Iterable[Mapping[str, object]]
) -> list[Footprint]:
    """``prints`` with the kinds of the report's findings about each key (span, function, file)."""
    said: dict[tuple[str, str], list[str]] = defaultdict(list)
    for finding in findings:
        kind = str(finding.get("kind") or "")
        for key, field in (("operation", "span"), ("function", "function"), ("file", "file")):
            name = finding.get(field)
            if kind and isinstance(name, str) and kind not in said[(key, name)]:
                said[(key, name)].append(kind)
    return [replace(p, insights=tuple(said.get((p.kind, p.name), ()))) for p in prints]


def _quantiles(group: SpanGroupStats) -> tuple[float | None, float | None]:
    durations = group.durations_ms
    if durations.size == 0:
        return None, None
    p50, p95 = np.percentile(durations, [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


def _top(counter: Mapping[str, float]) -> tuple[tuple[str, int], ...]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple((name[:MAX_NAME], max(1, round(n))) for name, n in ranked[:MAX_LISTED] if n > 0)


def _operation(group: SpanGroupStats) -> Footprint:
    p50, p95 = _quantiles(group)
    return Footprint(
        kind="operation",
        name=group.name[:MAX_NAME],
        calls=group.count,
        errors=group.errors,
        p50_ms=p50,
        p95_ms=p95,
        callers=_top(dict(group.callers)),
        exceptions=_top({e.type: e.count for e in group.exceptions}),
    )


class _Sum:
    """A function's or file's numbers, summed over the groups it ran in."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0.0
        self.callers: defaultdict[str, float] = defaultdict(float)
        self.exceptions: defaultdict[str, float] = defaultdict(float)
        self.busiest: tuple[int, SpanGroupStats] | None = None
        self.file: str | None = None

    def add(self, group: SpanGroupStats, calls: int, share: float, file: str | None) -> None:
        self.calls += calls
        self.errors += group.errors * share
        for caller, n in group.callers:
            self.callers[group.name if caller == "(root)" else caller] += n * share
        for seen in group.exceptions:
            self.exceptions[seen.type] += seen.count * share
        if self.busiest is None or calls > self.busiest[0]:
            self.busiest = (calls, group)
        self.file = self.file or file

    def footprint(self, kind: str, name: str) -> Footprint:
        p50, p95 = _quantiles(self.busiest[1]) if self.busiest else (None, None)
        return Footprint(
            kind=kind,
            name=name[:MAX_NAME],
            calls=self.calls,
            errors=min(self.calls, round(self.errors)),
            p50_ms=p50,
            p95_ms=p95,
            callers=_top(self.callers),
            exceptions=_top(self.exceptions),
            file=self.file if kind == "function" else None,
        )
