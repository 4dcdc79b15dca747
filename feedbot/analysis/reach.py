"""Did the changed code run: each changed function (or file + lines) against the spans (§7.5).

The release's changed functions and files + line ranges are matched against the spans'
``code.*`` attributes (both semantic-convention generations are folded into
:class:`~feedbot.spans.model.CodeSeen` by the backend). "Not reached" is claimed only with
enough requests (rule of three: the reach rate is below ≈3/N), and "stopped being reached" only
when the exact conditional test against the baseline's reach says so.

Absence of a name on the spans means something only when spans would carry it had the code run:
a function the baseline's spans named, a function the change lists as ``traced`` (it opens a span
of its own), or a file some span of either version points into. A helper called inside a traced
function, or a docstring edit, leaves no trace of its own, so its status is ``unknown`` and it
never makes a "not reached" finding (issue #6). Section numbers (§) refer to
shared/reference/detection-methods.md. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from feedbot.analysis import stats
from feedbot.analysis.findings import Effect, Finding, Measure
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.footprint import same_function
from feedbot.spans.model import CodeSeen, ReleaseData, SpanGroupStats

ReachStatus = Literal["reached", "not_reached", "stopped", "not_yet", "unknown"]


@dataclass(frozen=True, slots=True)
class CodeReach:
    """Whether one changed function (or file) ran in the new version.

    Attributes:
        function: The changed function, None for a file-level change.
        file: The changed file.
        status: reached | not_reached | stopped | not_yet | unknown (no span would name it).
        hits: Spans in the new version that ran it.
        requests: Requests that could have reached it (its routes' traffic, else the service's).
        hits_base: Spans in the baseline that ran it.
        spans: Groups where it ran.
        bound: 95% upper bound on the reach rate when it was not reached.
        p_value: The "stopped being reached" p-value, when tested.
    """

    function: str | None
    file: str | None
    status: ReachStatus
    hits: int
    requests: int
    hits_base: int = 0
    spans: tuple[str, ...] = ()
    bound: float | None = None
    p_value: float | None = None

    @property
    def name(self) -> str:
        """The function, else the file."""
        return self.function or self.file or "changed code"


@dataclass(frozen=True, slots=True)
class _Target:
    function: str | None
    file: str | None
    lines: tuple[tuple[int, int], ...]
    traced: bool = False


def code_reach(
    changes: Sequence[Change],
    candidate: ReleaseData,
    baseline: ReleaseData | None,
    policy: DetectionPolicy,
) -> tuple[tuple[CodeReach, ...], list[Finding]]:
    """Match each changed function (or file + lines) against both versions' code attributes.

    Args:
        changes: The release's changes; ``traced`` names the functions that open a span.
        candidate: The new version's spans.
        baseline: The baseline's spans, if any.
        policy: ``reach`` thresholds and switch.

    Returns:
        One :class:`CodeReach` per target, and the findings to report.
    """
    if not policy.reach.enabled:
        return (), []
    targets = [t for change in changes for t in _targets(change)]
    results = tuple(_reach(t, candidate, baseline, policy) for t in targets)
    return results, [f for r in results if (f := _reach_finding(r, policy)) is not None]


def _targets(change: Change) -> list[_Target]:
    if change.functions:
        return [
            _Target(f, change.file, change.lines, any(same_function(f, t) for t in change.traced))
            for f in change.functions
        ]
    return [_Target(None, change.file, change.lines)] if change.file else []


def _norm_path(path: str) -> str:
    return path.replace("\\", "/").removeprefix("./").strip("/")


def _same_file(wanted: str, seen: str) -> bool:
    """Repository paths match span paths that are absolute or relative to another root."""
    w, s = _norm_path(wanted), _norm_path(seen)
    return w == s or s.endswith("/" + w) or w.endswith("/" + s)


def matches(target: _Target, seen: CodeSeen) -> bool:
    """Whether a code location recorded on spans belongs to a changed function or lines."""
    if target.function and seen.function and same_function(target.function, seen.function):
        return True
    if not (target.file and seen.filepath and _same_file(target.file, seen.filepath)):
        return False
    if not target.lines:
        return target.function is None
    return seen.lineno is not None and any(lo <= seen.lineno <= hi for lo, hi in target.lines)


def _hits(target: _Target, data: ReleaseData | None) -> dict[str, int]:
    """Spans that ran the target, per group name (see :func:`_group_hits`)."""
    out: dict[str, int] = {}
    for group, n in _group_hits(target, data):
        out[group.name] = out.get(group.name, 0) + n
    return out


def _group_hits(target: _Target, data: ReleaseData | None) -> list[tuple[SpanGroupStats, int]]:
    """Spans that ran the target, per group.

    When spans name the changed function itself, only those count: a change's line ranges
    also cover the other functions it changed, whose spans are their calls, not this one's.
    """
    groups = data.groups if data is not None else ()

    def named(seen: CodeSeen) -> bool:
        wanted, name = target.function, seen.function
        return bool(wanted and name and same_function(wanted, name))

    found = named if any(named(s) for g in groups for s in g.code) else partial(matches, target)
    out = []
    for group in groups:
        seen = [s for s in group.code if found(s)]
        if seen:
            out.append((group, sum(s.count for s in seen)))
    return out


def _file_on_spans(path: str | None, *versions: ReleaseData | None) -> bool:
    """Whether any span of the versions carries ``path`` as its code file."""
    return path is not None and any(
        seen.filepath is not None and _same_file(path, seen.filepath)
        for data in versions
        if data is not None
        for group in data.groups
        for seen in group.code
    )


def _matchable(
    target: _Target, hits_base: int, candidate: ReleaseData, baseline: ReleaseData | None
) -> bool:
    """Whether spans would name the target had it run (see the module docstring)."""
    if target.function is not None:
        return hits_base > 0 or target.traced
    return _file_on_spans(target.file, candidate, baseline)


def requests(data: ReleaseData) -> int:
    """Requests a release served: traces when known, else entry spans, else the busiest group."""
    if data.traces > 0:
        return data.traces
    entries = sum(
        n for g in data.groups for caller, n in g.callers if caller in ("(root)", "(remote)")
    )
    return entries or max((g.count for g in data.groups), default=0)


def _route_traffic(names: Collection[str], data: ReleaseData | None) -> int:
    return sum(g.count for g in data.groups if g.name in names) if data is not None else 0


def _reach(
    target: _Target,
    candidate: ReleaseData,
    baseline: ReleaseData | None,
    policy: DetectionPolicy,
) -> CodeReach:
    new, base = _hits(target, candidate), _hits(target, baseline)
    hits, hits_base = sum(new.values()), sum(base.values())
    fn, file = target.function, target.file
    if hits:
        traffic = _route_traffic(new, candidate) or requests(candidate)
        return CodeReach(fn, file, "reached", hits, traffic, hits_base, tuple(new))
    if not _matchable(target, hits_base, candidate, baseline):
        return CodeReach(fn, file, "unknown", 0, requests(candidate), hits_base)
    n_new = _route_traffic(base, candidate) or requests(candidate)
    if n_new <= 0:
        return CodeReach(fn, file, "not_yet", 0, 0, hits_base)
    n_base = _route_traffic(base, baseline) or (requests(baseline) if baseline else 0)
    test = stats.reach_test(0, n_new, hits_base, n_base, level=policy.reach.bound_level)
    if test.p_stopped is not None and test.p_stopped < policy.reach.stopped_alpha:
        status: ReachStatus = "stopped"
    else:
        status = "not_reached" if n_new >= policy.reach.min_requests else "not_yet"
    return CodeReach(fn, file, status, 0, n_new, hits_base, (), test.upper_bound, test.p_stopped)


def _reach_finding(reach: CodeReach, policy: DetectionPolicy) -> Finding | None:
    if reach.status == "unknown":
        return None
    name = reach.name
    bound = f"reach rate below {reach.bound:.2%} (95% bound)" if reach.bound is not None else ""
    where = ", ".join(reach.spans[:3]) + (" and more" if len(reach.spans) > 3 else "")
    texts: dict[ReachStatus, tuple[str, str]] = {
        "reached": (f"{name} ran in {reach.hits} spans ({where})", "match on code.* attributes"),
        "stopped": (
            f"{name} stopped being reached: 0 of {reach.requests} requests ran it, the baseline "
            f"ran it {reach.hits_base} times; {bound}; p={reach.p_value or 0:.2g}",
            "exact conditional test against the baseline's reach",
        ),
        "not_reached": (
            f"{name} has not run in {reach.requests} requests: {bound}",
            "rule of three (exact bound)",
        ),
        "not_yet": (
            f"{name} has not run yet in {reach.requests} requests; feedbot says 'not reached' "
            f"only after {policy.reach.min_requests}",
            "rule of three",
        ),
    }
    message, method = texts[reach.status]
    missed = reach.status in ("stopped", "not_reached")
    return Finding(
        kind="code_reached"
        if reach.status == "reached"
        else "code_not_reached"
        if missed
        else "low_traffic",
        severity="medium" if missed else "info",
        message=message,
        function=reach.function,
        file=reach.file,
        baseline=Measure(0, float(reach.hits_base), "count"),
        candidate=Measure(reach.requests, float(reach.hits), "count"),
        change=Effect(None, 0.0, reach.bound) if missed else None,
        p_value=reach.p_value if reach.status == "stopped" else None,
        method=method,
    )


def reach_sentence(reach: Sequence[CodeReach], *, any_code: bool = True) -> str | None:
    """One sentence on the changed code for the summary, None when the release listed none.

    Args:
        reach: The targets' results.
        any_code: Whether any span carried code attributes at all (the sentence says so).
    """
    if not reach:
        return None
    if not any_code and all(r.status == "unknown" for r in reach):
        return (
            "Changed code: unknown; the spans carry no code.* attributes "
            "(code.function.name / code.file.path, or code.function / code.filepath) to match."
        )
    counts = {
        s: sum(r.status == s for r in reach)
        for s in ("reached", "not_reached", "stopped", "not_yet", "unknown")
    }
    line = (
        "Changed code: "
        + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
        + "."
    )
    unknown = [r.name for r in reach if r.status == "unknown"]
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        line += (
            f" No span carries the code attributes of {shown}; feedbot cannot tell whether "
            f"{'it' if len(unknown) == 1 else 'they'} ran (only functions the baseline's spans "
            "named or that open a span of their own can be missed)."
        )
    return line


def has_code(*versions: ReleaseData | None) -> bool:
    """Whether any span of the versions carries code attributes."""
    return any(g.code for data in versions if data is not None for g in data.groups)


#: One changed function (or file + lines) as reach and the preview look for it.
Target = _Target


def change_targets(change: Change) -> list[_Target]:
    """What a change asks about: each changed function, else the file (and its lines)."""
    return _targets(change)


def target_hits(target: _Target, data: ReleaseData | None) -> dict[str, int]:
    """Spans that ran ``target``, per group name (named spans first; see :func:`_hits`)."""
    return _hits(target, data)


def group_hits(target: _Target, data: ReleaseData | None) -> list[tuple[SpanGroupStats, int]]:
    """Spans that ran ``target``, per group (named spans first; see :func:`_group_hits`)."""
    return _group_hits(target, data)
