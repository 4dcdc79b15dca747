"""Schemathesis over feedbot's own OpenAPI schema, in process, on a throwaway SQLite store.

Every documented operation is fuzzed with positive and negative data: no answer may be a 5xx, and
every answer's status, content type and body must be the ones the schema documents. Unsigned,
the webhooks and Slack answer 401; the signed variant signs each generated body the way its
sender would (routing a webhook body to the dialect it is shaped like), so generated documents
reach the parsers and the store. No request may make feedbot open a connection anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from feedbot.config import settings_from_mapping
from feedbot.runtime import build_runtime
from feedbot.store.db import migrate
from feedbot.web.app import create_app
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI

SECRET = "fuzz-webhook-secret"
SLACK_SECRET = "fuzz-slack-signing"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
POSTS = ["/webhooks/{name}", "/slack/events"]
GETS = ["/healthz", "/readyz", "/metrics"]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture
def app(tmp_path: Any, slack_api: FakeSlackAPI) -> Iterator[FastAPI]:
    raw = {
        "database_url": f"sqlite:///{tmp_path / 'feedbot.db'}",
        "webhooks": {
            "secret": SECRET,
            "github_secret": SECRET,
            "gitlab_token": SECRET,
            "argocd_token": SECRET,
        },
        "slack": {
            "bot_token": "xoxb-fuzz",
            "signing_secret": SLACK_SECRET,
            "api_url": slack_api.base_url,
        },
    }
    runtime = build_runtime(settings_from_mapping(raw, {}))
    migrate(runtime.engine)
    yield create_app(runtime)
    runtime.engine.dispose()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, slack_api: FakeSlackAPI) -> Iterator[list[object]]:
    """Record and refuse every connection or name lookup except to the configured Slack API.

    bolt calls ``auth.test`` on the configured API (the fake) once; any other address could only
    have come from a request.
    """
    attempts: list[object] = []
    host, port = slack_api.root_url.removeprefix("http://").split(":")
    api_address = (host, int(port))
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if tuple(address[:2]) != api_address:
            attempts.append(address)
            raise OSError("the fuzz test allows no network access")
        real_connect(sock, address)

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if (host, port) != api_address:
            attempts.append((host, port))
            raise OSError("the fuzz test allows no network access")
        return real_lookup(host, port, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield attempts
    assert attempts == []


def _fuzz(app: FastAPI, method: str, path: str, mode: GenerationMode, signed: bool) -> Counter[int]:
    """Run the generated cases of one operation; the statuses answered, counted."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path][method]
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        if signed:
            body, headers = _signed(case)
            response = case.call_and_validate(checks=CHECKS, headers=headers, data=body)
        else:
            response = case.call_and_validate(checks=CHECKS)
        statuses[response.status_code] += 1

    run()
    return statuses


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("path", POSTS)
def test_unsigned_posts_are_refused_and_never_fail_on_the_server(
    app: FastAPI, no_network: list[object], path: str, mode: GenerationMode
) -> None:
    statuses = _fuzz(app, "POST", path, mode, signed=False)
    assert statuses[401] > 10
    assert set(statuses) <= {400, 401, 404, 422}, statuses


@pytest.mark.parametrize("path", GETS)
def test_the_probes_answer_as_documented(app: FastAPI, no_network: list[object], path: str) -> None:
    # They take no parameters: one generated case is all there is.
    assert _fuzz(app, "GET", path, GenerationMode.POSITIVE, signed=False) == {200: 1}


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_signed_webhooks_reach_the_parsers_and_never_fail_on_the_server(
    app: FastAPI, no_network: list[object], mode: GenerationMode
) -> None:
    statuses = _fuzz(app, "POST", "/webhooks/{name}", mode, signed=True)
    if mode == GenerationMode.POSITIVE:
        assert statuses[202] > 10, statuses  # registered, or ignored as not a finished deploy
    else:
        assert statuses[422] + statuses[400] > 10, statuses


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_signed_slack_requests_reach_bolt_and_never_fail_on_the_server(
    app: FastAPI, no_network: list[object], slack_api: FakeSlackAPI, mode: GenerationMode
) -> None:
    statuses = _fuzz(app, "POST", "/slack/events", mode, signed=True)
    assert statuses[200] + statuses[404] > 10, statuses  # bolt acknowledged, or had no listener


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_otlp_ingest_answers_as_an_otlp_server_and_never_fails(
    app: FastAPI, no_network: list[object], mode: GenerationMode
) -> None:
    statuses = _fuzz(app, "POST", "/v1/traces", mode, signed=False)
    assert set(statuses) <= {200, 400, 413, 415}, statuses
    if mode == GenerationMode.POSITIVE:
        assert statuses[200] > 10, statuses
    else:
        assert statuses[400] + statuses[415] > 10, statuses


# --- signing ---------------------------------------------------------------------------------


def _signed(case: Case) -> tuple[bytes, dict[str, str]]:
    """The body as it goes on the wire, and the headers that authenticate it."""
    if case.path == "/slack/events":
        return _slack(case)
    # Negative cases may be raw bytes: those are sent, and signed, as they are.
    body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    name = _dialect(case.body)
    case.path_parameters = {"name": name}
    delivery = hashlib.sha256(body).hexdigest()[:32]
    headers = {"Content-Type": "application/json"}
    if name == "generic":
        headers["X-Feedbot-Signature"] = sign(body, SECRET)
    elif name == "github":
        headers["X-Hub-Signature-256"] = sign(body, SECRET)
        headers["X-GitHub-Event"] = "deployment_status"
        headers["X-GitHub-Delivery"] = delivery
    elif name == "gitlab":
        headers["X-Gitlab-Token"] = SECRET
        headers["X-Gitlab-Event"] = "Deployment Hook"
    else:
        headers["Authorization"] = f"Bearer {SECRET}"
    return body, headers


def _dialect(document: object) -> str:
    """The deploy source a generated document is shaped for."""
    if not isinstance(document, dict):
        return "generic"
    if "deployment_status" in document or "deployment" in document:
        return "github"
    if "object_kind" in document or "project" in document:
        return "gitlab"
    if "app" in document or "revision" in document:
        return "argocd"
    return "generic"


def _slack(case: Case) -> tuple[bytes, dict[str, str]]:
    if isinstance(case.body, bytes):
        raw = case.body
    else:
        form = case.body if isinstance(case.body, dict) else {"text": str(case.body)}
        raw = urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()})
        raw = raw.encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SLACK_SECRET.encode(), f"v0:{stamp}:".encode() + raw, hashlib.sha256)
    return raw, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }
