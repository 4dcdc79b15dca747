"""The HTML preview draws what Slack would: every block, buttons (accessories too) included."""

from __future__ import annotations

from typing import Any

from feedbot.analysis.report import to_json
from feedbot.demo.preview import message_html
from feedbot.digest.blocks import ReplyOptions, check_reply
from tests.unit.analysis.test_report import CONTEXT, _analysis


def test_every_button_of_a_reply_is_in_the_preview_links_included() -> None:
    report = to_json(_analysis(), CONTEXT)
    out = check_reply(
        report, ReplyOptions(heading="+15m", ui_url="https://ui.example", release_id=7)
    )
    labels: list[str] = []
    for block in out.blocks:
        buttons: list[dict[str, Any]] = [block.get("accessory") or {}, *block.get("elements", [])]
        labels += [b["text"]["text"] for b in buttons if b.get("type") == "button"]
    assert labels.count("Expected") >= 1 and "Open traces" in labels
    page = message_html(out.text, out.blocks)
    assert page.count('class="button"') == len(labels)
    assert page.count(">Expected<") == labels.count("Expected")
    assert '<a class="button" href="https://ui.example/trace/' in page  # Open traces opens it


def test_a_button_url_that_is_not_http_is_not_a_link() -> None:
    block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "x"},
        "accessory": {
            "type": "button",
            "text": {"type": "plain_text", "text": "<b>go</b>"},
            "url": "javascript:alert(1)",
        },
    }
    page = message_html("", [block])
    assert "javascript" not in page and "&lt;b&gt;go&lt;/b&gt;" in page
