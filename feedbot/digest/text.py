"""Plain-text renderings of feedback: the console output and Slack's ``text`` fallback.

A check's reply is its story (:mod:`feedbot.digest.story`) as text under a line saying which
look it is, with the evidence indented after it (:func:`story_text`): the same story the Block
Kit reply, ``feedbot report --format text`` and the demo's console tell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from feedbot.digest.story import Chapter, Story, tell
from feedbot.digest.words import printable
from feedbot.durations import format_duration
from feedbot.store.models import Release


def release_title(release: Release) -> str:
    """``vault-service 1.4.2 → production``."""
    return f"{release.service} {release.version} → {release.environment}"


def release_parent(release: Release, offsets: Sequence[timedelta]) -> str:
    """The thread head: what shipped, by whom, and when feedbot will look."""
    who = release.author_name or release.author_github or release.author_email or "someone"
    lines = [f"🚀 {release_title(release)}, shipped by {who}"]
    if release.is_rollback:
        lines[0] += " (rollback)"
    if release.title:
        lines.append(f"“{release.title}”")
    details = []
    if release.commit:
        details.append(f"commit {release.commit[:12]}")
    if release.url:
        details.append(release.url)
    if details:
        lines.append(" · ".join(details))
    checks = ", ".join(f"+{format_duration(o)}" for o in sorted(offsets))
    lines.append(f"I'll look at its traces at {checks} and reply in this thread.")
    return "\n".join(lines)


VERDICT_WORDS = {
    "regressed": "🔴 regressed",
    "improved": "🟢 improved",
    "neutral": "✅ looks fine",
    "insufficient_data": "⏳ not enough traffic yet",
    "not_running": "💤 not running yet",
}


#: What the status line says once every check has run: what happened, not what may happen.
FINAL_WORDS = {
    **VERDICT_WORDS,
    "insufficient_data": "⏳ too little traffic to tell",
    "not_running": "💤 no traffic on it in the last check",
}


def status_line(verdict: str | None, done: int, total: int, failed: int = 0) -> str:
    """The one-line status kept current on the parent message.

    Args:
        verdict: The last finished check's verdict, None before the first.
        done: Checks finished.
        total: Checks planned.
        failed: Checks that gave up.

    Returns:
        ``Status: 👀 watching (0 of 2 checks done)`` while checks are due, the last verdict
        with ``watching: 1 of 2 checks done`` after the first, and a final state once all ran.
    """
    if done + failed >= total:
        if verdict is None:
            return f"Status: ⚠️ no check succeeded ({plural(failed, 'check')} failed)"
        ran = f"all {total} checks ran" if not failed else f"{done} of {total} checks ran"
        tail = f", {failed} failed" if failed else ""
        return f"Status: {FINAL_WORDS.get(verdict, verdict)} ({ran}{tail})"
    tail = f", {failed} failed" if failed else ""
    if verdict is None:
        return f"Status: 👀 watching ({done} of {total} checks done{tail})"
    word = VERDICT_WORDS.get(verdict, verdict)
    return f"Status: {word} (watching: {done} of {total} checks done{tail})"


def superseded_status(new_version: str, verdict: str | None, done: int, total: int) -> str:
    """The final status of a release a newer deploy replaced before all its checks ran."""
    head = f"Status: ⏭ superseded by {new_version}"
    if done == 0 or verdict is None:
        return f"{head} before its checks ran"
    return f"{head} after {done} of {total} checks: {VERDICT_WORDS.get(verdict, verdict)}"


def plural(n: int, word: str) -> str:
    """``1 check``, ``2 checks``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def superseded(old: Release, new: Release, ended: int) -> str:
    """Note in the old release's thread when a newer deploy replaces it."""
    return f"⏭ Superseded by {new.version}: {ended} pending check(s) of {old.version} will not run."


def check_failed(release: Release, offset: timedelta, attempts: int, error: str) -> str:
    """The owner's note when a check gave up, instead of silence."""
    return (
        f"⚠️ The +{format_duration(offset)} check of {release_title(release)} failed after "
        f"{attempts} tries and will not be retried: {error}"
    )


def check_reply(release: Release, offset: timedelta, report_text: str) -> str:
    """A check's thread reply: which look, then its story as text (:func:`story_text`)."""
    return f"🔎 +{format_duration(offset)} check of {release_title(release)}\n{report_text}"


#: How a chapter is marked in text: an alarm, watching, better, anything else.
_MARKS = {"alarm": "🔴", "watching": "◌", "improvement": "🟢", "other": "•"}
_SINCE = {"new": "🆕 ", "confirmed": "⬆ confirmed (was watching): ", "changed": "⬆ "}


