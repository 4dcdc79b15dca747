from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from feedbot.errors import WebhookRejected
from feedbot.releases.sources.argocd import ArgoCDDeploySource, image_version
from feedbot.releases.sources.base import DeploySource

TOKEN = "argo-bearer-token"
REVISION = "9f2c1e0d5b7a3c4e8f1a2b3c4d5e6f7a8b9c0d1e"

# What docs/argocd.md's feedbot-deployed template renders for an app without feedbot annotations.
RENDERED: dict[str, Any] = {
    "app": "vault-service",
    "project": "default",
    "namespace": "vault",
    "revision": REVISION,
    "images": [
        "docker.io/library/redis:7.2",
        "ghcr.io/acme/vault-service:1.4.2",
        "registry.acme.example:5000/platform/envoy:v1.31.0@sha256:" + "a" * 64,
    ],
    "environment": None,
    "service": None,
    "version": None,
    "url": "https://argocd.acme.example/applications/vault-service",
    "deployed_at": "2026-11-24T10:00:00Z",
}


def headers(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


def parse(doc: Any) -> Any:
    source = ArgoCDDeploySource(TOKEN)
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    source.verify(headers(), body)
    return source.parse(headers(), body)


def rejected(doc: Any, status: int = 422) -> str:
    with pytest.raises(WebhookRejected) as info:
        parse(doc)
    assert info.value.status == status
    return info.value.message


def test_is_a_deploy_source() -> None:
    assert isinstance(ArgoCDDeploySource(TOKEN), DeploySource)
    assert ArgoCDDeploySource(TOKEN).name == "argocd"


def test_rendered_template_maps_onto_an_event() -> None:
    event = parse(RENDERED)
    assert event.service == "vault-service"
    assert event.version == "1.4.2"
    assert event.environment == "production"
    assert event.commit == REVISION
    assert event.url == "https://argocd.acme.example/applications/vault-service"
    assert event.deployed_at == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert (event.source, event.delivery_id) == ("argocd", f"vault-service@{REVISION}")


def test_annotation_overrides_win() -> None:
    doc = {**RENDERED, "service": "vault", "version": "2026.11.24", "environment": "staging"}
    event = parse(doc)
    assert (event.service, event.version, event.environment) == ("vault", "2026.11.24", "staging")
    assert event.delivery_id == f"vault-service@{REVISION}"


def test_revision_prefix_is_the_version_without_images() -> None:
    event = parse({"app": "vault-service", "revision": REVISION, "images": None})
    assert event.version == REVISION[:12]
    assert (event.url, event.deployed_at) == (None, None)


@pytest.mark.parametrize(
    ("images", "service", "expected"),
    [
        (["ghcr.io/acme/api:3.1", "ghcr.io/acme/vault-service:1.4.2"], "vault-service", "1.4.2"),
        (["ghcr.io/acme/api:3.1", "ghcr.io/acme/worker:9"], "vault-service", "3.1"),
        (["ghcr.io/acme/api:latest", "ghcr.io/acme/worker:9"], "vault-service", "9"),
        (["ghcr.io/acme/api@sha256:" + "b" * 64], "api", None),
        (["localhost:5000/api"], "api", None),
        (["localhost:5000/api:1.0@sha256:" + "c" * 64], "api", "1.0"),
        ([], "api", None),
    ],
)
def test_image_version(images: list[str], service: str, expected: str | None) -> None:
    assert image_version(images, service) == expected


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", f"Token {TOKEN}"]
)
def test_missing_bearer_token_is_401(authorization: str | None) -> None:
    sent = {} if authorization is None else {"authorization": authorization}
    with pytest.raises(WebhookRejected) as info:
        ArgoCDDeploySource(TOKEN).verify(sent, b"{}")
    assert (info.value.status, info.value.message) == (401, "Authorization: missing")


@pytest.mark.parametrize("authorization", ["Bearer nope", f"Bearer {TOKEN}x", "Bearer ✓"])
def test_wrong_bearer_token_is_401(authorization: str) -> None:
    with pytest.raises(WebhookRejected) as info:
        ArgoCDDeploySource(TOKEN).verify({"authorization": authorization}, b"{}")
    assert (info.value.status, info.value.message) == (401, "Authorization: wrong token")


def test_bearer_scheme_is_case_insensitive() -> None:
    ArgoCDDeploySource(TOKEN).verify({"authorization": f"bearer  {TOKEN} "}, b"{}")


def test_body_that_is_not_json_is_400() -> None:
    # A template with a missing toJson renders bare words, which must not pass.
    assert rejected(b'{"app": vault-service}', status=400).startswith("body: not valid JSON (")


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"app": None}, "app: is required"),
        ({"revision": ""}, "revision: must not be empty"),
        ({"revision": 42}, "revision: expected a string"),
        ({"images": "ghcr.io/acme/vault:1"}, "images: expected a list"),
        ({"images": [None]}, "images[0]: is required"),
        ({"service": ["x"]}, "service: expected a string"),
        ({"version": "v" * 201}, "version: expected at most 200 characters"),
        ({"url": "<no value>/applications/vault-service"}, "url: expected an http(s) URL"),
        ({"deployed_at": "0001-01-01T00:00:00"}, "deployed_at: not an RFC 3339 time with a zone"),
    ],
)
def test_bad_field_is_422_naming_it(patch: dict[str, Any], expected: str) -> None:
    assert rejected({**RENDERED, **patch}) == expected
