"""``/metrics`` after real traffic, and feedbot's own spans exported to a second feedbot.

Everything runs for real: webhooks and OTLP exports over HTTP into uvicorn, checks against the
embedded backend, messages through the outbox to the fake Slack Web API, and, for tracing,
OTLP/HTTP protobuf from the OpenTelemetry SDK into another feedbot's ``/v1/traces``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from feedbot import __version__, logs
from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.store import db
from feedbot.store.models import Delivery
from feedbot.store.spans import Span
from feedbot.telemetry import OtelTracer
from feedbot.web.app import create_app
from tests.factories import DEPLOYED, otlp_spans, sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers import AppServer

SECRET = "generic-secret"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def make_runtime(database_url: str, slack_api: FakeSlackAPI, **extra: Any) -> Runtime:
    raw = {
        "database_url": database_url,
        "server": {"max_body_bytes": 8192},
        "webhooks": {"secret": SECRET},
        "slack": {
            "bot_token": "xoxb-test",
            "signing_secret": "slack-signing-secret",
            "api_url": slack_api.base_url,
        },
        "checks": {"after": ["1h"]},
        **extra,
    }
    return build_runtime(settings_from_mapping(raw, {}), clock=FixedClock(DEPLOYED))


def post_deploy(client: httpx.Client, *, secret: str = SECRET, source: str = "deploy") -> int:
    doc = {"service": "vault-service", "version": "1.4.2", "author": {"slack": "U123"}}
    body = json.dumps(doc).encode()
    answer = client.post(
        f"/webhooks/{source}", content=body, headers={"X-Feedbot-Signature": sign(body, secret)}
    )
    return answer.status_code


def export_spans(client: httpx.Client, count: int) -> int:
    body = otlp_spans(
        service="vault-service",
        version="1.4.2",
        start=DEPLOYED + timedelta(minutes=1),
        spans=[("/vaults/{id}", 12.0, False)] * count,
    )
    return client.post("/v1/traces", content=body, headers=PROTOBUF).status_code


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Runtime]:
    runtime = make_runtime(fresh_database_url, slack_api)
    yield runtime
    runtime.engine.dispose()


def test_metrics_count_webhooks_ingest_checks_deliveries_and_slack_retries(
    runtime: Runtime, slack_api: FakeSlackAPI
) -> None:
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as client:
        before = scrape(client)
        assert post_deploy(client) == 202
        assert post_deploy(client, secret="forged") == 401
        assert post_deploy(client, source="jenkins") == 404
        assert export_spans(client, 7) == 200
        assert export_spans(client, 5) == 200
        bad_type = client.post("/v1/traces", content=b"{}", headers={"Content-Type": "text/csv"})
        assert bad_type.status_code == 415
        too_large = client.post("/v1/traces", content=b"x" * 10_000, headers=PROTOBUF)
        assert too_large.status_code == 413  # refused by BodyGuard before the OTLP handler

        slack_api.fail_next("chat.postMessage", status=429, retry_after=0)
        runtime.tick()  # the parent DM: rate limited once, then sent
        clock.advance(timedelta(hours=1, minutes=1))
        runtime.tick()  # the +1h check: one query (no previous version), reply and status sent
        after = scrape(client)

    with runtime.sessions() as session:
        sent = session.scalars(select(Delivery).where(Delivery.state == "sent")).all()
    # The parent, the check's reply and status, and the author's Home tab republished.
    assert sorted(d.kind for d in sent) == ["home", "parent", "reply", "status"]
    assert value(before, "feedbot_delivery_attempts_total", outcome="sent") == 0
    assert value(after, "feedbot_delivery_attempts_total", outcome="sent") == 4
    assert value(after, "feedbot_delivery_attempts_total", outcome="retried") == 0
    assert value(after, "feedbot_check_runs_total", outcome="done") == 1
    assert value(after, "feedbot_check_runs_total", outcome="failed") == 0
    retried = value(
        after, "feedbot_slack_retries_total", method="chat.postMessage", reason="rate_limited"
    )
    assert retried == 1
    assert value(after, "feedbot_webhook_requests_total", source="generic", status="202") == 1
    assert value(after, "feedbot_webhook_requests_total", source="generic", status="401") == 1
    assert value(after, "feedbot_webhook_requests_total", source="other", status="404") == 1
    assert value(after, "feedbot_otlp_requests_total") == 4
    assert value(after, "feedbot_otlp_spans_accepted_total") == 12
    assert (
        value(after, "feedbot_otlp_rejected_requests_total", reason="unsupported_media_type") == 1
    )
    assert value(after, "feedbot_otlp_rejected_requests_total", reason="too_large") == 1
    # The versions seen before the deploy (no earlier release registered), then the release's.
    assert value(after, "feedbot_backend_query_seconds_count", backend="embedded") == 2
    assert value(after, "feedbot_backend_query_seconds_sum", backend="embedded") > 0
    assert value(after, "feedbot_http_request_seconds_count", route="/webhooks/{source}") == 3
    # The store's gauges, read at scrape time.
    assert value(after, "feedbot_store_up") == 1
    assert value(after, "feedbot_checks", state="done") == 1
    assert value(after, "feedbot_deliveries", state="sent") == 4
    assert value(after, "feedbot_releases") == 1
    assert value(before, "feedbot_releases") == 0


def test_a_failing_backend_is_counted_by_error(
    fresh_database_url: str, slack_api: FakeSlackAPI
) -> None:
    # Nothing listens on port 1: every query fails with BackendUnavailable.
    runtime = make_runtime(
        fresh_database_url,
        slack_api,
        traces={"backend": "jaeger", "url": "http://127.0.0.1:1", "timeout": "1s"},
    )
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    try:
        with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
            assert post_deploy(c) == 202
            clock.advance(timedelta(hours=1, minutes=1))
            runtime.tick()
            samples = scrape(c)
    finally:
        runtime.engine.dispose()
    errors = value(
        samples, "feedbot_backend_errors_total", backend="jaeger", error="BackendUnavailable"
    )
    assert errors == 1
    assert value(samples, "feedbot_backend_query_seconds_count", backend="jaeger") == 1
    assert value(samples, "feedbot_checks", state="pending") == 1  # retried later
    assert value(samples, "feedbot_check_runs_total", outcome="retried") == 1


def test_metrics_still_answer_while_the_store_is_down(slack_api: FakeSlackAPI) -> None:
    runtime = make_runtime("postgresql+psycopg://postgres@127.0.0.1:1/nothing", slack_api)
    try:
        with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
            samples = scrape(c)
    finally:
        runtime.engine.dispose()
    assert value(samples, "feedbot_store_up") == 0
    assert not any(name == "feedbot_releases" for name, _ in samples)
    assert value(samples, "feedbot_delivery_attempts_total", outcome="sent") == 0


# --- log fields ------------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """feedbot's records as JSON lines, through the filter ``logs.install`` puts on handlers."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.RedactingFilter([]))
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("feedbot")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_json_logs_of_sends_and_checks_carry_their_ids(
    runtime: Runtime, slack_api: FakeSlackAPI, json_lines: io.StringIO
) -> None:
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as client:
        assert post_deploy(client) == 202
    slack_api.fail_next("chat.postMessage", error="channel_not_found")
    runtime.tick()  # the parent DM fails for good
    clock.advance(timedelta(hours=1, minutes=1))
    runtime.tick()
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    [parent] = [e for e in lines if "release:1:parent failed" in e["message"]]
    assert (parent["release_id"], parent["delivery_id"]) == (1, 1)
    assert "check_id" not in parent  # the parent DM belongs to no check
    [status] = [e for e in lines if "release:1:status:1 failed" in e["message"]]
    assert (status["release_id"], status["check_id"]) == (1, 1)
    assert status["delivery_id"] > 1
    done = [e for e in lines if e["message"].startswith("check ")]
    assert done and all((e["release_id"], e["check_id"]) == (1, 1) for e in done)


