"""The ``/feedback`` answer in Block Kit, from a stored report (pure: no I/O).

What a developer wants before touching the code: what changed in the newest checked release
(its story, :mod:`feedbot.digest.story`, told as in the thread), how much traffic it gets and
from whom (the calling operations, from parent spans), its p50/p95/p99 and error rate
(baseline → now), and what the last releases did.
A feature narrows the report to its span groups (``features.<name>.spans``, globs allowed) and
to findings about its code (``features.<name>.code``: module or path prefixes).
A function, file or route is answered from the code history (:func:`code_feedback`), and a
feature that matches nothing says so without a verdict (:func:`feature_matches_nothing`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from feedbot.config import FeatureConfig
from feedbot.digest import story
from feedbot.digest.blocks import (
    MAX_SECTION,
    Rendered,
    ReplyOptions,
    chapter_blocks,
    context,
    escape,
    fit,
    samples_line,
    section,
)
from feedbot.digest.text import VERDICT_WORDS
from feedbot.digest.words import display_name
from feedbot.store.history import Summary as CodeSummary

TOP_GROUPS = 8
#: Characters of a caller's name shown in the answer.
MAX_CALLER = 80


@dataclass(frozen=True)
class Past:
    """One earlier release of the service: version, when, the verdict of its last check.

    ``superseded``: a newer deploy replaced it before all its checks ran.
    """

    version: str
    deployed_at: datetime
    verdict: str | None
    rollback: bool = False
    superseded: bool = False


@dataclass(frozen=True)
class View:
    """What ``/feedback`` answers from: the newest checked release and the service's history."""

    release_id: int
    environment: str
    deployed_at: datetime
    report: Mapping[str, Any]
    acknowledged: Collection[str] = frozenset()
    history: Sequence[Past] = field(default_factory=tuple)


def feedback(
    view: View,
    *,
    feature_name: str | None,
    feature: FeatureConfig | None,
    ui_url: str | None = None,
) -> Rendered:
    """The answer for a service, or for one feature of it.

    Args:
        view: The stored report and history.
        feature_name: The feature asked about, when a feature was named.
        feature: Its config (spans and code), to narrow the report.
        ui_url: The trace UI, for links to example traces.

    Returns:
        Text and blocks within Slack's limits.
    """
    report = narrow(view.report, feature) if feature else dict(view.report)
    told = story.tell(report, acknowledged=view.acknowledged)
    head, verdict, title = _head(view, report, feature_name)
    blocks = [section(head)]
    if told.chapters:
        blocks += chapter_blocks(told.chapters, ReplyOptions(heading="", ui_url=ui_url))
    else:
        blocks.append(section(escape(told.headline)))
    blocks += [context(escape(line)) for line in (told.rest, told.code) if line]
    blocks.append(
        section("*Traffic, callers and latency* (baseline → now)\n" + groups_text(report))
    )
    blocks.append(context(samples_line(report)))
    if view.history:
        blocks.append(section("*Last releases*\n" + "\n".join(_past(p) for p in view.history)))
    return Rendered(text=f"{title}: {verdict}", blocks=fit(blocks, "`feedbot report`"))


def _head(view: View, report: Mapping[str, Any], feature_name: str | None) -> tuple[str, str, str]:
    """The first line: what is answered, which release, against what, and the verdict."""
    about = f"{escape(feature_name)} ({escape(str(report['service']))})" if feature_name else ""
    title = about or escape(str(report["service"]))
    verdict = VERDICT_WORDS.get(str(report.get("verdict")), str(report.get("verdict")))
    head = (
        f"*{title}* — newest checked release {escape(str(report['version']))} "
        f"({escape(view.environment)}, deployed {view.deployed_at:%b %d %H:%M} UTC) "
        f"against {escape(str(report.get('baseline_version') or 'no baseline'))}: {verdict}"
    )
    return head, verdict, title


def narrow(report: Mapping[str, Any], feature: FeatureConfig) -> dict[str, Any]:
    """The report with only the feature's groups and the findings about them or its code."""
    groups = [g for g in report.get("groups", []) if _span_in(str(g["span"]), feature.spans)]
    spans = {g["span"] for g in groups}
    findings = [
        f for f in report.get("findings", []) if f.get("span") in spans or _code_in(f, feature.code)
    ]
    return {**report, "groups": groups, "findings": findings}


