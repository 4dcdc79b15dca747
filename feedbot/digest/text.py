"""Plain-text renderings of feedback: the console output and Slack's ``text`` fallback.

Until the analysis lands, a check shows the raw per-group counts it fetched and says plainly that
no verdict was computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from feedbot.config import format_duration
from feedbot.store.models import Release

MAX_GROUPS = 15


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


def status_line(done: int, total: int, failed: int = 0, superseded: bool = False) -> str:
    """The one-line status kept current on the parent message."""
    if superseded:
        return "Status: superseded by a newer deploy"
    if done + failed >= total:
        tail = f", {failed} failed" if failed else ""
        return f"Status: all {total} checks ran{tail} (no verdict: analysis not installed yet)"
    return f"Status: watching ({done} of {total} checks done)"


def superseded(old: Release, new: Release, ended: int) -> str:
    """Note in the old release's thread when a newer deploy replaces it."""
    return f"⏭ Superseded by {new.version}: {ended} pending check(s) of {old.version} will not run."


def check_failed(release: Release, offset: timedelta, attempts: int, error: str) -> str:
    """The owner's note when a check gave up, instead of silence."""
    return (
        f"⚠️ The +{format_duration(offset)} check of {release_title(release)} failed after "
        f"{attempts} tries and will not be retried: {error}"
    )


def check_reply(release: Release, offset: timedelta, result: Mapping[str, Any]) -> str:
    """Raw counts per span group, candidate against baseline; no verdict."""
    cand = result["candidate"]
    lines = [
        f"🔎 +{format_duration(offset)} check of {release_title(release)}",
        f"{release.version}: {cand['spans']} spans in {len(cand['groups'])} groups "
        f"({cand['window']})",
    ]
    base = result.get("baseline")
    if base is None:
        lines.append("No previous version of this service to compare with.")
    else:
        lines.append(
            f"{base['version']}: {base['spans']} spans in {len(base['groups'])} groups "
            f"({base['window']})"
        )
    lines.extend(_group_table(cand["groups"], base["groups"] if base else []))
    lines.append("No verdict: the analysis is not installed yet, these are raw counts.")
    return "\n".join(lines)


def _group_table(cand: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[str]:
    if not cand and not base:
        return ["No spans for either version in these windows."]
    by_key = {(g["name"], g["kind"]): g for g in base}
    rows = ["group | spans new / before | errors new / before"]
    seen = set()
    for g in cand[:MAX_GROUPS]:
        key = (g["name"], g["kind"])
        seen.add(key)
        b = by_key.get(key)
        before = f"{b['count']}" if b else "—"
        errors = f"{g['errors']} / {b['errors'] if b else '—'}"
        rows.append(f"{g['name']} ({g['kind'].lower()}) | {g['count']} / {before} | {errors}")
    missing = [g for k, g in by_key.items() if k not in seen]
    for g in missing[:MAX_GROUPS]:
        rows.append(f"{g['name']} ({g['kind'].lower()}) | 0 / {g['count']} | — / {g['errors']}")
    hidden = max(0, len(cand) - MAX_GROUPS) + max(0, len(missing) - MAX_GROUPS)
    if hidden:
        rows.append(f"… and {hidden} more groups")
    return rows