# --- tracing feedbot itself ------------------------------------------------------------------


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    """A second feedbot whose embedded backend receives the first one's spans."""
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    runtime = build_runtime(settings_from_mapping({"database_url": url}, {}))
    db.migrate(runtime.engine)
    with AppServer(create_app(runtime)) as server:
        yield server.url, runtime
    runtime.engine.dispose()


def stored_spans(runtime: Runtime) -> list[Span]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Span).where(Span.service == "feedbot")))


def test_feedbot_traces_itself_into_another_feedbots_ingest(
    fresh_database_url: str, slack_api: FakeSlackAPI, collector: tuple[str, Runtime]
) -> None:
    collector_url, collector_runtime = collector
    runtime = make_runtime(
        fresh_database_url,
        slack_api,
        telemetry={"traces_endpoint": f"{collector_url}/v1/traces", "service_name": "feedbot"},
    )
    tracer = runtime.tracer
    assert isinstance(tracer, OtelTracer)
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    try:
        with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
            assert post_deploy(c) == 202
            assert export_spans(c, 3) == 200  # its own ingest: never traced
            assert c.get("/metrics").status_code == 200  # scrapes: never traced
            runtime.tick()
            clock.advance(timedelta(hours=1, minutes=1))
            runtime.tick()
        assert tracer.flush()
    finally:
        tracer.shutdown()
        runtime.engine.dispose()

    spans = stored_spans(collector_runtime)
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert set(by_name) == {
        "POST /webhooks/{source}",
        "feedbot.check",
        "feedbot.delivery.send",
        "feedbot.backend.versions",
        "feedbot.backend.collect",
    }
    [webhook] = by_name["POST /webhooks/{source}"]
    assert webhook.kind == "SERVER"
    assert (webhook.route, webhook.method, webhook.version) == (
        "/webhooks/{source}",
        "POST",
        __version__,
    )
    assert webhook.attributes["http.response.status_code"] == 202
    assert webhook.attributes["feedbot.webhook.source"] == "deploy"
    [query] = by_name["feedbot.backend.collect"]
    assert query.kind == "CLIENT"
    [check] = by_name["feedbot.check"]
    assert query.parent_span_id == check.span_id  # the query ran inside the check's span
    assert check.attributes["feedbot.check.outcome"] == "done"
    assert check.attributes["feedbot.release_id"] == 1
    assert query.attributes["feedbot.backend"] == "embedded"
    assert query.attributes["feedbot.query.service"] == "vault-service"
    sends = by_name["feedbot.delivery.send"]
    assert sorted(s.attributes["feedbot.delivery.kind"] for s in sends) == [
        "home",  # the author's Home tab, republished after the check: no release of its own
        "parent",
        "reply",
        "status",
    ]
    assert {s.attributes["feedbot.delivery.outcome"] for s in sends} == {"sent"}
    messages = [s for s in sends if s.attributes["feedbot.delivery.kind"] != "home"]
    assert all(s.attributes["feedbot.release_id"] == 1 for s in messages)
