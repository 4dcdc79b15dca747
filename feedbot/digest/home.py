"""A person's App Home: their recent releases and the services they own, as a Home tab view. Pure.

Slack shows the view that was last published for a user with ``views.publish`` (a ``home``
view of at most :data:`MAX_HOME_BLOCKS` blocks). Each release is one line in the words of its
latest check's story (:func:`feedbot.digest.story.tell`: the same headline as the thread
reply), its open findings (alarms not marked expected) and two buttons: "Open" (the release's
thread, or its URL) and the thread replies' own "Mute" action.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedbot.digest import delta, story
from feedbot.digest.blocks import (
    ACTION_MUTE,
    ACTION_PAGE,
    MAX_SECTION,
    Block,
    context,
    escape,
    section,
)
from feedbot.digest.text import VERDICT_WORDS

#: Slack's limit for a Home tab view.
MAX_HOME_BLOCKS = 100
#: Releases listed in full; each takes three blocks (line, open findings, buttons).
MAX_RELEASES = 20
#: Open findings named on a release's line; the rest are counted.
MAX_NAMED = 3
ACTION_OPEN = "feedbot_open_release"
_MAX_URL = 3000


@dataclass(frozen=True)
class HomeRelease:
    """One release of the person, as the store knows it.

    Attributes:
        release_id: the release's id.
        service: its service.
        version: its version.
        environment: where it was deployed.
        deployed_at: when.
        report: the latest finished check's report (``to_json``), None while none finished.
        acknowledged: finding keys marked expected for it.
        link: where "Open" goes: the release's thread in Slack, else its URL; None: no button.
        muted_until: when the service's mute ends, if it is muted now.
        page: the release's page on feedbot (a signed link); None: no "Page" button.
    """

    release_id: int
    service: str
    version: str
    environment: str
    deployed_at: datetime
    report: Mapping[str, Any] | None = None
    acknowledged: Collection[str] = ()
    link: str | None = None
    muted_until: datetime | None = None
    page: str | None = None


@dataclass(frozen=True)
class OwnedService:
    """A service the person owns (``services.<name>.owners`` in the config).

    Attributes:
        name: the service.
        channel: its channel, if any.
        latest: ``version · verdict words`` of its newest checked release, if any.
        muted_until: when its mute ends, if it is muted now.
    """

    name: str
    channel: str | None = None
    latest: str | None = None
    muted_until: datetime | None = None


def home_view(
    user_id: str,
    releases: Sequence[HomeRelease],
    services: Sequence[OwnedService],
    *,
    meeting: str | None = None,
) -> dict[str, Any]:
    """The Home tab view of ``user_id``.

    Args:
        user_id: the person (a Slack user id), greeted by mention.
        releases: their releases, newest first.
        services: the services they own.
        meeting: the feedback meeting's page (a signed link), named under the greeting.

    Returns:
        A ``{"type": "home", "blocks": [...]}`` view within Slack's limits.
    """
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Your releases"}},
        context(f"What production said about what <@{escape(user_id)}> shipped lately."),
    ]
    if meeting and len(meeting) <= _MAX_URL:
        blocks.append(context(f"📋 <{meeting}|The feedback meeting's agenda>"))
    if not releases:
        blocks.append(section("Nothing shipped by you that feedbot checked lately."))
    for release in releases[:MAX_RELEASES]:
        blocks += release_blocks(release)
    if len(releases) > MAX_RELEASES:
        more = len(releases) - MAX_RELEASES
        blocks.append(context(f"… and {more} older releases: `/feedback <service>` has them."))
    blocks += _service_blocks(services, room=MAX_HOME_BLOCKS - len(blocks))
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}


def release_blocks(release: HomeRelease) -> list[Block]:
    """A release: its verdict and story headline, its open findings, Open and Mute buttons."""
    title = f"*{escape(release.service)} {escape(release.version)}* → {escape(release.environment)}"
    when = f"{release.deployed_at:%b %d %H:%M} UTC"
    if release.report is None:
        line = f"⏳ {title} · {when}\nNo check has finished yet."
        blocks = [section(line)]
    else:
        told = story.tell(release.report, acknowledged=release.acknowledged)
        verdict = str(release.report.get("verdict") or "")
        words = VERDICT_WORDS.get(verdict, verdict or "no verdict")
        blocks = [section(f"{words} · {title} · {when}\n{escape(told.headline)}")]
        blocks.append(context(_open_line(release.report, release.acknowledged)))
    if release.muted_until is not None:
        until = f"{release.muted_until:%b %d %H:%M} UTC"
        blocks.append(context(f"🔕 {escape(release.service)} is muted until {until}"))
    blocks.append(_buttons(release))
    return blocks


def open_findings(
    report: Mapping[str, Any], acknowledged: Collection[str] = ()
) -> list[Mapping[str, Any]]:
    """The alarms of ``report`` nobody marked expected: what is still open on a release."""
    return [
        f
        for f in report.get("findings", [])
        if story.is_alarm(f) and delta.key_of(f) not in acknowledged
    ]


def _open_line(report: Mapping[str, Any], acknowledged: Collection[str]) -> str:
    found = open_findings(report, acknowledged)
    if not found:
        return "No open findings."
    named = "; ".join(escape(story.say(f, report).rstrip(".")) for f in found[:MAX_NAMED])
    more = f"; and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
    noun = "finding" if len(found) == 1 else "findings"
    return f"{len(found)} open {noun}: {named}{more}."[:MAX_SECTION]


def _buttons(release: HomeRelease) -> Block:
    elements: list[Block] = []
    if release.link:
        elements.append(
            {
                **_button("Open", ACTION_OPEN, str(release.release_id)),
                "url": release.link[:_MAX_URL],
            }
        )
    if release.page and len(release.page) <= _MAX_URL:
        page = _button("Page", ACTION_PAGE, str(release.release_id))
        elements.append({**page, "url": release.page})
    label = f"Mute {release.service} for 24h"
    elements.append(_button(label, ACTION_MUTE, f"{release.service}|24h"))
    return {"type": "actions", "elements": elements}


def _button(label: str, action_id: str, value: str) -> Block:
    text = label if len(label) <= 75 else label[:74] + "…"
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value[:2000],
    }


def _service_blocks(services: Sequence[OwnedService], room: int) -> list[Block]:
    """The owned services, one line each, as few sections as fit Slack's 3,000 characters."""
    if not services or room < 3:
        return []
    blocks: list[Block] = [
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Services you own"}},
    ]
    lines = [_service_line(s) for s in services]
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > MAX_SECTION:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line[:MAX_SECTION])
    blocks.append(section("\n".join(chunk)))
    if len(blocks) > room:
        blocks = [*blocks[: room - 1], context("… more services than fit here.")]
    return blocks


def _service_line(service: OwnedService) -> str:
    parts = [f"*{escape(service.name)}*"]
    if service.channel:
        parts.append(escape(service.channel))
    parts.append(escape(service.latest) if service.latest else "no checked release yet")
    if service.muted_until is not None:
        parts.append(f"🔕 muted until {service.muted_until:%b %d %H:%M} UTC")
    return "• " + " · ".join(parts)
