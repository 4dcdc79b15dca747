"""The Home tab view: each release in its story's words, open findings, buttons, Slack's limits."""

from __future__ import annotations

import copy
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from feedbot.analysis.report import to_json
from feedbot.digest import story
from feedbot.digest.blocks import ACTION_MUTE, escape, finding_key
from feedbot.digest.home import (
    ACTION_OPEN,
    MAX_HOME_BLOCKS,
    HomeRelease,
    OwnedService,
    home_view,
    open_findings,
)
from tests.unit.analysis.test_report import CONTEXT, _analysis

DEPLOYED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def report() -> dict[str, Any]:
    return copy.deepcopy(_report())


@functools.cache
def _report() -> dict[str, Any]:
    return to_json(_analysis(), CONTEXT)  # a confirmed regression and a new KeyError


def valid(view: dict[str, Any]) -> str:
    """Check the view as slack_sdk's models do (Home tab structure, 100 blocks, each block)."""
    View(**view).validate_json()
    for raw in view["blocks"]:
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
        text = raw.get("text", {}).get("text", "") if isinstance(raw.get("text"), dict) else ""
        assert len(text) <= 3000
    assert len(view["blocks"]) <= MAX_HOME_BLOCKS
    return json.dumps(view, ensure_ascii=False)


def release(**overrides: Any) -> HomeRelease:
    fields: dict[str, Any] = {
        "release_id": 7,
        "service": "vault-service",
        "version": "1.4.2",
        "environment": "production",
        "deployed_at": DEPLOYED,
        "report": report(),
        "link": "https://slack.com/archives/D0BILL/p1700000000000100",
    }
    return HomeRelease(**{**fields, **overrides})


def test_a_release_is_told_with_its_story_headline_open_findings_and_buttons() -> None:
    view = home_view("U0BILL", [release()], [])
    body = valid(view)
    told = story.tell(report())
    assert "🔴 regressed" in body and "*vault-service 1.4.2* → production" in body
    assert escape(told.headline) in body  # the same words as the thread reply
    [alarm] = open_findings(report())  # the confirmed regression
    assert alarm["kind"] == "latency_regression"
    assert f"1 open finding: {escape(story.say(alarm, report()))}" in body
    [buttons] = [b for b in view["blocks"] if b["type"] == "actions"]
    opened, muted = buttons["elements"]
    assert opened["action_id"] == ACTION_OPEN
    assert opened["url"] == "https://slack.com/archives/D0BILL/p1700000000000100"
    assert muted["action_id"] == ACTION_MUTE and muted["value"] == "vault-service|24h"


def test_findings_marked_expected_are_no_longer_open() -> None:
    everything = {finding_key(f) for f in report()["findings"]}
    view = home_view("U0BILL", [release(acknowledged=everything)], [])
    body = valid(view)
    assert "No open findings." in body and "open finding" not in body.replace("No open", "")
    assert escape(story.tell(report()).headline) not in body  # the story changed too


def test_a_release_not_checked_yet_and_without_a_link_has_only_mute() -> None:
    view = home_view("U0BILL", [release(report=None, link=None)], [])
    body = valid(view)
    assert "No check has finished yet" in body
    [buttons] = [b for b in view["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in buttons["elements"]] == [ACTION_MUTE]


def test_nothing_shipped_still_lists_owned_services_with_their_mute() -> None:
    until = DEPLOYED + timedelta(hours=24)
    services = [
        OwnedService("ledger", channel="#ledger", latest="2.0.1 · ✅ looks fine"),
        OwnedService("vault-service", muted_until=until),
    ]
    body = valid(home_view("U0BILL", [], services))
    assert "Nothing shipped by you" in body
    assert "*ledger* · #ledger · 2.0.1 · ✅ looks fine" in body
    assert "*vault-service* · no checked release yet · 🔕 muted until Nov 25 10:00 UTC" in body


def test_many_releases_and_services_stay_within_slack_s_limits() -> None:
    releases = [
        release(release_id=n, version=f"1.{n}.0", service=f"svc-{n % 7}" + "x" * 150)
        for n in range(60)
    ]
    services = [OwnedService(f"service-{n}-" + "y" * 120, channel="#c") for n in range(400)]
    view = home_view("U0BILL", releases, services)
    body = valid(view)
    assert len(view["blocks"]) <= MAX_HOME_BLOCKS
    assert "… and 40 older releases" in body
    assert "1.19.0" in body and "1.20.0" not in body  # the newest 20, in order
    assert "Services you own" in body


def test_names_cannot_mention_or_link() -> None:
    hostile = release(service="<!channel> <https://evil.example|x>", version="&<>")
    view = home_view("U0BILL", [hostile], [OwnedService("<!here>")])
    valid(view)
    # Only mrkdwn forms mentions and links; plain_text labels and button values show as typed.
    mrkdwn = json.dumps([_mrkdwn(b) for b in view["blocks"]], ensure_ascii=False)
    assert "<!channel>" not in mrkdwn and "<!here>" not in mrkdwn and "<https://evil" not in mrkdwn
    assert "&lt;!channel&gt;" in mrkdwn and "&lt;!here&gt;" in mrkdwn


def _mrkdwn(block: dict[str, Any]) -> list[str]:
    texts = [block.get("text"), *block.get("elements", [])]
    return [t["text"] for t in texts if isinstance(t, dict) and t.get("type") == "mrkdwn"]
