"""The weekly channel digest: the agenda of a team's feedback meeting (pure: no I/O).

From the week's releases of the services that report to one channel and the report of each
release's last check, in the words of their stories (:mod:`feedbot.digest.story`): verdicts
per service, the top regressions and improvements (each change once, where its story tells
it), new error types, changed code that never ran, N+1 queries, slow drifts that never crossed
a threshold, and questions worth asking. A digest longer than one message is split into
several, each within Slack's 50 blocks; past :data:`MAX_MESSAGES` the rest is cut with a
pointer to ``/feedback``. With the code history (:class:`CodeWeek`) it ends with the code view:
changed code never reached since it shipped, the hottest changed functions, and code that runs
in production but in no test environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedbot.digest import delta, story
from feedbot.digest.blocks import MAX_BLOCKS, Block, Rendered, context, escape, section
from feedbot.digest.text import VERDICT_WORDS

TOP = 5
UNCHECKED = "⏳ not checked yet"
MAX_MESSAGES = 3
Finding = Mapping[str, Any]


@dataclass(frozen=True)
class Unreached:
    """A changed function that no span has named since its release shipped."""

    service: str
    version: str
    function: str
    shipped: datetime


@dataclass(frozen=True)
class Hot:
    """A function or operation and its calls a day over the week (``elsewhere``: the
    environments of its service it never ran in)."""

    service: str
    name: str
    per_day: float
    elsewhere: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodeWeek:
    """The digest's code view, from the code history (:mod:`feedbot.store.history`).

    Attributes:
        unreached: Changed functions never reached since they shipped.
        hottest: The week's changed functions by calls a day, busiest first.
        production_only: Code that ran in production but in no other environment its service
            was deployed to (staging, tests), busiest first.
    """

    unreached: Sequence[Unreached] = ()
    hottest: Sequence[Hot] = ()
    production_only: Sequence[Hot] = ()


@dataclass(frozen=True)
class WeekRelease:
    """One release of the week and the report of its last finished check (None: unchecked)."""

    service: str
    version: str
    deployed_at: datetime
    report: Mapping[str, Any] | None
    rollback: bool = False


def render(
    channel: str,
    period: str,
    releases: Sequence[WeekRelease],
    code: CodeWeek | None = None,
    *,
    page: str | None = None,
    call: str | None = None,
) -> list[Rendered]:
    """The digest for one channel as one or more messages.

    Args:
        channel: Where it goes (shown in the title).
        period: The week it covers, as a label ("week of 2026-11-23").
        releases: The week's releases, any order.
        code: The code view of the channel's services, when the history has any.
        page: The meeting's page (a signed link), linked under the title.
        call: Where the meeting happens (``slack.weekly_digest.meeting_link``).

    Returns:
        At least one message; each within Slack's limits.
    """
    ordered = sorted(releases, key=lambda r: (r.service, r.deployed_at))
    title = f"📋 Weekly feedback for {escape(channel)}, {escape(period)}"
    links = (
        [f"<{page}|The meeting's page: every change, its evidence, the questions>"] if page else []
    )
    links += [f"<{call}|Join the meeting>"] if call else []
    linked = [context(" · ".join(links))] if links else []
    if not ordered:
        return [
            Rendered(
                text=f"{title}: no releases",
                blocks=(section(f"*{title}*\nNo releases this week."), *linked),
            )
        ]
    blocks = [section(f"*{title}*"), *linked, context(_totals(ordered))]
    blocks += [section(t) for t in _parts(ordered) if t]
    blocks += [section(t) for t in code_parts(code) if t] if code else []
    return _split(title, blocks)


def code_parts(code: CodeWeek) -> list[str]:
    """The code view: never reached since shipped, hottest changed functions, production only."""
    unreached = [
        f"• {escape(u.service)} {escape(u.version)}: `{escape(u.function)}` "
        f"(shipped {u.shipped:%b %d})"
        for u in code.unreached
    ]
    hottest = [
        f"• {escape(h.service)}: `{escape(h.name)}` {_per_day(h.per_day)} calls a day"
        for h in code.hottest
    ]
    only = [
        f"• {escape(h.service)}: `{escape(h.name)}` {_per_day(h.per_day)} calls a day, "
        f"never in {', '.join(escape(e) for e in h.elsewhere)}"
        for h in code.production_only
    ]
    return [
        _capped("Code never reached since it shipped", unreached),
        _capped("Hottest changed functions", hottest),
        _capped("Runs in production, in no test environment", only),
    ]


def _capped(title: str, lines: Sequence[str]) -> str:
    if not lines:
        return ""
    shown = list(lines[:TOP])
    if len(lines) > TOP:
        shown.append(f"… and {len(lines) - TOP} more (`/feedback <function>` for each)")
    return f"*{title}*\n" + "\n".join(shown)


def _per_day(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def _totals(releases: Sequence[WeekRelease]) -> str:
    verdicts = [_verdict(r) for r in releases]
    services = len({r.service for r in releases})
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    parts = ", ".join(f"{n} {VERDICT_WORDS.get(v, UNCHECKED)}" for v, n in counts.items())
    return f"{len(releases)} releases of {services} services: {parts}"


def _verdict(release: WeekRelease) -> str:
    return str(release.report.get("verdict")) if release.report else "unchecked"


def _parts(releases: Sequence[WeekRelease]) -> list[str]:
    findings = [(r, f) for r in releases if r.report for f in r.report.get("findings", [])]
    return [
        _by_service(releases),
        _top("Top regressions", findings, "latency_regression", reverse=True),
        _top("Top improvements", findings, "latency_improvement", reverse=False),
        _list("New error types", findings, _new_type_alarm),
        _list(
            "Changed code never reached", findings, lambda f: f.get("kind") == "code_not_reached"
        ),
        _list("N+1 queries", findings, lambda f: f.get("kind") == "n_plus_one"),
        _drifts(findings) if any(r.report for r in releases) else "",
        _questions(findings),
    ]


def _by_service(releases: Sequence[WeekRelease]) -> str:
    lines: dict[str, list[str]] = {}
    for r in releases:
        word = VERDICT_WORDS.get(_verdict(r), UNCHECKED)
        back = " (rollback)" if r.rollback else ""
        lines.setdefault(r.service, []).append(f"{escape(r.version)}{back} {word}")
    body = "\n".join(f"• *{escape(s)}*: " + " · ".join(v) for s, v in lines.items())
    return "*Releases*\n" + body


def _ratio(finding: Finding) -> float:
    return float((finding.get("change") or {}).get("ratio") or 1.0)


def _top(
    title: str, findings: Sequence[tuple[WeekRelease, Finding]], kind: str, *, reverse: bool
) -> str:
    """The biggest confirmed changes of ``kind``, each told once: where its story is told."""
    told = {id(r): story.leads(r.report) for r, _ in findings if r.report}
    chosen = [
        (r, f)
        for r, f in findings
        if f.get("kind") == kind
        and f.get("state") == "confirmed"
        and delta.key_of(f) in told.get(id(r), ())
    ]
    chosen.sort(key=lambda pair: _ratio(pair[1]), reverse=reverse)
    return _lines(title, chosen[:TOP], len(chosen))


def _list(
    title: str, findings: Sequence[tuple[WeekRelease, Finding]], keep: Callable[[Finding], bool]
) -> str:
    chosen = [(r, f) for r, f in findings if keep(f)]
    return _lines(title, chosen[:TOP], len(chosen))


def _lines(title: str, chosen: Sequence[tuple[WeekRelease, Finding]], total: int) -> str:
    if not chosen:
        return ""
    lines = [
        f"• {escape(r.service)} {escape(r.version)}: {escape(story.say(f, r.report or {}))}"
        for r, f in chosen
    ]
    if total > len(chosen):
        lines.append(f"… and {total - len(chosen)} more (`/feedback <service>` for each)")
    return f"*{title}*\n" + "\n".join(lines)


def _drifts(findings: Sequence[tuple[WeekRelease, Finding]]) -> str:
    """Changes still "watching" at the last look: never confirmed, worth a closer look."""
    slow = [
        (r, f)
        for r, f in findings
        if f.get("state") == "suspected" and "regression" in str(f.get("kind"))
    ]
    if not slow:
        return "*Slow drifts*\nAll good: no slowdown stayed below the bar all week."
    return _lines(
        "Slow drifts, worth a closer look (never crossed the threshold)", slow[:TOP], len(slow)
    )


def _new_type_alarm(finding: Finding) -> bool:
    """A new exception type that passed its test; one that did not is a fact for the thread."""
    return finding.get("kind") == "new_error_type" and finding.get("severity") != "info"


def _worth_asking(finding: Finding) -> bool:
    return finding.get("kind") != "new_error_type" or _new_type_alarm(finding)


def _questions(findings: Sequence[tuple[WeekRelease, Finding]]) -> str:
    """Questions for the meeting, one per notable finding, the most pressing first."""
    asks = {
        "latency_regression": "Was the slowdown of {span} in {service} {version} expected?",
        "new_error_type": "Who handles {exception_type} in {span} ({service} {version})?",
        "code_not_reached": "Is {function} of {service} {version} behind a flag, or unused?",
        "n_plus_one": "Is batching the repeated query under {span} ({service}) worth it?",
    }
    out: list[str] = []
    for kind, ask in asks.items():
        for r, f in findings:
            if f.get("kind") == kind and len(out) < TOP and _worth_asking(f):
                fields = {
                    k: str(f.get(k) or k.replace("_", " "))
                    for k in ("span", "exception_type", "function")
                }
                out.append(
                    "• " + escape(ask.format(service=r.service, version=r.version, **fields))
                )
    return "*Questions for the feedback meeting*\n" + "\n".join(out) if out else ""


def _split(title: str, blocks: Sequence[Block]) -> list[Rendered]:
    """Up to :data:`MAX_MESSAGES` messages of at most 50 blocks; the rest is cut with a pointer."""
    size = MAX_BLOCKS - 1
    chunks = [list(blocks[i : i + size]) for i in range(0, len(blocks), size)]
    if len(chunks) > MAX_MESSAGES:
        chunks = chunks[:MAX_MESSAGES]
        chunks[-1].append(
            context("… the rest did not fit: ask `/feedback <service>` for each service")
        )
    out = []
    for i, chunk in enumerate(chunks, 1):
        part = f" ({i}/{len(chunks)})" if len(chunks) > 1 else ""
        out.append(Rendered(text=f"{title}{part}", blocks=tuple(chunk)))
    return out