def _span_in(span: str, patterns: Sequence[str]) -> bool:
    return any(span == p or fnmatchcase(span, p) for p in patterns)


def _code_in(finding: Mapping[str, Any], prefixes: Sequence[str]) -> bool:
    where = [str(finding.get("function") or ""), str(finding.get("file") or "")]
    as_paths = [p.replace(".", "/") for p in prefixes]
    return any(w and w.startswith(p) for w in where for p in (*prefixes, *as_paths))


def groups_text(report: Mapping[str, Any]) -> str:
    """The busiest groups: traffic as a rate, p50/p95/p99 with n, error rate, baseline → now."""
    groups = sorted(
        report.get("groups", []),
        key=lambda g: -int((g.get("candidate") or g.get("baseline") or {}).get("count") or 0),
    )
    if not groups:
        return "No spans of these groups in the checked windows."
    served = serving(report)
    lines = [_group_line(g, served) for g in groups[:TOP_GROUPS]]
    if len(groups) > TOP_GROUPS:
        lines.append(f"… and {len(groups) - TOP_GROUPS} quieter groups")
    return "\n".join(lines)


def _group_line(group: Mapping[str, Any], served: Mapping[str, Serving | None]) -> str:
    base, new = group.get("baseline") or {}, group.get("candidate") or {}
    line = (
        f"• `{escape(display_name(str(group['span'])))}`: {traffic(base, new, served)} · "
        f"p50/p95/p99 {_pcts(base)} → {_pcts(new)} ms (n = {_n(base)} → {_n(new)}) · "
        f"errors {_rate(base)} → {_rate(new)}"
    )
    callers = callers_text(group)
    return f"{line}\n    {callers}" if callers else line


@dataclass(frozen=True)
class Serving:
    """How long a version was seen serving: what its span counts are divided by for a rate.

    ``whole_window`` is set when that is its query window, for reports stored before the time
    each version served was recorded (``observed``).
    """

    seconds: float
    whole_window: bool = False


def serving(report: Mapping[str, Any]) -> dict[str, Serving | None]:
    """Per side (``baseline``, ``candidate``): the time from its first to its last span start.

    Where the report has no ``observed`` time for a side (reports stored before it was
    recorded), its query window stands in, marked ``whole_window``; None without either.
    """
    observed = report.get("observed")
    seen = observed if isinstance(observed, Mapping) else {}
    windows = report.get("window") or {}
    out: dict[str, Serving | None] = {}
    for key in ("baseline", "candidate"):
        if seen.get(key):
            out[key] = Serving(_seconds(seen[key]))
        elif windows.get(key):
            out[key] = Serving(_seconds(windows[key]), whole_window=True)
        else:
            out[key] = None
    return out


def traffic(
    base: Mapping[str, Any], new: Mapping[str, Any], served: Mapping[str, Serving | None]
) -> str:
    """Spans per minute (per hour when either side is under one a minute), baseline → now.

    A version's rate is its spans over the time it was seen serving, from its first span's
    start to its last's: the baseline's query window is the day before the deploy, which it
    may have served only minutes of. A version seen for less than :data:`STEADY` shows its count
    and that time instead ("17 spans in 5 s"): too short a spell for a steady rate. Reports
    stored before serving times were recorded divide by the query windows, and say so; without
    either the counts are shown as such.
    """
    sides = [
        _per_minute(side, served.get(key)) for side, key in ((base, "baseline"), (new, "candidate"))
    ]
    if any(s is None for s in sides):
        return f"{_n(base)} → {_n(new)} spans (no window to make a rate)"
    known = [s for s in sides if s is not None]
    per_hour = any(isinstance(s, float) and 0 < s < 1 for s in known)
    unit = "spans/h" if per_hour else "spans/min"
    shown = [s if isinstance(s, str) else _amount(s * 60 if per_hour else s) for s in known]
    rated = [isinstance(s, float) for s in known]
    if all(rated):
        text = f"{shown[0]} → {shown[1]} {unit}"
    else:
        # Beside a count and a time, a version without the group's spans reads "none".
        text = " → ".join(
            (f"{t} {unit}" if k else "none") if r else t
            for t, r, k in zip(shown, rated, known, strict=True)
        )
    spells = (served.get("baseline") if base else None, served.get("candidate") if new else None)
    if any(s is not None and s.whole_window for s in spells):
        text += " (rates over the whole query windows: report stored before serving times)"
    return text


