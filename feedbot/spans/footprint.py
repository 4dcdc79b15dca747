"""What one check saw of each operation, function and file: the rows of the code history.

:func:`footprints` turns a version's :class:`~feedbot.spans.model.ReleaseData` into one
:class:`Footprint` per span group (``operation``), per qualified function named by the spans'
``code.*`` attributes (``function``: ``code.function.name``, or ``code.namespace`` +
``code.function``) and per source file (``file``: ``code.file.path`` / ``code.filepath``).
The store keeps them per check as a time series (:mod:`feedbot.store.history`), so
``/feedback <function | file | route>`` is answered without asking the trace store.

:func:`function_footprint` is the one computation of a function's (or file's) numbers from
the span groups it ran in, which the code history and the pull-request preview
(:mod:`feedbot.analysis.footprint`) share, so that ``/feedback`` and the preview say the same of
the same spans. Calls are exact (every span that named it). What adds up is apportioned: errors,
exception counts and callers are each group's times the share of the group's spans that named
the function, so errors over calls is its groups' error rates weighted by its share of each
(exactly the group's rate where it owns the group), and the history can sum both check after
check. A percentile cannot be apportioned: p50/p95 are those of the durations of the groups the
function owns (it ran in at least :data:`OWN_SHARE` of their spans, as when it opens a span of
its own), None when it owns none, rather than another function's latency. A function's callers
are its groups' callers; where its group is an entry point (``(root)``) the group itself is the
caller, so a controller method set on a SERVER span is "called by" its route. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from feedbot.spans.model import ReleaseData, SpanGroupStats

#: The longest name kept; longer span names (DB statements) are cut.
MAX_NAME = 500
#: Callers and exception types kept per key, busiest first.
MAX_LISTED = 8
KINDS = ("operation", "function", "file")
#: A group is a function's own when the function ran in at least this share of its spans.
OWN_SHARE = 0.9

_METHOD = re.compile(r"^[A-Za-z]+ (?=/)")
_QUALIFIERS = re.compile(r"::|[:/\\#$+]")
_GO_RECEIVER = re.compile(r"\(\*?([^()*]+)\)")
_DOTS = re.compile(r"\.{2,}")
_SEPARATORS = re.compile(r"[.:#\\/ ]+")


@dataclass(frozen=True)
class Footprint:
    """One key's numbers at one check.

    Attributes:
        kind: ``operation`` (a span group), ``function`` or ``file``.
        name: The span group, the qualified function or the file path.
        calls: Spans (an operation's), or spans that named the function or file.
        errors: Of those, spans whose status was ERROR (a function's: its share of its groups').
        p50_ms: Median duration, None when no span had an end time (a function's: of the
            groups it owns, None when it owns none).
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

    @property
    def error_rate(self) -> float | None:
        """``errors`` over ``calls``; None without calls."""
        return self.errors / self.calls if self.calls else None


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


def function_footprint(
    ran: Iterable[tuple[SpanGroupStats, int]],
    name: str,
    *,
    kind: str = "function",
    file: str | None = None,
) -> Footprint:
    """A function's (or file's) footprint from ``(group, spans of it that named it)`` pairs.

    Args:
        ran: Each group it ran in, with how many of the group's spans named it.
        name: The function (or file).
        kind: ``function`` or ``file``.
        file: The function's source file, when the spans said.
    """
    calls, errors = 0, 0.0
    callers: defaultdict[str, float] = defaultdict(float)
    exceptions: defaultdict[str, float] = defaultdict(float)
    owned = []
    for group, n in ran:
        if group.count <= 0 or n <= 0:
            continue
        share = min(1.0, n / group.count)
        calls += n
        errors += group.errors * share
        for caller, k in group.callers:
            callers[group.name if caller == "(root)" else caller] += k * share
        for seen in group.exceptions:
            exceptions[seen.type] += seen.count * share
        if share >= OWN_SHARE and group.durations_ms.size:
            owned.append(group.durations_ms)
    p50, p95 = _percentiles(np.concatenate(owned)) if owned else (None, None)
    return Footprint(
        kind=kind,
        name=name[:MAX_NAME],
        calls=calls,
        errors=min(calls, round(errors)),
        p50_ms=p50,
        p95_ms=p95,
        callers=_top(callers),
        exceptions=_top(exceptions),
        file=file,
    )


def same_function(wanted: str, seen: str) -> bool:
    """Whether two qualified names, in any language's spelling, name the same function: equal,
    or one a dotted suffix of the other once both are spelt alike (a diff and the spans
    qualify names differently)."""
    w, s = _dotted(wanted), _dotted(seen)
    return w == s or s.endswith("." + w) or w.endswith("." + s)


def _dotted(name: str) -> str:
    """One spelling for every language's qualified name, so that they compare by dotted parts.

    ``Acme::Vault#deposit``, ``App\\Http\\VaultController::deposit``,
    ``com.acme.Vault$Ledger.post``, ``Acme.Deposits.DepositService+Audit.Record`` and
    ``github.com/acme/deposits.(*Account).Deposit`` become dotted
    paths (the Go receiver ``(*Account)`` as ``Account``).
    """
    name = _GO_RECEIVER.sub(r"\1", name)
    return _DOTS.sub(".", _QUALIFIERS.sub(".", name)).strip(".")


def footprints(data: ReleaseData) -> list[Footprint]:
    """One footprint per operation, function and file that ``data``'s spans show."""
    out = [_operation(g) for g in data.groups if g.count > 0]
    functions: dict[str, list[tuple[SpanGroupStats, int]]] = defaultdict(list)
    files: dict[str, list[tuple[SpanGroupStats, int]]] = defaultdict(list)
    where: dict[str, str] = {}
    for group in data.groups:
        for code in group.code:
            if code.function:
                functions[code.function].append((group, code.count))
                if code.filepath:
                    where.setdefault(code.function, code.filepath)
            if code.filepath:
                files[code.filepath].append((group, code.count))
    out += [
        function_footprint(ran, name, file=where.get(name))
        for name, ran in sorted(functions.items())
    ]
    out += [function_footprint(ran, name, kind="file") for name, ran in sorted(files.items())]
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


def _percentiles(durations: npt.NDArray[np.float64]) -> tuple[float | None, float | None]:
    if durations.size == 0:
        return None, None
    p50, p95 = np.percentile(durations, [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


def _top(counter: Mapping[str, float]) -> tuple[tuple[str, int], ...]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple((name[:MAX_NAME], max(1, round(n))) for name, n in ranked[:MAX_LISTED] if n > 0)


def _operation(group: SpanGroupStats) -> Footprint:
    p50, p95 = _percentiles(group.durations_ms)
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
