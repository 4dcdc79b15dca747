"""The developer's DM thread for a terminal: head, status, each check's findings, and a table.

Each reply is drawn from its check's stored report (the same JSON the Slack blocks are built
from), told as its story (:mod:`feedbot.digest.story`): the verdict, the chapters with alarms in
red and "watching" in yellow (after the first reply, only what changed since, as in Slack), the
rest in one line; then, for the last look, the span groups that matter as a before → after
table. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from feedbot.demo.progress import Palette
from feedbot.demo.thread import Thread
from feedbot.digest import story
from feedbot.digest.text import VERDICT_WORDS, story_lines

VERDICT_STYLE = {"regressed": "red", "improved": "green", "neutral": "green"}
TABLE_ROWS = 12
_SPAN_WIDTH = 34


def render_thread(
    thread: Thread, reports: Sequence[Mapping[str, Any]], recipient: str, paint: Palette
) -> str:
    """The thread as lines of text, ``│``-framed like a chat thread.

    Args:
        thread: the release's thread (head and replies as delivered).
        reports: the checks' reports, in the order of the replies.
        recipient: who the DM went to.
        paint: colours (or none).
    """
    lines = [paint(f"── DM from feedbot to {recipient} " + "─" * 40, "bold")]
    lines += [f"│ {line}" for line in _head(thread.head, paint)]
    previous: tuple[Mapping[str, Any], str] | None = None
    for reply, report in zip(thread.messages, reports, strict=False):
        heading = reply.message.text.splitlines()[0] if reply.message.text else "reply"
        lines += ["│", "├─ " + paint(heading, "bold")]
        lines += [f"│   {line}" for line in _report(report, paint, previous)]
        previous = (report, heading.removeprefix("🔎 ").split(" of ")[0])
    if reports:
        lines += ["│", "├─ " + paint("before → after, last look", "bold")]
        lines += [f"│   {line}" for line in before_after(reports[-1], paint)]
    lines.append(paint("─" * 74, "bold"))
    return "\n".join(lines) + "\n"


def _head(text: str, paint: Palette) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("Status:"):
            style = "red" if "regressed" in line else "green"
            line = paint(line, style, "bold")
        out.append(line)
    return out


def _report(
    report: Mapping[str, Any], paint: Palette, previous: tuple[Mapping[str, Any], str] | None
) -> list[str]:
    """The reply's story (:mod:`feedbot.digest.story`), as the Slack reply tells it: after the
    first reply, only what changed since it."""
    verdict = str(report.get("verdict", "?"))
    told = story.tell(
        report,
        previous=previous[0].get("findings", []) if previous else None,
        since=previous[1] if previous else "the last check",
    )
    head = paint(VERDICT_WORDS.get(verdict, verdict), VERDICT_STYLE.get(verdict, "yellow"), "bold")
    if told.since is not None:
        head += f" · since the {told.since.label}: {told.since.summary}"
    lines = [head]
    for line in story_lines(told):
        lines.append(_painted(line, paint))
    return lines


def _painted(line: str, paint: Palette) -> str:
    """Alarms in red, watching in yellow, better in green, the grey lines dim."""
    for mark, styles in (("🔴", ("red", "bold")), ("◌", ("yellow",)), ("🟢", ("green",))):
        if line.startswith(mark):
            return paint(line, *styles)
    if line.startswith(("    (", "Changed code", "still there")) or "unchanged" in line:
        return paint(line, "dim")
    if line.startswith("✓"):
        return paint("✓", "green") + line[1:]
    return line


def before_after(report: Mapping[str, Any], paint: Palette) -> list[str]:
    """Routes and every group a finding names, baseline → new: count, errors, p50, p95."""
    named = {f.get("span") for f in report.get("findings", []) if f.get("span")}
    groups = [
        g for g in report.get("groups", []) if g.get("kind") == "SERVER" or g.get("span") in named
    ][:TABLE_ROWS]
    head = f"{'span':<{_SPAN_WIDTH}} {'count':>11} {'errors':>9} {'p50 ms':>15} {'p95 ms':>15}"
    rows = [paint(head, "dim")]
    for group in groups:
        base, new = group.get("baseline") or {}, group.get("candidate") or {}
        rows.append(
            f"{str(group.get('span'))[:_SPAN_WIDTH]:<{_SPAN_WIDTH}} "
            f"{_pair(base, new, 'count'):>11} {_pair(base, new, 'errors'):>9} "
            + _slower(f"{_pair(base, new, 'p50_ms'):>15}", base, new, "p50_ms", paint)
            + " "
            + _slower(f"{_pair(base, new, 'p95_ms'):>15}", base, new, "p95_ms", paint)
        )
    return rows


def _pair(base: Mapping[str, Any], new: Mapping[str, Any], key: str) -> str:
    return f"{_number(base.get(key))} → {_number(new.get(key))}"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _slower(
    cell: str, base: Mapping[str, Any], new: Mapping[str, Any], key: str, paint: Palette
) -> str:
    """Red when the new value is at least 10% above the baseline's."""
    old, now = base.get(key), new.get(key)
    if isinstance(old, int | float) and isinstance(now, int | float) and old > 0:
        if now >= 1.1 * old:
            return paint(cell, "red")
    return cell
