from __future__ import annotations

from feedbot.digest.plain import RULE, blocks_text, mrkdwn_text


def test_mrkdwn_loses_bold_stars_and_escapes_and_links_show_their_address() -> None:
    text = "*vault-service* — <https://ci.example/1|trace 1a2b> · a*b · `x&lt;y&gt;` &amp; <https://x.example>"
    assert mrkdwn_text(text) == (
        "vault-service — trace 1a2b (https://ci.example/1) · a*b · `x<y>` & https://x.example"
    )


def test_blocks_become_paragraphs_and_the_fallback_is_used_without_text_blocks() -> None:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Open findings*\n• one"}},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "n=3"}, {"type": "image"}]},
        {
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Expected"}}],
        },
    ]
    assert blocks_text(blocks) == f"Open findings\n• one\n\n{RULE}\n\nn=3\n\n[Expected]\n"
    assert blocks_text([], "*No finished check* yet") == "No finished check yet\n"


def test_a_section_accessory_button_is_printed_like_the_other_buttons() -> None:
    block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*latency regression* — GET got slower"},
        "accessory": {"type": "button", "text": {"type": "plain_text", "text": "Expected"}},
    }
    assert blocks_text([block]) == "latency regression — GET got slower\n[Expected]\n"
