"""Plain-text renderings of feedback: the console output and Slack's ``text`` fallback.

A check's reply is the analysis report (:func:`feedbot.analysis.report.to_text`) under a line
saying which look it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

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
    """A check's thread reply: which look, then the analysis report."""
    return f"🔎 +{format_duration(offset)} check of {release_title(release)}\n{report_text}"
