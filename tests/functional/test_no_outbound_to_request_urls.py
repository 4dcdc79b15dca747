"""feedbot never sends a request to a URL that came from a request (no SSRF).

Deploy documents, GitHub payloads, spans and slash commands all carry URLs. A loopback recorder
stands at every one of them; after the whole flow (deploys, ingest, checks, Slack messages, a
slash command) it must have seen nothing. The Slack answer to a slash command goes to its
``response_url`` only when that is Slack's own host (or the configured API's origin, which is
how these tests reach the fake Slack).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.web.app import create_app
from tests.factories import DEPLOYED, otlp_spans, sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers import AppServer
from tests.unit.releases.sources.test_github_source import DEPLOYMENT_STATUS

SECRET, GITHUB_SECRET, SLACK_SECRET = "webhook-secret", "gh-secret", "slack-secret"


class Recorder:
    """A loopback HTTP server that answers 200 to anything and remembers every request."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                recorder.seen.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as r:
        yield r


@pytest.fixture
def runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Runtime]:
    settings = settings_from_mapping(
        {
            "database_url": fresh_database_url,
            "webhooks": {"secret": SECRET, "github_secret": GITHUB_SECRET},
            "slack": {
                "bot_token": "xoxb-test",
                "signing_secret": SLACK_SECRET,
                "api_url": slack_api.base_url,
            },
            "checks": {"after": ["15m"]},
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


def _generic(client: httpx.Client, doc: dict[str, Any]) -> httpx.Response:
    body = json.dumps(doc).encode()
    headers = {"X-Feedbot-Signature": sign(body, SECRET), "Content-Type": "application/json"}
    return client.post("/webhooks/deploy", content=body, headers=headers)


def _github(client: httpx.Client, at: str) -> httpx.Response:
    doc = copy.deepcopy(DEPLOYMENT_STATUS)
    doc["deployment_status"].update(target_url=f"{at}/ci", log_url=f"{at}/log", url=f"{at}/s")
    doc["deployment_status"]["environment_url"] = f"{at}/env"
    doc["deployment"].update(url=f"{at}/d", statuses_url=f"{at}/st", repository_url=f"{at}/r")
    doc["deployment"]["payload"] = {
        "service": "vault-service",
        "version": "1.4.3",
        "url": f"{at}/pr",
        "author": {"slack": "U123"},
    }
    doc["repository"]["html_url"] = f"{at}/repo"
    body = json.dumps(doc).encode()
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "d-1",
        "Content-Type": "application/json",
    }
    return client.post("/webhooks/github", content=body, headers=headers)


def _slash(client: httpx.Client, response_url: str) -> httpx.Response:
    body = urlencode(
        {
            "command": "/feedback",
            "text": "vault-service",
            "user_id": "U123",
            "team_id": "T1",
            "channel_id": "C1",
            "api_app_id": "A1",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
    ).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(SLACK_SECRET).generate_signature(
            timestamp=stamp, body=body
        ),
    }
    return client.post("/slack/events", content=body, headers=headers)


def test_urls_in_deploys_spans_and_commands_are_never_fetched(
    runtime: Runtime, client: httpx.Client, slack_api: FakeSlackAPI, recorder: Recorder
) -> None:
    at, clock = recorder.url, runtime.clock
    assert isinstance(clock, FixedClock)
    base = {"service": "vault-service", "author": {"slack": "U123", "email": "bill@acme.example"}}
    old = {**base, "version": "1.4.1", "deployed_at": (DEPLOYED - timedelta(days=1)).isoformat()}
    assert _generic(client, old).status_code == 202
    clock.set(DEPLOYED)
    new = {
        **base,
        "version": "1.4.2",
        "url": f"{at}/pull/42",
        "title": f"See {at}/notes",
        "deployed_at": DEPLOYED.isoformat(),
    }
    assert _generic(client, new).status_code == 202
    for version, start in (("1.4.1", DEPLOYED - timedelta(hours=2)), ("1.4.2", DEPLOYED)):
        spans = otlp_spans(
            service="vault-service",
            version=version,
            start=start + timedelta(minutes=1),
            spans=[(f"{at}/vaults", 20, False)] * 5,
        )
        got = client.post(
            "/v1/traces", content=spans, headers={"Content-Type": "application/x-protobuf"}
        )
        assert got.status_code == 200, got.text
    clock.advance(timedelta(minutes=16))
    runtime.tick()
    assert _github(client, at).status_code == 202
    runtime.tick()
    assert _slash(client, f"{at}/response").status_code == 200  # not Slack's: no answer
    assert _slash(client, slack_api.response_url("ok")).status_code == 200  # Slack's: answered

    deadline = time.monotonic() + 10
    while not slack_api.responses and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # the lazy listener of the first command has had its chance too
    texts = [m["text"] for m in slack_api.calls_to("chat.postMessage")]
    assert any("+15m check" in t for t in texts)  # the flow really ran to the end
    assert any("1.4.3" in t for t in texts)
    assert len(slack_api.responses) == 1
    assert recorder.seen == []
