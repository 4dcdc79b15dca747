"""A regressed route's chart reaches the release's Slack thread once, right after its reply.

Spans come from the real OpenTelemetry SDK through ``/v1/traces``; the check runs through the
runtime's ticker; the chart leaves through the outbox and slack_sdk's ``files_upload_v2``
against the fake Slack Web API, which is told to rate-limit or fail the upload's last step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.digest.chart import format_ms
from feedbot.runtime import Runtime, build_runtime
from feedbot.store.models import Delivery
from feedbot.web.app import create_app
from tests.factories import DEPLOYED, otlp_spans, sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers import AppServer

SECRET = "webhook-secret"
OWNER = "U123"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Runtime]:
    settings = settings_from_mapping(
        {
            "database_url": fresh_database_url,
            "webhooks": {"secret": SECRET},
            "slack": {
                "bot_token": "xoxb-test",
                "signing_secret": "slack-secret",
                "api_url": slack_api.base_url,
            },
            "checks": {"after": ["15m", "1h"]},
            # The SDK names one instance per batch; none of its spans is a warm-up here.
            "services": {"vault-service": {"detectors": {"latency": {"warmup": "0s"}}}},
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


def post_deploy(client: httpx.Client, version: str, at: timedelta) -> None:
    body = json.dumps(
        {
            "service": "vault-service",
            "version": version,
            "commit": f"sha-{version}",
            "author": {"name": "Bill", "slack": OWNER},
            "deployed_at": (DEPLOYED + at).isoformat().replace("+00:00", "Z"),
        }
    ).encode()
    headers = {"X-Feedbot-Signature": sign(body, SECRET), "Content-Type": "application/json"}
    assert client.post("/webhooks/deploy", content=body, headers=headers).status_code == 202


def send_traffic(client: httpx.Client) -> dict[str, float]:
    """/vaults/{id} takes about three times as long in 1.4.2; /health does not change.

    Returns:
        The median duration of /vaults/{id} sent per version.
    """
    medians = {}
    rng = np.random.default_rng(5)
    for version, start, median in (
        ("1.4.1", DEPLOYED - timedelta(hours=2), 20.0),
        ("1.4.2", DEPLOYED + timedelta(minutes=1), 60.0),
    ):
        spans = [
            ("/vaults/{id}", float(ms), False) for ms in rng.lognormal(np.log(median), 0.3, 240)
        ]
        medians[version] = float(np.median([ms for _, ms, _ in spans]))
        spans += [("/health", float(ms), False) for ms in rng.lognormal(np.log(2.0), 0.3, 120)]
        body = otlp_spans(service="vault-service", version=version, start=start, spans=spans)
        got = client.post(
            "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        )
        assert got.status_code == 200, got.text
    return medians


@pytest.mark.parametrize(
    "trouble",
    ["none", "rate_limited", "server_error_before_sharing", "server_error_after_sharing"],
)
def test_the_chart_arrives_once_after_the_check_reply(
    runtime: Runtime, client: httpx.Client, slack_api: FakeSlackAPI, trouble: str
) -> None:
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    post_deploy(client, "1.4.1", -timedelta(days=1))
    clock.set(DEPLOYED)
    post_deploy(client, "1.4.2", timedelta(0))
    medians = send_traffic(client)
    runtime.tick()  # the announcements

    method = "files.completeUploadExternal"
    if trouble == "rate_limited":
        slack_api.fail_next(method, retry_after=0)
    elif trouble == "server_error_before_sharing":
        slack_api.fail_next(method, status=503)
    elif trouble == "server_error_after_sharing":
        slack_api.lose_answer_next(method, drop=False)
    clock.advance(timedelta(minutes=15))
    runtime.tick()
    clock.advance(timedelta(minutes=1))
    runtime.tick()  # a retry, if the outbox had to wait

    [upload] = slack_api.uploads
    assert upload["data"][:8] == PNG
    assert upload["title"] == "GET /vaults/{id}: 1.4.1 → 1.4.2"
    assert str(upload["alt_txt"]) == (
        f"Request times of GET /vaults/{{id}}: 1.4.1: {format_ms(medians['1.4.1'])} median "
        f"before, 1.4.2: {format_ms(medians['1.4.2'])} median after the deploy"
    )
    thread = slack_api.thread(OWNER, str(upload["thread_ts"]))
    assert thread[0]["ts"] == upload["thread_ts"]
    assert "vault-service 1.4.2 → production" in thread[0]["text"]  # the release's own thread
    kinds = ["file" if m.get("files") else str(m["text"]).splitlines()[0] for m in thread[1:]]
    assert kinds == ["🔎 +15m check of vault-service 1.4.2 → production", "file"]
    # Shared at the first completion unless it was refused (a lost answer is found, not redone).
    refused = trouble in ("rate_limited", "server_error_before_sharing")
    assert len(slack_api.calls_to(method)) == (2 if refused else 1)

    # A sender that crashed after the upload, before recording it, finds it instead of sending.
    with runtime.sessions() as session:
        chart = session.scalars(select(Delivery).where(Delivery.kind == "chart")).one()
        assert chart.state == "sent" and chart.ts == upload["id"]
        chart.state, chart.ts, chart.next_attempt_at = "pending", None, clock.now()
        session.commit()
    runtime.tick()
    assert len(slack_api.uploads) == 1
    with runtime.sessions() as session:
        chart = session.scalars(select(Delivery).where(Delivery.kind == "chart")).one()
        assert chart.state == "sent" and chart.ts == upload["id"]

    clock.advance(timedelta(hours=1))
    runtime.tick()  # the +1h check says the same: no second chart
    assert len(slack_api.uploads) == 1