#: A version seen serving for less than this shows a count and how long, never a rate.
STEADY = timedelta(minutes=1)


def _per_minute(side: Mapping[str, Any], spell: Serving | None) -> float | str | None:
    """Spans a minute over ``spell``; "N spans in S s" when it is shorter than STEADY."""
    if not side:
        return 0.0
    if spell is None:
        return None
    count = int(side.get("count") or 0)
    if spell.seconds < STEADY.total_seconds():
        took = "under 1 s" if spell.seconds < 1 else f"{spell.seconds:.0f} s"
        return f"{count:,} span{'' if count == 1 else 's'} in {took}"
    return count / (spell.seconds / 60)


def _seconds(window: Mapping[str, str]) -> float:
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    return max(0.0, (end - start).total_seconds())


def _amount(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def callers_text(group: Mapping[str, Any]) -> str:
    """Who calls a group, from parent spans: ``called by GET /vaults/{id} (812), (remote) (40)``.

    The new version's callers, else the baseline's (a group that is gone); empty when the report
    has none (reports stored before callers were recorded).
    """
    for side, when in (("candidate", ""), ("baseline", " (baseline)")):
        callers = (group.get(side) or {}).get("callers") or []
        if callers:
            named = ", ".join(
                f"{escape(display_name(str(c['span']))[:MAX_CALLER])} ({int(c['count'])})"
                for c in callers
            )
            return f"called by {named}{when}"
    return ""


def _n(side: Mapping[str, Any]) -> str:
    return str(side.get("count", "–"))


def _pcts(side: Mapping[str, Any]) -> str:
    values = [side.get(k) for k in ("p50_ms", "p95_ms", "p99_ms")]
    return "/".join("–" if v is None else f"{v:.1f}" for v in values) if side else "–"


def _rate(side: Mapping[str, Any]) -> str:
    count = int(side.get("count") or 0)
    if not count:
        return "–"
    return f"{100 * int(side.get('errors') or 0) / count:.2f}%"


def _past(past: Past) -> str:
    if past.verdict is None:
        verdict = "⏭ superseded before its checks ran" if past.superseded else "not checked yet"
    else:
        verdict = VERDICT_WORDS.get(past.verdict, past.verdict)
        verdict += " (superseded before its last check)" if past.superseded else ""
    rollback = " (rollback)" if past.rollback else ""
    return f"• {escape(past.version)}{rollback} · {past.deployed_at:%b %d} · {verdict}"


def unknown(name: str, known: Sequence[str], close: Sequence[str]) -> Rendered:
    """The answer for a name feedbot does not know: a guess, and every name it knows."""
    guess = f" Did you mean {' or '.join(f'`{escape(c)}`' for c in close)}?" if close else ""
    names = ", ".join(f"`{escape(k)}`" for k in known) or "none yet (no release registered)"
    text = f"I don't know `{escape(name)}`.{guess}\nServices and features I know: {names}"
    return Rendered(text=text, blocks=(section(text),))


def no_checks(service: str, version: str | None) -> Rendered:
    """The answer before any check of the service (or version) has finished."""
    which = f"{service}@{version}" if version else service
    text = f"No finished check of `{escape(which)}` yet: I answer once its first check has run."
    return Rendered(text=text, blocks=(section(text),))


def feature_matches_nothing(name: str, feature: FeatureConfig, close: Sequence[str]) -> Rendered:
    """A feature whose span globs match no group of its service's newest check: no verdict.

    Args:
        name: The feature asked about.
        feature: Its config (service and span globs).
        close: The span groups nearest to its globs.
    """
    globs = ", ".join(f"`{escape(p)}`" for p in feature.spans) or "none"
    nearest = ", ".join(f"`{escape(display_name(c))}`" for c in close)
    text = (
        f"`{escape(name)}` matches nothing: its spans ({globs}) name no span group that the "
        f"newest check of {escape(feature.service)} saw, so there is nothing to judge."
        + (f"\nClosest operations: {nearest}" if nearest else "")
        + f"\nFix `features.{escape(name)}.spans` in the config."
    )
    return Rendered(text=text, blocks=(section(text),))


KIND_WORDS = {"function": "function", "operation": "operation", "file": "file"}


def code_feedback(summary: CodeSummary, also: Sequence[str] = ()) -> Rendered:
    """``/feedback <function | file | route>`` from the code history (no verdict: a history).

    Is it used (calls a day, the trend), who calls it, its baseline (p50/p95, error rate), the
    exception types and findings seen there, the environments it ran in, and the releases that
    changed it.

    Args:
        summary: What :func:`feedbot.store.history.summarise` gathered.
        also: Other keys the name matched (another kind), named in a last line.
    """
    kinds = sorted({kind for _, kind, _ in summary.keys})
    names = ", ".join(
        f"`{escape(display_name(name))}` ({escape(service)})"
        for service, _, name in summary.keys[:4]
    )
    more = f" and {len(summary.keys) - 4} more" if len(summary.keys) > 4 else ""
    what = " / ".join(KIND_WORDS.get(k, k) for k in kinds)
    head = f"*{escape(summary.query)}* — {what} {names}{more}"
    blocks = [section(head)]
    blocks.append(section("*Is it used?*\n" + _usage(summary)))
    blocks.append(section("*Who calls it*\n" + _callers(summary.callers)))
    blocks.append(section("*Baseline*\n" + _baseline(summary)))
    found = [_exceptions_line(summary), _insights_line(summary)]
    blocks.append(section("*Seen there*\n" + "\n".join(line for line in found if line)))
    blocks.append(section("*Environments*\n" + _environments(summary)))
    blocks.append(section("*Releases that changed it*\n" + _touched(summary)))
    if also:
        blocks.append(context("Also matched: " + ", ".join(f"`{escape(a)}`" for a in also)))
    seen = (
        f"first seen {summary.first_seen:%b %d %Y}, last seen {summary.last_seen:%b %d %H:%M} UTC"
        if summary.first_seen and summary.last_seen
        else "not seen yet"
    )
    blocks.append(context(f"From feedbot's code history ({seen}); no trace store was queried."))
    latest = summary.per_day[-1][1] if summary.per_day else 0.0
    text = f"{summary.query}: {_amount(latest)} calls a day in {summary.main_environment}"
    return Rendered(text=text, blocks=fit(blocks, "`feedbot feedback`"))


def _usage(summary: CodeSummary) -> str:
    if not summary.per_day:
        return f"Not seen in {escape(summary.main_environment)} by any check."
    day, latest = summary.per_day[-1]
    where = escape(summary.main_environment)
    calls, seconds = summary.observed or (0, float(_DAY))
    if seconds < _DAY / 4:  # a short window: say what was counted, then the rate it makes
        line = (
            f"{_amount(calls)} calls in {_span_of(seconds)} of serving in {where} ({day:%b %d}):"
            f" about {_amount(latest)} a day at that rate"
        )
    else:
        line = f"{_amount(latest)} calls a day in {where} ({day:%b %d})"
    if summary.trend is None:
        line += " · no trend yet (under two weeks of history)"
    else:
        pct = (summary.trend - 1) * 100
        arrow = "↑" if pct > 5 else "↓" if pct < -5 else "→"
        line += f" · {arrow} {pct:+.0f}% over the last week against the three before"
    if len(summary.per_day) > 1:
        values = [v for _, v in summary.per_day[-14:]]
        line += f"\n{_spark(values)} last {len(values)} days checked"
    return line


_DAY = 86_400


def _span_of(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``: how long a count was taken over."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5_400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h"


_BARS = "▁▂▃▄▅▆▇█"


def _spark(values: Sequence[float]) -> str:
    top = max(values) or 1.0
    return "".join(_BARS[min(7, int(v / top * 7.999))] for v in values)


def _callers(callers: Sequence[tuple[str, int]]) -> str:
    if not callers:
        return "No caller recorded (root spans only, or not seen)."
    words = {"(remote)": "another service (remote parent)", "(root)": "nothing: an entry point"}
    return "\n".join(
        f"• {escape(words.get(name, display_name(name))[:MAX_CALLER])} ({count:,} spans)"
        for name, count in callers
    )


def _baseline(summary: CodeSummary) -> str:
    if not summary.calls:
        return f"No calls in {escape(summary.main_environment)} over the last 30 days."
    p50 = "–" if summary.p50_ms is None else f"{summary.p50_ms:.1f}"
    p95 = "–" if summary.p95_ms is None else f"{summary.p95_ms:.1f}"
    rate = f"{100 * (summary.error_rate or 0):.2f}%"
    return (
        f"p50 {p50} ms · p95 {p95} ms · errors {rate} "
        f"({summary.calls:,} calls in {escape(summary.main_environment)}, last 30 days)"
    )


def _exceptions_line(summary: CodeSummary) -> str:
    if not summary.exceptions:
        return "No exception recorded."
    return "Exceptions: " + ", ".join(
        f"`{escape(name)}` ({n:,}, last {last:%b %d})" for name, n, last in summary.exceptions[:6]
    )


def _insights_line(summary: CodeSummary) -> str:
    if not summary.insights:
        return ""
    return "Findings: " + ", ".join(
        f"{escape(kind.replace('_', ' '))} ×{n} (last {last:%b %d})"
        for kind, n, last in summary.insights[:6]
    )


def _environments(summary: CodeSummary) -> str:
    if not summary.environments:
        return "No environment recorded."
    lines = [
        f"• {escape(e.environment)}: "
        + (f"✅ {e.calls:,} calls, last {e.last_seen:%b %d}" if e.calls and e.last_seen
           else "❌ never ran there")
        for e in summary.environments
    ]  # fmt: skip
    ran = {e.environment for e in summary.environments if e.calls}
    never = [e.environment for e in summary.environments if not e.calls]
    if ran and never:
        lines.append(
            f"Runs in {', '.join(sorted(escape(r) for r in ran))} but never in "
            f"{', '.join(escape(n) for n in never)}: no test there has reached it."
        )
    return "\n".join(lines)


def _touched(summary: CodeSummary) -> str:
    if not summary.touched:
        return "None that feedbot registered (or changes named no function here)."
    lines = []
    for t in summary.touched:
        verdict = VERDICT_WORDS.get(t.verdict, t.verdict) if t.verdict else "not checked yet"
        changed = ", ".join(f"`{escape(f)}`" for f in t.functions[:3])
        title = f" “{escape(t.title)}”" if t.title else ""
        lines.append(
            f"• {escape(t.service)} {escape(t.version)} · {t.deployed_at:%b %d} · "
            f"{escape(t.environment)} · {verdict}{title}"
            + (f" — changed {changed}" if changed else "")
        )
    return "\n".join(lines)


#: Agenda lines ``/feedback meeting`` shows before pointing to the page.
MAX_AGENDA = 25


def meeting(
    lines: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    page: str | None = None,
    call: str | None = None,
) -> Rendered:
    """``/feedback meeting``: what reached production in the period, one line a release, then
    the open questions; a link to the meeting's page and to the call when they are known."""
    title = f"📋 Feedback meeting: what reached production {start:%b %d} – {end:%b %d}"
    blocks = [section(f"*{escape(title)}*")]
    links = [
        f"<{page}|The meeting's page>" if page else "",
        f"<{call}|Join the call>" if call else "",
    ]
    if any(links):
        blocks.append(context(" · ".join(link for link in links if link)))
    if not lines:
        blocks.append(section("Nothing reached production in this period."))
    chunk: list[str] = []
    for line in lines[:MAX_AGENDA]:
        text = f"• {escape(line)}"[: MAX_SECTION - 10]
        if chunk and sum(len(x) + 1 for x in chunk) + len(text) > MAX_SECTION - 10:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(text)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    if len(lines) > MAX_AGENDA:
        more = len(lines) - MAX_AGENDA
        blocks.append(context(f"… and {more} more lines on the meeting's page."))
    return Rendered(text=f"{title}: {len(lines)} items", blocks=fit(blocks, "the meeting's page"))
