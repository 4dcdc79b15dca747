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


def test_a_chart_shows_inline_after_the_reply_it_follows() -> None:
    import base64

    from feedbot.demo.preview import page
    from feedbot.demo.recorder import Delivered
    from feedbot.notify.base import Attachment, Message, Receipt

    head = Receipt("D1", "1.0")
    png = b"\x89PNG\r\n\x1a\n<not html>"
    delivered = [
        Delivered(head, Message("release:1:parent", "U1", "vault 2.0.0 is live")),
        Delivered(
            Receipt("D1", "1.1"), Message("release:1:check:1", "U1", "+15m check", thread=head)
        ),
        Delivered(
            Receipt("D1", "F1"),
            Message(
                "release:1:check:1:chart:1",
                "U1",
                'Request times of GET /a<b> "x"',
                thread=head,
                file=Attachment("release-1-check-1-chart-1.png", "GET /a<b>: 1 → 2", png),
            ),
        ),
    ]
    html = page(delivered, title="t", recipient="U1")
    image = html.index(f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}"')
    assert html.index("+15m check") < html.index("GET /a&lt;b&gt;: 1 → 2") < image
    assert 'alt="Request times of GET /a&lt;b&gt; &quot;x&quot;"' in html
    assert "<not html>" not in html
