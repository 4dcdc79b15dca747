"""End to end: a real ``feedbot serve``, OTLP spans, a signed deploy, and Slack on the other side.

The DM parent, the check replies in its thread (Block Kit), the parent's status kept current, and
a ``/feedback`` answer all arrive at the fake Slack Web API.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from slack_sdk.models.blocks import Block
from slack_sdk.signature import SignatureVerifier

from tests.factories import otlp_spans, sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.processes import Feedbot

pytestmark = [pytest.mark.slow]
SECRET = "e2e-secret"
SLACK_SECRET = "e2e-slack-secret"


@pytest.fixture
def feedbot(tmp_path: Path, fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Feedbot]:
    config = tmp_path / "feedbot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                # The web server, the ingest and the ticker write concurrently: on SQLite this
                # holds only because store transactions begin IMMEDIATE and wait for the lock.
                "database_url": fresh_database_url,
                "webhooks": {"secret": SECRET},
                "slack": {
                    "bot_token": "xoxb-e2e",
                    "signing_secret": SLACK_SECRET,
                    "api_url": slack_api.base_url,
                },
                "traces": {"ui_url": "https://jaeger.acme.example"},
                "checks": {"after": ["1s", "2s"], "tick": "200ms"},
            }
        )
    )
    process = Feedbot(config, tmp_path / "feedbot.log")
    yield process
    process.stop()


def deploy(url: str, version: str, at: datetime) -> None:
    body = json.dumps(
        {
            "service": "vault-service",
            "version": version,
            "commit": f"sha-{version}",
            "author": {"name": "Bill", "slack": "U123"},
            "title": f"Ship {version}",
            "deployed_at": at.isoformat(),
        }
    ).encode()
    answer = httpx.post(
        f"{url}/webhooks/deploy",
        content=body,
        timeout=10,
        headers={"X-Feedbot-Signature": sign(body, SECRET)},
    )
    assert answer.status_code == 202, answer.text


def spans(url: str, version: str, start: datetime, routes: list[tuple[str, float, bool]]) -> None:
    body = otlp_spans(service="vault-service", version=version, start=start, spans=routes)
    answer = httpx.post(
        f"{url}/v1/traces",
        content=body,
        timeout=10,
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert answer.status_code == 200, answer.text


def until(what: str, done: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := done()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_deploy_to_dm_thread_and_feedback(feedbot: Feedbot, slack_api: FakeSlackAPI) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    spans(feedbot.url, "1.0.0", now - timedelta(hours=2), [("/vaults", 20, False)] * 6)
    spans(
        feedbot.url,
        "2.0.0",
        now - timedelta(seconds=50),
        [("/vaults", 25, False)] * 4 + [("/vaults/{id}", 40, True)],
    )
    deploy(feedbot.url, "1.0.0", now - timedelta(days=1))
    deploy(feedbot.url, "2.0.0", now - timedelta(minutes=1))

    dm = slack_api.dm_channel("U123")

    def parents() -> list[dict[str, Any]]:
        return [
            m
            for m in slack_api.messages_in(dm)
            if m.get("thread_ts", m["ts"]) == m["ts"] and "vault-service 2.0.0" in m["text"]
        ]

    def replies() -> list[dict[str, Any]]:
        return [
            m
            for m in slack_api.messages_in(dm)
            if m.get("thread_ts") == parent["ts"]
            and m["ts"] != parent["ts"]
            and "check of vault-service 2.0.0" in m["text"]
        ]

    [parent] = until("the DM parent", parents)
    checks = until("two check replies", lambda: len(replies()) == 2 and replies())
    for reply in checks:
        for raw in reply["blocks"]:
            Block.parse(raw).validate_json()  # type: ignore[union-attr]
    assert checks[0]["blocks"][0]["text"]["text"].startswith("*⏳ not enough traffic yet*")
    until("the final status", lambda: "all 2 checks ran" in parents()[0]["text"])
    assert "all 2 checks ran" in parents()[0]["blocks"][-1]["elements"][0]["text"]

    body = urlencode(
        {
            "command": "/feedback",
            "text": "vault-service",
            "user_id": "U123",
            "channel_id": "C1",
            "team_id": "T1",
            "api_app_id": "A1",
            "trigger_id": "1.2",
            "response_url": slack_api.response_url("e2e"),
        }
    ).encode()
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=stamp, body=body)
    answer = httpx.post(
        f"{feedbot.url}/slack/events",
        content=body,
        timeout=10,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature,
        },
    )
    assert answer.status_code == 200
    [response] = until("the /feedback answer", lambda: slack_api.responses)
    assert response["response_type"] == "ephemeral"
    text = json.dumps(response["blocks"], ensure_ascii=False)
    assert "newest checked release 2.0.0" in text and "against 1.0.0" in text
    # Traffic over the seconds each version served: a version seen for under a minute reads as
    # a count and a time, never as a rate; the samples behind the percentiles are counts.
    assert re.search(r"`GET /vaults`: 6 spans in [\w ]+ → 4 spans in [\w ]+ · ", text), text
    assert "(n = 6 → 4)" in text
