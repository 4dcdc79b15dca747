"""A signed deploy webhook in, a Slack DM thread out: the whole spine through HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.web.app import create_app
from tests.factories import DEPLOYED, otlp_spans, sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers import AppServer

SECRET = "webhook-secret"


@pytest.fixture
def runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Runtime]:
    settings = settings_from_mapping(
        {
            "database_url": fresh_database_url,
            "webhooks": {"secret": SECRET, "max_body_bytes": 4096},
            "slack": {
                "bot_token": "xoxb-test",
                "signing_secret": "slack-secret",
                "api_url": slack_api.base_url,
            },
            "checks": {"after": ["15m", "1h"]},
        },
        {},
    )
    rt = build_runtime(settings, clock=FixedClock(DEPLOYED - timedelta(days=1)))
    yield rt
    rt.engine.dispose()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def post_deploy(client: httpx.Client, doc: dict[str, object], secret: str = SECRET) -> object:
    body = json.dumps(doc).encode()
    return client.post(
        "/webhooks/deploy",
        content=body,
        headers={"X-Feedbot-Signature": sign(body, secret), "Content-Type": "application/json"},
    )


def deploy(version: str, at_offset: timedelta = timedelta(0)) -> dict[str, object]:
    return {
        "service": "vault-service",
        "version": version,
        "commit": f"sha-{version}",
        "author": {"name": "Bill", "slack": "U123"},
        "title": f"Release {version}",
        "deployed_at": (DEPLOYED + at_offset).isoformat().replace("+00:00", "Z"),
    }


def test_deploy_is_announced_checked_and_threaded(
    runtime: Runtime, client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    assert post_deploy(client, deploy("1.4.1", -timedelta(days=1))).status_code == 202
    clock.set(DEPLOYED)
    answer = post_deploy(client, deploy("1.4.2"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["created"] is True and answer.json()["checks"] == 2

    # Traffic of both versions, through the real OTLP endpoint.
    for version, start, spans in (
        ("1.4.1", DEPLOYED - timedelta(hours=2), [("/vaults", 20, False)] * 6),
        (
            "1.4.2",
            DEPLOYED + timedelta(minutes=1),
            [("/vaults", 25, False)] * 4 + [("/vaults/{id}", 40, True)],
        ),
    ):
        body = otlp_spans(service="vault-service", version=version, start=start, spans=spans)
        got = client.post(
            "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        )
        assert got.status_code == 200, got.text

    runtime.tick()  # the announcements go out; no check is due yet
    parents = [m for m in slack_api.calls_to("chat.postMessage") if "thread_ts" not in m]
    new_parent = [m for m in parents if "1.4.2" in m["text"]]
    assert len(new_parent) == 1 and "+15m, +1h" in new_parent[0]["text"]

    clock.advance(timedelta(minutes=15))
    runtime.tick()
    replies = [m for m in slack_api.calls_to("chat.postMessage") if m.get("thread_ts")]
    check_reply = [m for m in replies if "+15m check" in m["text"]]
    assert len(check_reply) == 1
    text = check_reply[0]["text"]
    assert "vault-service 1.4.2 vs 1.4.1" in text
    assert "New version: 5 spans in 2 groups; baseline: 6 spans in 1 groups." in text
    assert "verdict: insufficient_data" in text  # 5 spans prove nothing either way
    assert "1 new operation" in text  # the story's one line for the rest
    assert "new operation: GET /vaults/{id} (SERVER) is new" in text  # and in its evidence
    updates = slack_api.calls_to("chat.update")
    assert updates and "watching: 1 of 2 checks done" in updates[-1]["text"]

    clock.advance(timedelta(hours=1))
    runtime.tick()
    assert "all 2 checks ran" in slack_api.calls_to("chat.update")[-1]["text"]
    runtime.tick()  # nothing is sent twice
    keys = [m["metadata"]["event_payload"]["key"] for m in slack_api.calls_to("chat.postMessage")]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("headers", "body", "status", "fragment"),
    [
        ({}, b'{"service": "a", "version": "1"}', 401, "X-Feedbot-Signature"),
        ({"X-Feedbot-Signature": "sha256=00"}, b'{"service": "a", "version": "1"}', 401, ""),
        (None, b"{not json", 400, "JSON"),
        (None, b'{"service": "a"}', 422, "version"),
        (
            None,
            b'{"service": "a", "version": "1", "changes": [{"lines": [[5, 2]]}]}',
            422,
            "changes[0].lines[0]",
        ),
        (None, b'{"service": "a", "version": "1", "title": "' + b"x" * 5000 + b'"}', 413, "limit"),
    ],
)
def test_rejections_name_the_problem_and_register_nothing(
    client: httpx.Client,
    headers: dict[str, str] | None,
    body: bytes,
    status: int,
    fragment: str,
) -> None:
    sent = headers if headers is not None else {"X-Feedbot-Signature": sign(body, SECRET)}
    answer = client.post("/webhooks/deploy", content=body, headers=sent)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error"]
    assert client.get("/metrics").text.count("feedbot_releases 0") == 1


def test_unconfigured_and_unknown_sources(client: httpx.Client) -> None:
    assert client.post("/webhooks/github", content=b"{}").status_code == 401
    assert "github_secret" in client.post("/webhooks/github", content=b"{}").json()["error"]
    assert client.post("/webhooks/bitbucket", content=b"{}").status_code == 404


def test_health_readiness_and_metrics(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").text
    assert "# TYPE feedbot_checks gauge" in metrics and "feedbot_releases 0" in metrics