def chapter_mark(chapter: Chapter) -> str:
    """``🔴`` an alarm, ``◌`` watching, ``🟢`` faster or fewer errors, ``•`` the rest."""
    if chapter.alarm:
        return _MARKS["alarm"]
    if chapter.watching:
        return _MARKS["watching"]
    return _MARKS["improvement"] if chapter.improvement else _MARKS["other"]


def story_lines(told: Story) -> list[str]:
    """The story without its first line: chapters (cause and evidence line indented), what
    changed since the last check, the rest and the changed code."""
    lines: list[str] = []
    for chapter in told.chapters:
        lines.append(f"{_SINCE.get(chapter.mark, '')}{chapter_mark(chapter)} {chapter.headline}")
        lines += [f"    {sentence}" for sentence in chapter.because]
        if chapter.context:
            lines.append(f"    ({chapter.context})")
    if not told.chapters and (told.since is None or not told.since.still):
        lines.append(told.headline)
    if told.since is not None:
        lines += [f"✓ {line}" for line in told.since.went_away]
        if told.since.still:
            lines.append(f"still there, as in the {told.since.label}: {told.since.still}")
    expected = f"{told.acknowledged} marked expected: not shown" if told.acknowledged else ""
    lines += [line for line in (told.rest, expected, told.code) if line]
    return lines


def story_text(told: Story, heading: str, *, evidence: bool = True) -> str:
    """A story for a terminal or a plain-text message.

    Args:
        told: The story.
        heading: Its first line after the verdict ("vault-service 2.0.0 vs 1.0.0").
        evidence: Add the indented "evidence" section (tests, n, p/q, CI, windows).

    Returns:
        The text, ending with a newline.
    """
    head = f"{VERDICT_WORDS.get(told.verdict, told.verdict or 'no verdict')} · {heading}"
    if told.since is not None:
        head += f" · since the {told.since.label}: {told.since.summary}"
    lines = [head, *story_lines(told)]
    if evidence and told.evidence:
        lines += ["", "evidence:", *(f"  - {line}" for line in told.evidence)]
    return "\n".join(lines) + "\n"


def report_text(report: Mapping[str, Any], *, look: str = "") -> str:
    """``feedbot report --format text`` and a check's plain-text reply: the report's story.

    Args:
        report: ``to_json`` output.
        look: Which look it was ("look 1 of 2"), said beside the verdict.

    Returns:
        Which release against what, the verdict, the story, the evidence and the groups
        (baseline → new), ending with a newline.
    """
    against = report.get("baseline_version") or "no baseline"
    env = report.get("environment") or "any env"
    verdict = str(report.get("verdict") or "")
    words = VERDICT_WORDS.get(verdict, verdict)
    told = tell(report)
    lines = [
        f"{report.get('service')} {report.get('version')} vs {against} ({env})",
        f"verdict: {verdict} ({words}" + (f"; {look})" if look else ")"),
        "",
        *story_lines(told),
        "",
        "evidence:",
        *(f"  - {line}" for line in told.evidence),
        "",
        *group_table(report),
    ]
    return "\n".join(printable(line) for line in lines) + "\n"


def group_table(report: Mapping[str, Any], rows: int = 40) -> list[str]:
    """The span groups, baseline → new: count, errors, p50 and p95 in ms."""
    groups = list(report.get("groups", []))
    if not groups:
        return ["no span groups"]
    names = [printable(str(g["span"]), lines=False) for g in groups]
    width = min(48, max(len(name) for name in names))
    out = [
        "groups (baseline → new):",
        f"  {'span':<{width}}  {'count':>13} {'errors':>9} {'p50 ms':>15} {'p95 ms':>15}",
    ]
    for g, name in zip(groups[:rows], names, strict=False):
        base, new = g.get("baseline") or {}, g.get("candidate") or {}
        cells = [_pair(base, new, k) for k in ("count", "errors", "p50_ms", "p95_ms")]
        out.append(
            f"  {name[:width]:<{width}}  {cells[0]:>13} {cells[1]:>9} {cells[2]:>15} {cells[3]:>15}"
        )
    if len(groups) > rows:
        out.append(f"  … and {len(groups) - rows} more (--format json has all)")
    return out


def _pair(base: Mapping[str, Any], new: Mapping[str, Any], key: str) -> str:
    def one(side: Mapping[str, Any]) -> str:
        value = side.get(key)
        if value is None:
            return "-"
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    return f"{one(base)} → {one(new)}"
