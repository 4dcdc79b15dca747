"""``POST /v1/traces`` under hostile senders: the bearer token, the span cap, gzip members.

Through the real ASGI app (``create_app``) on loopback uvicorn, with spans made by the
OpenTelemetry SDK and sent by its OTLP/HTTP exporter where an exporter would send them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from sqlalchemy import func, select

from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.spans.otlp import MAX_GZIP_MEMBERS, PROTOBUF
from feedbot.store.db import migrate
from feedbot.store.spans import Span
from feedbot.web.app import create_app
from tests.fakes.sdk_spans import otlp_document, protobuf, sdk_spans
from tests.servers import AppServer

TOKEN = "ingest-token-0123456789abcdef"
CAP = 40


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    raw = {
        "database_url": f"sqlite:///{tmp_path / 'feedbot.db'}",
        "traces": {"backend": "embedded", "ingest_max_spans": CAP},
    }
    built = build_runtime(settings_from_mapping(raw, {"FEEDBOT_INGEST_TOKEN": TOKEN}))
    migrate(built.engine)
    yield built
    built.engine.dispose()


@pytest.fixture
def server(runtime: Runtime) -> Iterator[AppServer]:
    with AppServer(create_app(runtime)) as running:
        yield running


def spans(count: int, version: str = "1.0.0") -> list[ReadableSpan]:
    """``count`` server spans of one service, from the SDK."""

    def build(tracer: object) -> None:
        for i in range(count):
            with tracer.start_as_current_span(f"GET /items/{i % 3}"):  # type: ignore[attr-defined]
                pass

    return sdk_spans({"service.name": "checkout", "service.version": version}, build)


def stored(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Span)).scalar_one())


def post(server: AppServer, body: bytes, **headers: str) -> httpx.Response:
    headers = {"content-type": PROTOBUF, "authorization": f"Bearer {TOKEN}", **headers}
    return httpx.post(server.url + "/v1/traces", content=body, headers=headers)


# --- the token -----------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_a_request_without_the_token_is_401_naming_the_header(
    server: AppServer, runtime: Runtime, authorization: str | None
) -> None:
    headers = {"content-type": PROTOBUF}
    if authorization is not None:
        headers["authorization"] = authorization
    answer = httpx.post(server.url + "/v1/traces", content=protobuf(spans(2)), headers=headers)
    assert answer.status_code == 401, answer.text
    assert "Authorization: expected 'Bearer <token>'" in answer.json()["error"]
    assert answer.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in answer.text
    assert stored(runtime) == 0


def test_an_exporter_configured_by_the_environment_sends_the_token(
    server: AppServer, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's line: the SDK reads OTEL_EXPORTER_OTLP_HEADERS when the exporter is built.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{TOKEN}")
    exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces")
    assert exporter.export(spans(3)) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert stored(runtime) == 3


def test_without_a_configured_token_anyone_may_send(tmp_path: Path) -> None:
    raw = {"database_url": f"sqlite:///{tmp_path / 'open.db'}"}
    runtime = build_runtime(settings_from_mapping(raw, {}))
    migrate(runtime.engine)
    try:
        with AppServer(create_app(runtime)) as server:
            answer = httpx.post(
                server.url + "/v1/traces",
                content=protobuf(spans(2)),
                headers={"content-type": PROTOBUF},
            )
        assert answer.status_code == 200, answer.text
        assert stored(runtime) == 2
    finally:
        runtime.engine.dispose()


# --- the span cap --------------------------------------------------------------------------


def test_a_request_at_the_span_cap_is_stored(server: AppServer, runtime: Runtime) -> None:
    assert post(server, protobuf(spans(CAP))).status_code == 200
    body = json.dumps(otlp_document(spans(CAP, "1.0.1"))).encode()
    assert post(server, body, **{"content-type": "application/json"}).status_code == 200
    assert stored(runtime) == 2 * CAP


@pytest.mark.parametrize("media", [PROTOBUF, "application/json"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_request_over_the_span_cap_is_413_and_nothing_is_stored(
    server: AppServer, runtime: Runtime, media: str, encoding: str
) -> None:
    batch = spans(CAP + 1)
    body = protobuf(batch) if media == PROTOBUF else json.dumps(otlp_document(batch)).encode()
    if encoding == "gzip":
        body = gzip.compress(body)
    answer = post(server, body, **{"content-type": media, "content-encoding": encoding})
    assert answer.status_code == 413, answer.text
    assert f"more than {CAP} spans in one request" in answer.json()["error"]
    assert stored(runtime) == 0


def test_spans_spread_over_many_resources_count_together(
    server: AppServer, runtime: Runtime
) -> None:
    # Each half is under the cap; the request is not.
    half = CAP // 2 + 1
    body = protobuf(spans(half, "2.0.0") + spans(half, "2.0.1"))
    answer = post(server, body)
    assert answer.status_code == 413, answer.text
    assert stored(runtime) == 0


# --- gzip members --------------------------------------------------------------------------


def test_gzip_members_past_the_cap_are_413(server: AppServer, runtime: Runtime) -> None:
    empty = gzip.compress(b"")
    first = gzip.compress(protobuf(spans(2)))
    at_cap = first + empty * (MAX_GZIP_MEMBERS - 1)
    assert post(server, at_cap, **{"content-encoding": "gzip"}).status_code == 200
    answer = post(server, at_cap + empty, **{"content-encoding": "gzip"})
    assert answer.status_code == 413, answer.text
    assert f"more than {MAX_GZIP_MEMBERS} gzip members" in answer.json()["error"]
    assert stored(runtime) == 2
