"""Block Kit renderings of feedback, from the stored report JSON (pure: no I/O).

A check's reply is its story (:mod:`feedbot.digest.story`), rendered from
``check.result["report"]`` (the :func:`feedbot.analysis.report.to_json` contract), so a reply
can be rebuilt from the store at any time: the verdict, at most a few chapters (what changed for
whom, and why), one line for the rest, and the evidence one click away (the "Details" button).
Everything returned is within Slack's limits (:func:`fit`) and every piece of user or trace text
is mrkdwn-escaped (:func:`escape`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from feedbot.digest import delta, evidence, story
from feedbot.digest.text import VERDICT_WORDS, release_title, status_line
from feedbot.digest.text import release_parent as parent_text
from feedbot.digest.words import printable
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
PERCENTILES = evidence.PERCENTILES
ACTION_EXPECTED = "feedbot_expected"
ACTION_MUTE = "feedbot_mute"
ACTION_TRACES = "feedbot_traces"
ACTION_DETAILS = "feedbot_details"
#: A URL button to feedbot's own page of a release (or the meeting): Slack opens the link.
ACTION_PAGE = "feedbot_page"


@dataclass(frozen=True)
class Rendered:
    """A message: the plain ``text`` fallback and its blocks."""

    text: str
    blocks: tuple[Block, ...]


def escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so user text cannot form links, mentions or markup.

    Control characters other than newline and tab (a span name may carry any) become ``\\xNN``.
    """
    text = printable(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
    """:func:`feedbot.digest.story.is_alarm`: what is broadcast and gets an "Expected" button."""
    return story.is_alarm(finding)


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
        check_id: The check, for the "Details" button (its evidence, from the stored report).
        page_url: The release's page (a signed link, :mod:`feedbot.digest.links`), for the
            "Release page" button; None: no button.
    """

    heading: str
    ui_url: str | None = None
    release_id: int | None = None
    acknowledged: Collection[str] = ()
    previous: Sequence[Mapping[str, Any]] | None = None
    since: str = "the last check"
    check_id: int | None = None
    page_url: str | None = None


def check_reply(report: Mapping[str, Any], options: ReplyOptions) -> Rendered:
    """A check's thread reply: its story (:func:`feedbot.digest.story.tell`) in Block Kit.

    The verdict and which check, then each chapter (its headline in bold, the cause below it,
    an "Expected" button on alarms, a grey line with the requests it comes from), then one line
    for the rest, one for the changed code, the windows, and the buttons (Details, Open
    traces, Mute). A later reply (``options.previous`` set) tells in full only the chapters
    that are new or changed since, says what went away, and sums up the rest in one line.

    Args:
        report: ``to_json`` output.
        options: heading, trace UI, buttons and the previous reply's findings.

    Returns:
        The fallback text and at most 50 blocks.
    """
    told = story.tell(
        report,
        previous=options.previous,
        since=options.since,
        acknowledged=options.acknowledged,
    )
    return render_story(told, report, options)


def render_story(told: story.Story, report: Mapping[str, Any], options: ReplyOptions) -> Rendered:
    """A story as a check reply (see :func:`check_reply`)."""
    heading = escape(options.heading)
    if told.since is not None:
        heading += f" · since the {escape(told.since.label)}: {escape(told.since.summary)}"
    blocks: list[Block] = [section(f"*{_verdict(report)}* · {heading}")]
    blocks += chapter_blocks(told.chapters, options)
    if not told.chapters and (told.since is None or not told.since.still):
        blocks.append(section(escape(told.headline)))
    if told.since is not None:
        blocks += _since_blocks(told.since)
    blocks += [context(escape(line)) for line in (_rest_line(told), told.code) if line]
    blocks.append(context(samples_line(report)))
    if options.release_id is not None:
        blocks.append(actions(report, told, options))
    text = f"{_verdict(report)} · {options.heading}: {told.headline}"
    return Rendered(text=text[:3000], blocks=fit(blocks))


def _rest_line(told: story.Story) -> str:
    expected = f"{told.acknowledged} marked expected: not shown" if told.acknowledged else ""
    return " · ".join(p for p in (told.rest, expected) if p)


def chapter_blocks(
    chapters: Sequence[story.Chapter], options: ReplyOptions, *, buttons: bool = True
) -> list[Block]:
    """Each chapter: a section (mark, bold headline, causes; "Expected" on an alarm) and its
    grey evidence line (requests baseline → new, tail latency, example traces)."""
    blocks: list[Block] = []
    for number, chapter in enumerate(chapters):
        lines = [f"{_mark(chapter)}*{escape(chapter.headline)}*"]
        if chapter.because:
            lines.append(escape(" ".join(chapter.because)))
        block = section("\n".join(lines))
        value = f"{options.release_id}|" + "\n".join(chapter.alarms)
        if buttons and chapter.alarms and options.release_id is not None:
            if len(value) <= MAX_BUTTON_VALUE:
                block["accessory"] = _button("Expected", f"{ACTION_EXPECTED}:{number}", value)
        blocks.append(block)
        links = [
            f"<{url}|trace {trace_id[:8]}>"
            for trace_id in chapter.trace_ids[:2]
            if (url := trace_url(options.ui_url, str(trace_id)))
        ]
        line = " · ".join([escape(chapter.context), *links]) if chapter.context else ""
        if line:
            blocks.append(context(line))
    return blocks


def _mark(chapter: story.Chapter) -> str:
    """🔴 an alarm, ◌ watching, 🟢 faster or fewer errors, • the rest; what changed since."""
    icon = "🔴 " if chapter.alarm else "◌ " if chapter.watching else ""
    if not icon:
        icon = "🟢 " if chapter.improvement else "• "
    since = {"new": "🆕 ", "confirmed": "⬆ confirmed (was watching): ", "changed": "⬆ "}
    return since.get(chapter.mark, "") + icon


def _since_blocks(since: story.Since) -> list[Block]:
    """What went away since the previous reply, and one line for what did not change."""
    blocks = []
    if since.went_away:
        lines = [f"• {escape(line)}" for line in since.went_away]
        blocks.append(section(f"*Went away since the {escape(since.label)}*\n" + "\n".join(lines)))
    if since.still:
        blocks.append(
            context(f"Still there, as in the {escape(since.label)}: {escape(since.still)}")
        )
    return blocks


def _verdict(report: Mapping[str, Any]) -> str:
    verdict = str(report.get("verdict") or "")
    return VERDICT_WORDS.get(verdict, verdict or "no verdict")


def samples_line(report: Mapping[str, Any]) -> str:
    """What the numbers come from, baseline → new: spans and groups per version, and each window."""
    return escape(evidence.samples(report, brief=True))


def window_text(window: Mapping[str, str] | None) -> str:
    """:func:`feedbot.digest.evidence.window_text`."""
    return evidence.window_text(window)


def actions(report: Mapping[str, Any], told: story.Story, options: ReplyOptions) -> Block:
    """Buttons: the details (when the check is known), an example trace, mute for a day."""
    service = str(report.get("service") or "")
    elements = []
    if options.check_id is not None:
        elements.append(_button("Details", ACTION_DETAILS, str(options.check_id)))
    if options.page_url:
        page = _button("Release page", ACTION_PAGE, str(options.release_id))
        elements.append({**page, "url": options.page_url[:3000]})
    traces = list(told.trace_ids)
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


def details(report: Mapping[str, Any], heading: str) -> Rendered:
    """The evidence behind a check's story, for its "Details" button: windows, causes, each
    finding with its test, n, p/q and CI, and how the inputs were chosen."""
    lines = [f"• {escape(line)}" for line in story.tell(report).evidence]
    blocks: list[Block] = [section(f"*Details* · {escape(heading)}")]
    chunk: list[str] = []
    for line in lines:
        if sum(len(x) + 1 for x in chunk) + len(line) > MAX_SECTION - 100 and chunk:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line[: MAX_SECTION - 100])
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return Rendered(text=f"Details · {heading}", blocks=fit(blocks))


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
    """The service channel's post: the verdict and the alarm chapters; the rest stays in the DM."""
    told = story.tell(report, acknowledged=options.acknowledged)
    who = f" (thread with <@{owner}>)" if owner and owner.startswith(("U", "W")) else ""
    head = f"*{_verdict(report)}* · {escape(options.heading)}{who}"
    alarms = [c for c in told.all_chapters if c.alarm]
    blocks = [section(head), *chapter_blocks(alarms, options), context(samples_line(report))]
    if options.release_id is not None:
        blocks.append(actions(report, told, options))
    headline = alarms[0].headline if alarms else told.headline
    return Rendered(text=f"{_verdict(report)} · {options.heading}: {headline}", blocks=fit(blocks))
