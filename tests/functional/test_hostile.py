"""Hostile input: oversized and slow bodies, signature comparison, secrets in logs, fuzzing.

The HTTP cases run against a real uvicorn on loopback; the slow client is a raw socket that
declares a body and never finishes sending it. The parsers are fuzzed with hypothesis: whatever
arrives, they answer with WebhookRejected and a 4xx status, never with any other exception.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from feedbot import logs
from feedbot.config import settings_from_mapping
from feedbot.errors import WebhookRejected
from feedbot.releases.sources import build_sources
from feedbot.runtime import Runtime, build_runtime
from feedbot.spans.otlp_http import decode_request
from feedbot.web.app import SLACK_MAX_BODY_BYTES, create_app
from tests.factories import sign
from tests.servers import AppServer

SECRET = "hostile-webhook-secret"
SLACK_SECRET = "hostile-slack-signing"
TOKEN = "xoxb-1234-5678-abcdefghijkl"
NO_SLACK = "http://127.0.0.1:9/"  # nothing here calls Slack; a closed port if it did
FUZZ = hypothesis_settings(
    database=None,
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def runtime(tmp_path: Any) -> Iterator[Runtime]:
    raw = {
        "database_url": f"sqlite:///{tmp_path / 'feedbot.db'}",
        "server": {"request_timeout": "1s", "max_body_bytes": 65536},
        "webhooks": {"secret": SECRET, "max_body_bytes": 4096},
        "slack": {"bot_token": TOKEN, "signing_secret": SLACK_SECRET, "api_url": NO_SLACK},
    }
    from feedbot.store.db import migrate

    built = build_runtime(settings_from_mapping(raw, {}))
    migrate(built.engine)
    yield built
    built.engine.dispose()


@pytest.fixture
def server(runtime: Runtime) -> Iterator[AppServer]:
    with AppServer(create_app(runtime)) as running:
        yield running


# --- body limits -----------------------------------------------------------------------------


def test_a_declared_body_over_the_endpoint_limit_is_refused_with_413(server: AppServer) -> None:
    body = b"x" * 8192  # over the webhooks' limit, under Slack's and the global one
    for path, size in (("/webhooks/deploy", 4097), ("/v1/traces", 65537)):
        answer = httpx.post(server.url + path, content=b"{" + b" " * size + b"}")
        assert answer.status_code == 413, (path, answer.text)
        assert "over the limit" in answer.json()["error"]
    assert httpx.post(server.url + "/slack/events", content=body).status_code != 413


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(server: AppServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(200):
            yield b"a" * 1024

    for path in ("/slack/events", "/webhooks/deploy", "/v1/traces"):
        answer = httpx.post(server.url + path, content=chunks())
        assert answer.status_code == 413, (path, answer.text)


def test_slack_events_have_their_own_cap(runtime: Runtime) -> None:
    runtime.settings = settings_from_mapping(
        {
            "database_url": runtime.settings.database_url,
            "server": {"max_body_bytes": 4 * SLACK_MAX_BODY_BYTES},
            "slack": {"bot_token": TOKEN, "signing_secret": SLACK_SECRET, "api_url": NO_SLACK},
        },
        {},
    )
    with AppServer(create_app(runtime)) as server:
        big = b"x" * (SLACK_MAX_BODY_BYTES + 1)
        assert httpx.post(server.url + "/slack/events", content=big).status_code == 413
        assert httpx.post(server.url + "/nowhere", content=big).status_code == 404


# --- slow clients ----------------------------------------------------------------------------


def _slow_request(url: str, path: str) -> tuple[bytes, float]:
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        conn.sendall(head.encode() + b'{"service": ')
        answer = conn.recv(65536)
        took = time.monotonic() - started
        while chunk := conn.recv(65536):  # the server closes after a refusal
            answer += chunk
    return answer, took


@pytest.mark.parametrize("path", ["/webhooks/deploy", "/slack/events", "/v1/traces"])
def test_a_body_that_never_finishes_is_answered_408(server: AppServer, path: str) -> None:
    answer, took = _slow_request(server.url, path)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"not received within 1s" in answer
    assert 0.9 < took < 5


def test_the_server_keeps_answering_while_slow_clients_wait(server: AppServer) -> None:
    slow = [socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))]
    slow[0].sendall(b"POST /webhooks/deploy HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n")
    try:
        assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200
    finally:
        slow[0].close()


# --- signatures ------------------------------------------------------------------------------


def test_every_deploy_source_compares_secrets_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    sources = build_sources(
        secret=SECRET, github_secret=SECRET, gitlab_token=SECRET, argocd_token=SECRET
    )
    wrong = {
        "x-feedbot-signature": "sha256=00",
        "x-hub-signature-256": "sha256=00",
        "x-gitlab-token": "nope",
        "authorization": "Bearer nope",
    }
    for source in sources.values():
        before = len(calls)
        with pytest.raises(WebhookRejected) as refused:
            source.verify(wrong, b"{}")
        assert refused.value.status == 401
        assert len(calls) == before + 1, source.name
        assert SECRET not in refused.value.message


def test_a_refusal_never_echoes_the_secret(server: AppServer) -> None:
    body = json.dumps({"service": SECRET, "version": 1}).encode()
    answer = httpx.post(
        server.url + "/webhooks/deploy",
        content=body,
        headers={"X-Feedbot-Signature": SECRET},
    )
    assert answer.status_code == 401
    assert SECRET not in answer.text
    signed = httpx.post(
        server.url + "/webhooks/deploy",
        content=body,
        headers={"X-Feedbot-Signature": sign(body, SECRET)},
    )
    assert signed.status_code == 422
    assert SECRET not in signed.text  # problems name the field, never echo its value


# --- secrets in logs -------------------------------------------------------------------------


def _captured(log_format: str) -> tuple[logging.Logger, io.StringIO]:
    settings = settings_from_mapping(
        {
            "database_url": "postgresql+psycopg://feedbot:db-pass-7781@db/feedbot",
            "webhooks": {"secret": SECRET},
            "slack": {"bot_token": TOKEN, "signing_secret": SLACK_SECRET},
            "traces": {"headers": {"Authorization": "Bearer tempo-token-55"}},
            "log": {"format": log_format},
        },
        {},
    )
    root = logging.Logger("hostile-root")
    out = io.StringIO()
    root.addHandler(logging.StreamHandler(out))
    logs.install(settings, root)
    logs.install(settings, root)  # twice: one filter, not two
    assert len(root.handlers[0].filters) == 1
    return root, out


def test_configured_secrets_and_slack_tokens_are_masked_in_logs() -> None:
    root, out = _captured("text")
    root.warning("token %s secret %s", TOKEN, SECRET)
    root.warning("a user token xoxp-9-9-zzz and db-pass-7781 and tempo-token-55")
    try:
        raise RuntimeError(f"slack answered 401 for {TOKEN} ({SLACK_SECRET})")
    except RuntimeError:
        root.exception("delivery failed")
    text = out.getvalue()
    for secret in (TOKEN, SECRET, SLACK_SECRET, "xoxp-9-9-zzz", "db-pass-7781", "tempo-token-55"):
        assert secret not in text
    assert text.count(logs.MASK) == 7
    assert "RuntimeError: slack answered 401" in text


def test_json_logs_carry_release_and_check_ids_and_stay_masked() -> None:
    root, out = _captured("json")
    root.handlers[0].setFormatter(logs.JsonFormatter())
    root.info("check %s ran", 7, extra={"release_id": 3, "check_id": 7, "note": TOKEN})
    entry = json.loads(out.getvalue())
    assert entry["message"] == "check 7 ran"
    assert (entry["release_id"], entry["check_id"], entry["note"]) == (3, 7, logs.MASK)
    assert entry["level"] == "INFO" and entry["logger"] == "hostile-root"


# --- fuzzing ---------------------------------------------------------------------------------

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
DEPLOY_KEYS = st.sampled_from(
    [
        "service", "version", "environment", "commit", "author", "changes", "file", "functions",
        "lines", "deployed_at", "title", "url", "features", "deployment", "deployment_status",
        "state", "payload", "sha", "ref", "status", "app", "revision", "environment_url",
        "name", "email", "slack", "github", "gitlab", "id", "created_at", "finished_at",
    ]
)  # fmt: skip
DOCUMENTS = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(DEPLOY_KEYS, inner, max_size=6),
    max_leaves=30,
)
HEADER_VALUES = st.text(max_size=40) | st.sampled_from(
    ["deployment_status", "Deployment Hook", "Bearer " + SECRET, "1234", ""]
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "x-github-event", "x-github-delivery", "x-gitlab-event", "x-gitlab-event-uuid",
            "x-feedbot-delivery", "x-gitlab-token", "authorization", "x-feedbot-signature",
            "x-hub-signature-256", "content-type",
        ]
    ),
    HEADER_VALUES,
)  # fmt: skip
SOURCES = build_sources(secret=SECRET, github_secret=SECRET, gitlab_token=SECRET, argocd_token=None)


def _only_rejections(action: Any) -> None:
    try:
        action()
    except WebhookRejected as exc:
        assert 400 <= exc.status < 500, exc


@FUZZ
@given(name=st.sampled_from(sorted(SOURCES)), headers=HEADERS, body=st.binary(max_size=300))
def test_deploy_sources_refuse_arbitrary_bytes_with_a_4xx(
    name: str, headers: dict[str, str], body: bytes
) -> None:
    source = SOURCES[name]
    _only_rejections(lambda: source.verify(headers, body))
    _only_rejections(lambda: source.parse(headers, body))


@FUZZ
@given(name=st.sampled_from(sorted(SOURCES)), headers=HEADERS, document=DOCUMENTS)
def test_deploy_sources_refuse_arbitrary_json_with_a_4xx(
    name: str, headers: dict[str, str], document: Any
) -> None:
    body = json.dumps(document).encode()
    _only_rejections(lambda: SOURCES[name].parse(headers, body))


OTLP_KEYS = st.sampled_from(
    [
        "resourceSpans", "resource", "attributes", "scopeSpans", "scope", "spans", "traceId",
        "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
        "status", "code", "events", "key", "value", "stringValue", "intValue", "doubleValue",
        "boolValue", "arrayValue", "kvlistValue", "bytesValue", "values",
    ]
)  # fmt: skip
OTLP_DOCUMENTS = st.recursive(
    JSON_LEAVES | st.just("0af7651916cd43dd8448eb211c80319c"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(OTLP_KEYS, inner, max_size=5),
    max_leaves=40,
)


@FUZZ
@given(
    body=st.binary(max_size=400),
    media=st.sampled_from(["application/x-protobuf", "application/json", "text/plain", ""]),
    encoding=st.sampled_from([None, "gzip", "identity", "br"]),
)
def test_the_otlp_decoder_refuses_arbitrary_bytes_with_a_4xx(
    body: bytes, media: str, encoding: str | None
) -> None:
    _only_rejections(
        lambda: decode_request(body, content_type=media, content_encoding=encoding, max_bytes=4096)
    )


@FUZZ
@given(document=OTLP_DOCUMENTS)
def test_the_otlp_decoder_refuses_arbitrary_json_with_a_4xx(document: Any) -> None:
    body = json.dumps(document).encode()
    _only_rejections(
        lambda: decode_request(
            body, content_type="application/json", content_encoding=None, max_bytes=1 << 20
        )
    )
