"""Block Kit renderings of feedback, from the stored report JSON (pure: no I/O).

A check's reply is rendered from ``check.result["report"]`` (the :func:`feedbot.analysis.report.
to_json` contract), so a reply can be rebuilt from the store at any time. The verdict comes
first; then changed code, latency, errors, N+1 and bottlenecks; groups without a change collapse
into one line. Every number carries its samples and window. Everything returned is within Slack's
limits (:func:`fit`) and every piece of user or trace text is mrkdwn-escaped (:func:`escape`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from feedbot.digest import delta
from feedbot.digest.text import VERDICT_WORDS, plural, release_title, status_line
from feedbot.digest.text import release_parent as parent_text
from feedbot.durations import format_duration
from feedbot.store.models import Release

Block = dict[str, Any]
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_BUTTON_VALUE = 2000
MAX_URL = 2000
MAX_LABEL = 80
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*)/[A-Za-z0-9._-]+$")
_SHA = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SAFE_URL = re.compile(r"^https?://[^\s<>|]+$")
#: Finding kinds that may be acknowledged ("expected") and, once confirmed, broadcast.
ALARMS = frozenset({"latency_regression", "error_rate_increase", "new_error_type"})
_SECTIONS = (
    ("Changed code", ("code_reached", "code_not_reached")),
    ("Latency", ("latency_regression", "latency_improvement")),
    ("Errors", ("error_rate_increase", "error_rate_decrease", "new_error_type")),
    ("N+1 queries", ("n_plus_one",)),
    ("Bottlenecks", ("bottleneck",)),
    ("Operations", ("new_operation", "operation_gone", "low_traffic")),
)
PERCENTILES = ("p50", "p95", "p99")
ACTION_EXPECTED = "feedbot_expected"
ACTION_MUTE = "feedbot_mute"
ACTION_TRACES = "feedbot_traces"


@dataclass(frozen=True)
class Rendered:
    """A message: the plain ``text`` fallback and its blocks."""

    text: str
    blocks: tuple[Block, ...]


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
_FILE_TARGET = re.compile(r"^([A-Z][A-Z_ ]*?) (/\S*/)([^/\s]+\.[A-Za-z0-9]+)$")


def display_name(span: str) -> str:
    """A span group's name as shown: ``SELECT /tmp/x/vault.db`` reads ``SELECT vault.db``.

    Only a database operation on a file path (SQLite's span names) is shortened, to the file's
    name; HTTP routes and every other name are shown as they are.
    """
    match = _FILE_TARGET.match(span)
    if match is None or match[1] in _HTTP_METHODS:
        return span
    return f"{match[1]} {match[3]}"


def escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so user text cannot form links, mentions or markup.

    Control characters other than newline and tab (a span name may carry any) become ``\\xNN``.
    """
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def trace_url(ui_url: str | None, trace_id: str) -> str | None:
    """The link to one trace: ``{trace_id}`` in ``ui_url`` is replaced, else ``/trace/<id>``."""
    if not ui_url:
        return None
    if "{trace_id}" in ui_url:
        return ui_url.replace("{trace_id}", trace_id)
    return f"{ui_url.rstrip('/')}/trace/{trace_id}"


def finding_key(finding: Mapping[str, Any]) -> str:
    """:attr:`feedbot.analysis.findings.Finding.key` of a finding in report JSON."""
    return delta.key_of(finding)


def is_alarm(finding: Mapping[str, Any]) -> bool:
    """What is broadcast to the service's channel: a confirmed regression, or a new exception type
    whose test passed in its own family (severity high), from its first look.

    A first-seen type that is not significant is a low-key fact (severity info): listed, not
    broadcast.
    """
    if finding.get("kind") == "new_error_type":
        return finding.get("severity") == "high"
    return finding.get("kind") in ALARMS and finding.get("state") == "confirmed"


def section(text: str) -> Block:
    """A mrkdwn section, cut to Slack's 3,000 characters with a pointer when longer."""
    if len(text) > MAX_SECTION:
        tail = "\n… (cut to fit Slack; `feedbot report` prints all of it)"
        text = text[: MAX_SECTION - len(tail)].rsplit("\n", 1)[0] + tail
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> Block:
    """A small grey line (one mrkdwn element)."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:MAX_SECTION]}]}


def fit(blocks: Sequence[Block], pointer: str = "`feedbot report`") -> tuple[Block, ...]:
    """At most 50 blocks: the rest is replaced by one line saying what was left out."""
    if len(blocks) <= MAX_BLOCKS:
        return tuple(blocks)
    kept = list(blocks[: MAX_BLOCKS - 1])
    left = len(blocks) - len(kept)
    return (*kept, context(f"… {left} more parts did not fit in one message: see {pointer}"))


@dataclass(frozen=True)
class ReplyOptions:
    """How to render a check reply.

    Attributes:
        heading: What this reply is ("+15m check of vault-service 1.4.2 → production").
        ui_url: The trace UI, for links to example traces.
        release_id: Enables the "expected" and mute buttons for this release.
        acknowledged: Finding keys marked expected for this release: listed in one line only.
        previous: The findings of the reply before this one; with them the reply says what
            changed since (new, changed, went away) and sums up the rest in one line.
        since: What that reply was ("+15m check"), for the words "since the +15m check".
    """

    heading: str
    ui_url: str | None = None
    release_id: int | None = None
    acknowledged: Collection[str] = ()
    previous: Sequence[Mapping[str, Any]] | None = None
    since: str = "the last check"


def check_reply(report: Mapping[str, Any], options: ReplyOptions) -> Rendered:
    """A check's thread reply from its report JSON.

    The first reply shows every finding. A later one (``options.previous`` set) shows in full
    only the findings that are new or changed since, says which went away, and sums up the
    unchanged ones in one line: "Expected" buttons go only on new or changed alarms.

    Args:
        report: ``to_json`` output.
        options: heading, trace UI, buttons and the previous reply's findings.

    Returns:
        The fallback text and at most 50 blocks.
    """
    findings = [f for f in report.get("findings", []) if finding_key(f) not in options.acknowledged]
    change = (
        None
        if options.previous is None
        else delta.compare(options.previous, findings, options.acknowledged)
    )
    shown = findings if change is None else list(change.fresh)
    heading = escape(options.heading)
    if change is not None:
        heading += f" · since the {escape(options.since)}: {delta.summary(change)}"
    blocks: list[Block] = [
        section(f"*{_verdict(report)}* · {heading}"),
        context(samples_line(report)),
    ]
    blocks += _alarm_blocks(report, shown, options, change)
    for title, kinds in _SECTIONS:
        lines = [
            _marked(f, change) + finding_line(f, report, options.ui_url)[2:]
            for f in shown
            if _quiet(f, kinds)
        ]
        if lines:
            blocks.append(section(f"*{title}*\n" + "\n".join(lines)))
    if change is not None:
        blocks += _since_blocks(change, options.since)
    blocks += _tail_blocks(report, findings, options)
    text = f"{_verdict(report)} · {options.heading}: " + _summary(findings)
    return Rendered(text=text, blocks=fit(blocks))


def _marked(finding: Mapping[str, Any], change: delta.Delta | None) -> str:
    """``• `` before a finding, with what changed about it in a follow-up reply."""
    if change is None:
        return "• "
    was = change.was.get(finding_key(finding))
    if was is None:
        return "• 🆕 "
    now = "confirmed" if finding.get("state") == "confirmed" else str(finding.get("state"))
    before = "watching" if was == "suspected" else was
    return f"• ⬆ {now} (was {before}): "


def _since_blocks(change: delta.Delta, since: str) -> list[Block]:
    """What went away since the previous reply, and one line for what did not change."""
    blocks = []
    if delta.gone_alone(change):
        lines = [f"• {escape(line)}" for line in delta.gone_lines(change)]
        blocks.append(section(f"*Went away since the {escape(since)}*\n" + "\n".join(lines)))
    if change.same:
        blocks.append(
            context(f"Still there, as in the {escape(since)}: " + _same_text(change.same))
        )
    return blocks


def _same_text(same: Sequence[Mapping[str, Any]]) -> str:
    """``🔴 latency regression on GET, POST /items; bottleneck ×4; code reached ×3``."""
    alarms = [f for f in same if is_alarm(f)]
    parts = []
    for kind in dict.fromkeys(str(f["kind"]) for f in alarms):
        names = [escape(delta.where(f)) for f in alarms if f["kind"] == kind]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"🔴 {kind.replace('_', ' ')} on {shown}")
    others = [str(f["kind"]) for f in same if not is_alarm(f)]
    for kind in dict.fromkeys(others):
        count = others.count(kind)
        parts.append(kind.replace("_", " ") + (f" ×{count}" if count > 1 else ""))
    return "; ".join(parts)


def _verdict(report: Mapping[str, Any]) -> str:
    verdict = str(report.get("verdict") or "")
    return VERDICT_WORDS.get(verdict, verdict or "no verdict")


def _quiet(finding: Mapping[str, Any], kinds: Collection[str]) -> bool:
    return finding.get("kind") in kinds and not is_alarm(finding)


def _summary(findings: Sequence[Mapping[str, Any]]) -> str:
    alarms = [f for f in findings if is_alarm(f)]
    if alarms:
        return "; ".join(str(f["message"]) for f in alarms[:3])[:1000]
    return f"{len(findings)} finding(s), none alarming"


def samples_line(report: Mapping[str, Any]) -> str:
    """What the numbers come from, baseline → new: spans and groups per version, and each window."""
    groups = report.get("groups", [])
    window = report.get("window") or {}
    sides = []
    for side, version, label in (
        ("baseline", report.get("baseline_version"), "baseline"),
        ("candidate", report.get("version"), "new"),
    ):
        if version is None:
            sides.append("no baseline version")
            continue
        present = [g[side] for g in groups if g.get(side)]
        spans = sum(int(g.get("count") or 0) for g in present)
        sides.append(
            f"{label} {escape(str(version))}: {spans} spans in {plural(len(present), 'group')}, "
            f"{window_text(window.get(side))}"
        )
    return " → ".join(sides)


def window_text(window: Mapping[str, str] | None) -> str:
    """``Dec 06 00:58 – Dec 07 00:58 UTC (24.0 h)``: both dates when the window crosses a day.

    Windows shorter than 10 minutes show seconds, so their two ends differ.
    """
    if not window:
        return "no window"
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    seconds = (end - start).total_seconds()
    clock = "%H:%M:%S" if seconds < 600 else "%H:%M"
    if seconds >= 3600:
        length = f"{seconds / 3600:.1f} h"
    elif seconds >= 60:
        length = f"{seconds / 60:.0f} min"
    else:
        length = f"{seconds:.0f} s"
    if start.date() == end.date():
        return f"{start:%b %d} {start.strftime(clock)}–{end.strftime(clock)} UTC ({length})"
    return (
        f"{start:%b %d} {start.strftime(clock)} – {end:%b %d} {end.strftime(clock)} UTC ({length})"
    )


def _alarm_blocks(
    report: Mapping[str, Any],
    findings: Sequence[Mapping[str, Any]],
    options: ReplyOptions,
    change: delta.Delta | None = None,
) -> list[Block]:
    """Each alarm gets its own section, with an "Expected" button when the release is known."""
    blocks: list[Block] = []
    for finding in [f for f in findings if is_alarm(f)]:
        line = finding_line(finding, report, options.ui_url, bold=True)
        block = section(_marked(finding, change) + line[2:])
        value = f"{options.release_id}|{finding_key(finding)}"
        if options.release_id is not None and len(value) <= MAX_BUTTON_VALUE:
            block["accessory"] = _button("Expected", f"{ACTION_EXPECTED}:{len(blocks)}", value)
        blocks.append(block)
    return blocks


def _tail_blocks(
    report: Mapping[str, Any], findings: Sequence[Mapping[str, Any]], options: ReplyOptions
) -> list[Block]:
    blocks = []
    unchanged = unchanged_line(report, findings)
    if unchanged:
        blocks.append(context(unchanged))
    if options.acknowledged:
        blocks.append(context(f"{len(options.acknowledged)} finding(s) marked expected: not shown"))
    if options.release_id is not None:
        blocks.append(actions(report, findings, options))
    return blocks


def unchanged_line(report: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> str:
    """One line for every group that no finding is about."""
    named = {f.get("span") for f in findings}
    quiet = [g for g in report.get("groups", []) if g["span"] not in named]
    if not quiet:
        return ""
    spans = sum(int((g.get("candidate") or {}).get("count") or 0) for g in quiet)
    names = ", ".join(escape(display_name(str(g["span"]))) for g in quiet[:5])
    more = f" and {len(quiet) - 5} more" if len(quiet) > 5 else ""
    return f"No change in {len(quiet)} other group(s) ({names}{more}; {spans} new spans)"


def actions(
    report: Mapping[str, Any], findings: Sequence[Mapping[str, Any]], options: ReplyOptions
) -> Block:
    """Buttons: open an example trace (when there is one) and mute the service for a day."""
    service = str(report.get("service") or "")
    elements = []
    traces = [t for f in findings for t in f.get("example_trace_ids", [])]
    url = trace_url(options.ui_url, traces[0]) if traces else None
    if url:
        elements.append({**_button("Open traces", ACTION_TRACES, traces[0]), "url": url[:3000]})
    elements.append(_button(f"Mute {service} for 24h"[:75], ACTION_MUTE, f"{service}|24h"))
    return {"type": "actions", "elements": elements}


def _button(label: str, action_id: str, value: str) -> Block:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label[:75]},
        "action_id": action_id,
        "value": value[:MAX_BUTTON_VALUE],
    }


def finding_line(
    finding: Mapping[str, Any], report: Mapping[str, Any], ui_url: str | None, bold: bool = False
) -> str:
    """One finding: state mark, its sentence (with n and test), and example trace links."""
    mark = "◌ watching: " if finding.get("state") == "suspected" else ""
    message = escape(str(finding.get("message") or finding.get("kind")))
    if bold:
        message = f"*{escape(str(finding['kind']).replace('_', ' '))}* — {message}"
    links = [
        f"<{url}|trace {trace_id[:8]}>"
        for trace_id in list(finding.get("example_trace_ids", []))[:3]
        if (url := trace_url(ui_url, str(trace_id)))
    ]
    tail = f" ({', '.join(links)})" if links else ""
    detail = percentiles(report, str(finding.get("span"))) if "latency" in finding["kind"] else ""
    return f"• {mark}{message}{tail}" + (f"\n    {detail}" if detail else "")


def percentiles(report: Mapping[str, Any], span: str) -> str:
    """``p50 17.2 → 21.3 ms · p95 … · p99 … (n = 2000 → 2000 spans)`` for one group."""
    group = next((g for g in report.get("groups", []) if g.get("span") == span), None)
    if group is None or not group.get("baseline") or not group.get("candidate"):
        return ""
    base, new = group["baseline"], group["candidate"]
    parts = [f"{q} {_ms(base.get(f'{q}_ms'))} → {_ms(new.get(f'{q}_ms'))}" for q in PERCENTILES]
    return " · ".join(parts) + f" ms (n = {base.get('count')} → {new.get('count')} spans)"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def release_announcement(
    release: Release, offsets: Sequence[timedelta], status: str | None = None
) -> Rendered:
    """The thread head with links: what shipped, when feedbot checks in, and the status line.

    A section, then the status in a context line: status updates keep the section and change
    only the context line (through ``chat.update``). The text fallback is
    :func:`feedbot.digest.text.release_parent`.

    Args:
        release: The release.
        offsets: When its checks run, after the deploy.
        status: The status line; by default the first one (watching, no check done yet).

    Returns:
        The plain text and the Block Kit blocks.
    """
    status = status or status_line(None, 0, len(offsets))
    lines = [f"*{escape(_shipped(release))}*"]
    if release.title:
        lines.append(f"“{escape(release.title)}”")
    refs = [ref for ref in (_commit_ref(release), _url_ref(release.url)) if ref]
    if refs:
        lines.append(" · ".join(refs))
    checks = ", ".join(f"+{format_duration(o)}" for o in sorted(offsets))
    lines.append(f"I'll look at its traces at {checks} and reply in this thread.")
    blocks = (section("\n".join(lines)), context(status))
    return Rendered(text=parent_text(release, offsets), blocks=blocks)


def _shipped(release: Release) -> str:
    """``🚀 vault-service 1.4.2 → production, shipped by Bill`` (and ``(rollback)``)."""
    who = release.author_name or release.author_github or release.author_email or "someone"
    rollback = " (rollback)" if release.is_rollback else ""
    return f"🚀 {release_title(release)}, shipped by {who}{rollback}"


def commit_url(release: Release) -> str | None:
    """``https://github.com/{owner/name}/commit/{sha}`` when the repository looks like GitHub's."""
    if not release.commit or not release.repository or release.source == "gitlab":
        return None
    if not _GITHUB_REPO.match(release.repository) or not _SHA.match(release.commit):
        return None
    return f"https://github.com/{release.repository}/commit/{release.commit}"


def _commit_ref(release: Release) -> str:
    if not release.commit:
        return ""
    short = escape(release.commit[:12])
    url = commit_url(release)
    return f"commit <{url}|{short}>" if url else f"commit `{short}`"


def _url_ref(url: str | None) -> str:
    """A link to the release's URL; plain (escaped) text when it is not a safe http(s) URL."""
    if not url:
        return ""
    if not _SAFE_URL.match(url) or len(url) > MAX_URL:
        return escape(url[:MAX_URL])
    label = escape(url if len(url) <= MAX_LABEL else url[: MAX_LABEL - 1] + "…")
    return f"<{escape(url)}|{label}>"


def broadcast(report: Mapping[str, Any], options: ReplyOptions, *, owner: str | None) -> Rendered:
    """The service channel's post: the verdict and the alarms only; the rest stays in the DM."""
    findings = [f for f in report.get("findings", []) if finding_key(f) not in options.acknowledged]
    who = f" (thread with <@{owner}>)" if owner and owner.startswith(("U", "W")) else ""
    head = f"*{_verdict(report)}* · {escape(options.heading)}{who}"
    alarms = _alarm_blocks(report, findings, options)
    blocks = [section(head), context(samples_line(report)), *alarms]
    if options.release_id is not None:
        blocks.append(actions(report, findings, options))
    return Rendered(
        text=f"{_verdict(report)} · {options.heading}: {_summary(findings)}", blocks=fit(blocks)
    )
