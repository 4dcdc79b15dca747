"""Before a deploy: each changed function's production footprint and what to watch for after it.

The pull-request preview (issue #17) matches a change's functions against the spans of the
service's recent window exactly as :mod:`feedbot.analysis.reach` does after a deploy (the
``code.*`` attributes of both semantic-convention generations), and says per function:

- how often it ran (spans naming it, per day of the window);
- its latency (p50/p95) on the span groups that are its own, its error rate and the
  exception types recorded where it ran: the numbers
  :func:`feedbot.spans.footprint.function_footprint` computes for the code history too, so the
  preview and ``/feedback`` agree (see there why latency is only that of its own groups);
- the entry points it runs under: following each group's callers up to a root, a span whose
  parent is in another service, or a SERVER/CONSUMER span (the routes);
- what to watch for: a hot path, the exceptions it raises per day, an error rate, its p95 as
  the baseline the deploy's check will compare against, and "never ran in production" when
  spans would have named it (it opens a span of its own; for a file-level change, spans point
  into its file), else "unknown".

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

from feedbot.analysis.reach import Target, change_targets, group_hits, target_hits
from feedbot.releases.event import Change
from feedbot.spans.footprint import Footprint as Seen
from feedbot.spans.footprint import function_footprint
from feedbot.spans.model import ReleaseData, SpanGroupStats

#: Calls per day from which a function is a hot path.
HOT_PER_DAY = 1000.0
#: An error rate worth a line of its own.
ERROR_RATE_WATCH = 0.01
_ENTRY_KINDS = ("SERVER", "CONSUMER")
_MAX_ROUTES = 5

Usage = Literal["hot", "used", "never", "unknown"]


@dataclass(frozen=True, slots=True)
class Footprint:
    """One changed function (or file) in production before the change ships.

    Attributes:
        function: the changed function, None for a file-level change.
        file: the changed file.
        usage: ``hot`` / ``used`` (it ran), ``never`` (spans would have named it and did not),
            ``unknown`` (no span would name it: it opens no span of its own).
        calls: spans that ran it in the window.
        per_day: ``calls`` per day of the window.
        p50_ms: median duration on its own groups, None when it has none.
        p95_ms: 95th percentile, likewise.
        errors: errored spans where it ran (each group's, times its share of the group).
        error_rate: ``errors`` over ``calls``, None when it did not run.
        exceptions: (type, count) recorded on its own groups, most frequent first.
        routes: the entry points it runs under, busiest first.
        watch: what to watch for after the deploy, one line each.
    """

    function: str | None
    file: str | None
    usage: Usage
    calls: int
    per_day: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    errors: int = 0
    error_rate: float | None = None
    exceptions: tuple[tuple[str, int], ...] = ()
    routes: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The function, else the file."""
        return self.function or self.file or "changed code"


def footprints(
    changes: Sequence[Change],
    data: ReleaseData,
    *,
    window: timedelta,
    hot_per_day: float = HOT_PER_DAY,
    held: Mapping[str, tuple[Seen, float]] | None = None,
) -> list[Footprint]:
    """Each changed function's footprint in ``data``, the spans of ``window``.

    Args:
        changes: the change's files and functions (``traced``: those that open a span).
        data: the service's spans in the window (every version that served).
        window: how long ``data`` covers; rates are per day of it.
        hot_per_day: calls per day from which a function is on a hot path.
        held: per changed function, what the code history holds of it in the window (the
            checks' footprint, with calls, and its calls a day): used instead of ``data``
            for that function; its routes are then the callers the checks saw.

    Returns:
        One footprint per changed function (or per file without functions that spans point
        into), in change order.
    """
    days = max(window / timedelta(days=1), 1 / 24)
    by_name: dict[str, list[SpanGroupStats]] = {}
    for group in data.groups:
        by_name.setdefault(group.name, []).append(group)
    known = held or {}
    found = (
        _from_history(target, *seen, days, hot_per_day)
        if (seen := known.get(target.function or ""))
        else _footprint(target, data, by_name, days, window, hot_per_day)
        for change in changes
        for target in change_targets(change)
    )
    # A changed file without functions that no span points into (docs, config, a language
    # feedbot does not parse) has no footprint to speak of: it is left out, not listed unknown.
    return [f for f in found if f.function is not None or f.usage != "unknown"]


def _footprint(
    target: Target,
    data: ReleaseData,
    by_name: dict[str, list[SpanGroupStats]],
    days: float,
    window: timedelta,
    hot_per_day: float,
) -> Footprint:
    ran = group_hits(target, data)
    numbers = function_footprint(ran, target.function or target.file or "")
    if not numbers.calls:
        usage: Usage = "never" if _would_show(target, data) else "unknown"
        return Footprint(
            target.function,
            target.file,
            usage,
            0,
            0.0,
            watch=(_absent_line(target, usage, window),),
        )
    routes = _routes({group.name for group, _ in ran}, by_name)
    return _described(target, numbers, numbers.calls / days, days, hot_per_day, routes)


def _from_history(
    target: Target, seen: Seen, per_day: float, days: float, hot_per_day: float
) -> Footprint:
    """The footprint of what the checks saw, its routes the callers they saw."""
    routes = tuple(name for name, _ in seen.callers)
    return _described(target, seen, per_day, days, hot_per_day, routes)


def _described(
    target: Target,
    seen: Seen,
    per_day: float,
    days: float,
    hot_per_day: float,
    routes: tuple[str, ...],
) -> Footprint:
    """``seen``'s numbers, its counts scaled to ``per_day`` over the window (the checks of the
    history counted them over less serving time than the window), with what to watch for."""
    scale = per_day * days / seen.calls
    footprint = Footprint(
        function=target.function,
        file=target.file,
        usage="hot" if per_day >= hot_per_day else "used",
        calls=round(seen.calls * scale),
        per_day=per_day,
        p50_ms=seen.p50_ms,
        p95_ms=seen.p95_ms,
        errors=round(seen.errors * scale),
        error_rate=seen.error_rate,
        exceptions=tuple((kind, round(n * scale)) for kind, n in seen.exceptions),
        routes=routes,
    )
    return _with_watch(footprint, days)


def _would_show(target: Target, data: ReleaseData) -> bool:
    """Whether spans would name the target had it run, as :mod:`~feedbot.analysis.reach` judges
    it: a function that opens a span of its own, or a file-level change into whose file spans
    point. A helper called inside a traced function leaves no span of its own: unknown."""
    if target.function is not None:
        return target.traced
    return bool(target.file) and bool(target_hits(Target(None, target.file, ()), data))


def _routes(hits: Collection[str], by_name: dict[str, list[SpanGroupStats]]) -> tuple[str, ...]:
    """Entry points above the groups that ran the function, busiest first."""
    found: dict[str, int] = {}
    seen: set[str] = set()
    todo = list(hits)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for group in by_name.get(name, ()):
            callers = dict(group.callers)
            if group.kind in _ENTRY_KINDS or "(root)" in callers or "(remote)" in callers:
                found[name] = found.get(name, 0) + group.count
            todo.extend(c for c in callers if c not in ("(root)", "(remote)"))
    ranked = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(name for name, _ in ranked)


def _with_watch(footprint: Footprint, days: float) -> Footprint:
    lines = []
    if footprint.usage == "hot":
        lines.append(
            f"hot path: {count(footprint.per_day)} calls/day; a regression here reaches many "
            "requests"
        )
    elif footprint.per_day < 1:
        lines.append(
            f"rarely runs: {footprint.calls} calls in {days:g} days; the first checks after the "
            "deploy may not see it run"
        )
    for kind, n in footprint.exceptions[:3]:
        lines.append(f"raises {kind} {count(n / days)}/day")
    if footprint.error_rate is not None and footprint.error_rate >= ERROR_RATE_WATCH:
        lines.append(f"fails {footprint.error_rate:.1%} of its calls now")
    if footprint.p95_ms is not None:
        lines.append(f"p95 {ms(footprint.p95_ms)} now: the deploy's check compares against it")
    if footprint.routes:
        shown = ", ".join(footprint.routes[:_MAX_ROUTES])
        more = len(footprint.routes) - _MAX_ROUTES
        lines.append(f"runs under {shown}" + (f" and {more} more" if more > 0 else ""))
    return replace(footprint, watch=tuple(lines))


def _absent_line(target: Target, usage: Usage, window: timedelta) -> str:
    span = _window_text(window)
    if usage == "never":
        return f"never ran in production in {span}: check it is reachable, or that it is dead code"
    return (
        "unknown: no span names it (it opens no span of its own); feedbot cannot tell "
        "whether it runs"
    )


def _window_text(window: timedelta) -> str:
    days = window / timedelta(days=1)
    if days >= 1 and days == int(days):
        return f"{int(days)} day" + ("s" if days != 1 else "")
    hours = window / timedelta(hours=1)
    return f"{hours:g} hours"


def count(n: float) -> str:
    """A count for a sentence: ``3``, ``2.5``, ``12k``, ``1.2M``."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    if n >= 10 or n == int(n):
        return f"{n:.0f}"
    return f"{n:.1f}"


def ms(value: float) -> str:
    """A duration for a sentence: ``0.4 ms``, ``12 ms``, ``1.2 s``."""
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"
