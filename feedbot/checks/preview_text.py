"""The pull-request preview, rendered: a GitHub comment (Markdown), plain text, Slack blocks.

The comment starts with :data:`MARKER`, a hidden HTML comment by which feedbot finds its own
comment again and edits it instead of adding another. Pure: no I/O. It lives beside the preview
service rather than in ``digest/`` because it renders :mod:`feedbot.analysis.footprint`'s
results, and ``digest/`` sits beside ``analysis/``, not above it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from feedbot.analysis.footprint import Footprint, count, ms
from feedbot.analysis.reach import CodeReach

#: How feedbot recognises its own pull-request comment.
MARKER = "<!-- feedbot-preview -->"
#: GitHub refuses comment bodies above 65,536 characters; functions past the budget are summed up.
COMMENT_MAX = 60_000
_SECTION_MAX = 2900
_BLOCKS_MAX = 48

_USAGE = {"hot": "🔥", "used": "🟢", "never": "⚪", "unknown": "❔"}


@dataclass(frozen=True)
class Preview:
    """What a change's functions do in production now.

    Attributes:
        service: the service whose spans were read.
        environment: their environment (None: any).
        window: how far back the spans go.
        footprints: one per changed function.
        subject: what is previewed (``acme/vault#17``, or ``since abc123``).
        url: link to the pull request, when known.
    """

    service: str
    environment: str | None
    window: timedelta
    footprints: tuple[Footprint, ...]
    subject: str
    url: str | None = None


def headline(preview: Preview) -> str:
    """One line: what was previewed and how much of it runs."""
    used = sum(f.usage in ("hot", "used") for f in preview.footprints)
    hot = sum(f.usage == "hot" for f in preview.footprints)
    never = sum(f.usage == "never" for f in preview.footprints)
    parts = [f"{used} of {len(preview.footprints)} changed functions ran in production"]
    if hot:
        parts.append(f"{hot} on a hot path")
    if never:
        parts.append(f"{never} never ran")
    where = preview.service + (f" ({preview.environment})" if preview.environment else "")
    return f"Preview of {preview.subject} in {where}, last {_days(preview.window)}: " + (
        "; ".join(parts) + "."
    )


def _days(window: timedelta) -> str:
    days = window / timedelta(days=1)
    if days >= 1 and days == int(days):
        return f"{int(days)} day" + ("s" if days != 1 else "")
    return f"{window / timedelta(hours=1):g} hours"


def _facts(f: Footprint) -> str:
    if not f.calls:
        return "no calls"
    parts = [f"{count(f.calls)} calls ({count(f.per_day)}/day)"]
    if f.p50_ms is not None and f.p95_ms is not None:
        parts.append(f"p50 {ms(f.p50_ms)}, p95 {ms(f.p95_ms)}")
    if f.error_rate is not None:
        parts.append(f"errors {f.error_rate:.1%}")
    return ", ".join(parts)


def markdown(preview: Preview) -> str:
    """The pull-request comment: marker, headline, a table, then what to watch per function."""
    return markdown_all((preview,))


def markdown_all(previews: Sequence[Preview], unmapped: Sequence[str] = ()) -> str:
    """The one pull-request comment of a change touching one or more services: a section each.

    Args:
        previews: one per service the change touches.
        unmapped: the changed files ``github.services`` gives to no service (left out).
    """
    lines = [MARKER, "### feedbot: this change in production", ""]
    sections = len(previews) > 1 or bool(unmapped) or not previews
    budget = (COMMENT_MAX - 2000) // max(len(previews), 1)
    for preview in previews:
        if sections:
            lines += [f"#### {_cell(preview.service)}", ""]
        lines += _markdown_body(preview, budget)
    if not previews:
        lines += ["No changed file belongs to a service feedbot previews.", ""]
    if unmapped:
        lines += [unmapped_note(unmapped), ""]
    if any(p.footprints for p in previews):
        lines += ["<sub>Updated on every push; the deploy's check will say how each did.</sub>"]
    return "\n".join(lines).rstrip("\n") + "\n"


def unmapped_note(unmapped: Sequence[str]) -> str:
    """The note on changed files no ``github.services`` entry claims."""
    shown = ", ".join(f"`{_cell(path)}`" for path in unmapped[:5])
    more = f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else ""
    files = "file matches" if len(unmapped) == 1 else "files match"
    return (
        f"Note: {len(unmapped)} changed {files} no service's paths under `github.services` "
        f"and {'is' if len(unmapped) == 1 else 'are'} left out: {shown}{more}."
    )


def _markdown_body(preview: Preview, budget: int) -> list[str]:
    lines = [headline(preview), ""]
    if not preview.footprints:
        return [*lines, "No changed function feedbot can read in this change.", ""]
    lines += [
        "| | function | calls/day | p50 | p95 | errors | exceptions |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for f in preview.footprints:
        lines.append(
            "| {} | `{}` | {} | {} | {} | {} | {} |".format(
                _USAGE[f.usage],
                _cell(f.name),
                count(f.per_day) if f.calls else "0",
                ms(f.p50_ms) if f.p50_ms is not None else "–",
                ms(f.p95_ms) if f.p95_ms is not None else "–",
                f"{f.error_rate:.1%}" if f.error_rate is not None else "–",
                _cell(", ".join(f"{t} ×{n}" for t, n in f.exceptions[:3])) or "–",
            )
        )
    lines += ["", "**What to watch for after the deploy**", ""]
    budget -= sum(len(line) + 1 for line in lines)
    for i, f in enumerate(preview.footprints):
        entry = f"- `{_cell(f.name)}`: " + "; ".join(f.watch)
        if len(entry) + 1 > budget:
            lines.append(f"- … and {len(preview.footprints) - i} more functions")
            break
        budget -= len(entry) + 1
        lines.append(entry)
    return [*lines, ""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def text(preview: Preview) -> str:
    """Plain text, for a terminal and for Slack's notification fallback."""
    lines = [headline(preview)]
    for f in preview.footprints:
        lines.append(f"• {f.name}: {_facts(f)}")
        lines += [f"    watch: {w}" for w in f.watch]
    if not preview.footprints:
        lines.append("No changed function feedbot can read in this change.")
    return "\n".join(lines)


def text_all(previews: Sequence[Preview], unmapped: Sequence[str] = ()) -> str:
    """Plain text of every service's preview, then the note on files left out."""
    parts = [text(p) for p in previews] or [
        "No changed file belongs to a service feedbot previews."
    ]
    if unmapped:
        parts.append(unmapped_note(unmapped).replace("`", ""))
    return "\n\n".join(parts)


def blocks_all(
    previews: Sequence[Preview], unmapped: Sequence[str] = ()
) -> list[Mapping[str, Any]]:
    """Block Kit of every service's preview (a divider between), within Slack's 50 blocks."""
    out: list[Mapping[str, Any]] = []
    for i, preview in enumerate(previews):
        if i:
            out.append({"type": "divider"})
        out += blocks(preview)
    if unmapped:
        out.append(_section(unmapped_note(unmapped).replace("`", "")))
    if len(out) > _BLOCKS_MAX + 1:
        out = [*out[:_BLOCKS_MAX], _section("… and more: see the pull-request comment")]
    return out


def blocks(preview: Preview) -> list[Mapping[str, Any]]:
    """Block Kit: the headline, then one section per function (within Slack's limits)."""
    head = headline(preview)
    if preview.url:
        head = f"<{preview.url}|{preview.subject}>: " + head.split(": ", 1)[1]
    out: list[Mapping[str, Any]] = [_section(f"*{head}*")]
    shown: Sequence[Footprint] = preview.footprints[: _BLOCKS_MAX - 1]
    for f in shown:
        body = f"{_USAGE[f.usage]} `{f.name}`: {_facts(f)}\n" + "\n".join(f"• {w}" for w in f.watch)
        out.append(_section(body))
    hidden = len(preview.footprints) - len(shown)
    if hidden > 0:
        out.append(_section(f"… and {hidden} more changed functions"))
    return out


def _section(body: str) -> Mapping[str, Any]:
    if len(body) > _SECTION_MAX:
        body = body[: _SECTION_MAX - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": body}}


@dataclass(frozen=True)
class Then:
    """A previewed function at a deploy's check: what the preview said, and its reach now."""

    subject: str
    url: str | None
    stored: Mapping[str, Any]
    now: CodeReach | None


def after_deploy(items: Sequence[Then], elapsed: timedelta) -> str:
    """The check reply's paragraph: "Previewed in PR #17:" and, per function, then → now."""
    days = max(elapsed / timedelta(days=1), 1 / (24 * 60))
    subjects = list(dict.fromkeys(f"<{i.url}|{i.subject}>" if i.url else i.subject for i in items))
    lines = [f"*Previewed in {', '.join(subjects)}:* how the previewed functions did"]
    for item in items:
        stored = item.stored
        was = f"{count(float(stored.get('per_day') or 0))}/day"
        if stored.get("p95_ms") is not None:
            was += f", p95 {ms(float(stored['p95_ms']))}"
        if stored.get("error_rate") is not None:
            was += f", errors {float(stored['error_rate']):.1%}"
        if not stored.get("calls"):
            was = "never seen" if stored.get("usage") == "never" else "unknown"
        lines.append(f"• `{stored['function']}`: before {was} → now {_now(item.now, days)}")
    return "\n".join(lines)


def _now(reach: CodeReach | None, days: float) -> str:
    if reach is None:
        return "not checked"
    if reach.status == "reached":
        return f"ran {count(reach.hits)} times ({count(reach.hits / days)}/day)"
    if reach.status in ("not_reached", "stopped"):
        return f"has not run in {count(reach.requests)} requests"
    if reach.status == "not_yet":
        return "has not run yet"
    return "unknown (no span names it)"
