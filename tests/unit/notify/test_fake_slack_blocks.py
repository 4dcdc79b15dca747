"""The fake Slack Web API refuses the messages Slack refuses, so every test checks its blocks."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.slack_api import FakeSlackAPI

GOOD = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"text": "x", "blocks": [GOOD] * 51}, "invalid_blocks"),
        (
            {
                "text": "x",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}],
            },
            "invalid_blocks",
        ),
        ({"text": "x", "blocks": [{"type": "no-such-block"}]}, "invalid_blocks"),
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"text": "x", "blocks": [GOOD] * 50}, None),
    ],
)
def test_post_message_checks_blocks(
    slack_api: FakeSlackAPI, params: dict[str, object], error: str | None
) -> None:
    answer = httpx.post(
        f"{slack_api.base_url}chat.postMessage",
        json={"channel": "#c", **params},
        headers={"Authorization": "Bearer xoxb-t"},
    ).json()
    assert answer.get("error") == error and answer["ok"] is (error is None)
    response = httpx.post(slack_api.response_url(), json=params).json()
    assert response.get("error") == error
