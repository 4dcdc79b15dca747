"""The developer's DM thread for a terminal: head, status, each check's findings, and a table.

Each reply is drawn from its check's stored report (the same JSON the Slack blocks are built
from): the verdict, the findings with alarms in red and "watching" in yellow (after the first
reply, only those new or changed since, as in Slack), then, for the last look, the span groups
that matter as a before → after table. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from feedbot.demo.progress import Palette
from feedbot.demo.thread import Thread
from feedbot.digest import delta

VERDICT_STYLE = {"regressed": "red", "improved": "green", "neutral": "green"}
SEVERITY_STYLE = {"high": ("red", "bold"), "medium": ("yellow",), "low": ("green",)}
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
    for reply, report in zip(thread.replies, reports, strict=False):
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
    """The verdict and the findings; after the first reply, only what changed since it."""
    verdict = str(report.get("verdict", "?"))
    against = report.get("baseline_version") or "no baseline"
    lines = [
        f"{report.get('version')} vs {against}: verdict "
        + paint(verdict, VERDICT_STYLE.get(verdict, "yellow"), "bold")
    ]
    findings = list(report.get("findings", []))
    if previous is None:
        lines += [finding_line(f, paint) for f in findings]
        return lines if findings else [*lines, paint("no findings", "dim")]
    change = delta.compare(previous[0].get("findings", []), findings)
    lines[0] += f" · since the {previous[1]}: {delta.summary(change)}"
    for finding in change.fresh:
        was = change.was.get(delta.key_of(finding))
        mark = "new" if was is None else f"was {'watching' if was == 'suspected' else was}"
        lines.append(finding_line(finding, paint) + paint(f" ({mark})", "dim"))
    lines += [paint("✓ ", "green") + line for line in delta.gone_lines(change)]
    if change.same:
        kinds = [str(f.get("kind")) for f in change.same]
        counted = ", ".join(f"{k} ×{kinds.count(k)}" for k in dict.fromkeys(kinds))
        lines.append(paint(f"still there: {counted}", "dim"))
    return lines


def finding_line(finding: Mapping[str, Any], paint: Palette) -> str:
    """``● latency_regression: message`` coloured by severity; watching ones marked."""
    severity = str(finding.get("severity", "info"))
    watching = finding.get("state") == "suspected"
    mark = "◌" if watching else ("●" if severity == "high" else "·")
    styles = ("yellow",) if watching else SEVERITY_STYLE.get(severity, ("dim",))
    kind = str(finding.get("kind", "")) + (" (watching)" if watching else "")
    return paint(f"{mark} {kind}", *styles) + f": {finding.get('message', '')}"


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
