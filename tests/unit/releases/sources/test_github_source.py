from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from feedbot.releases.event import Author, Change
from feedbot.releases.sources.base import DeploySource
from feedbot.releases.sources.github import GitHubDeploySource
from tests.deploy_sources import changed, deliver, refusal

SECRET = "gh-webhook-secret"
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"


def user(login: str, kind: str = "User") -> dict[str, Any]:
    return {
        "login": login,
        "id": 21031067,
        "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "avatar_url": "https://avatars1.githubusercontent.com/u/21031067?v=4",
        "url": f"https://api.github.com/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": kind,
        "site_admin": False,
    }


# Shaped after the deployment_status example in GitHub's webhook events documentation.
DEPLOYMENT_STATUS: dict[str, Any] = {
    "action": "created",
    "deployment_status": {
        "url": "https://api.github.com/repos/acme/vault/deployments/145988746/statuses/534747693",
        "id": 534747693,
        "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXM1MzQ3NDc2OTM=",
        "state": "success",
        "creator": user("octo-deployer"),
        "description": "",
        "environment": "production",
        "target_url": "https://ci.acme.example/runs/991",
        "created_at": "2026-11-24T09:59:58Z",
        "updated_at": "2026-11-24T10:00:00Z",
        "deployment_url": "https://api.github.com/repos/acme/vault/deployments/145988746",
        "repository_url": "https://api.github.com/repos/acme/vault",
    },
    "deployment": {
        "url": "https://api.github.com/repos/acme/vault/deployments/145988746",
        "id": 145988746,
        "node_id": "MDEwOkRlcGxveW1lbnQxNDU5ODg3NDY=",
        "sha": SHA,
        "ref": "main",
        "task": "deploy",
        "payload": {},
        "original_environment": "production",
        "environment": "production",
        "description": "Deploy request from hubot",
        "creator": user("bill"),
        "created_at": "2026-11-24T09:58:00Z",
        "updated_at": "2026-11-24T10:00:00Z",
        "statuses_url": "https://api.github.com/repos/acme/vault/deployments/145988746/statuses",
        "repository_url": "https://api.github.com/repos/acme/vault",
    },
    "repository": {
        "id": 186853002,
        "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
        "name": "vault",
        "full_name": "acme/vault",
        "private": True,
        "owner": user("acme", "Organization"),
        "html_url": "https://github.com/acme/vault",
        "default_branch": "main",
    },
    "sender": user("octo-deployer"),
}

PAYLOAD = {
    "service": "vault-service",
    "version": "1.4.2",
    "title": "Cache vault appraisals",
    "url": "https://github.com/acme/vault/pull/42",
    "previous_commit": "1a2b3c4d5e6f",
    "author": {"email": "bill@acme.example", "slack": "U123"},
    "features": ["appraisal"],
    "changes": [{"file": "vault/appraisal.py", "lines": [[10, 42]]}],
}


def request(
    body: dict[str, Any] | bytes, *, event: str = "deployment_status"
) -> tuple[dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers = {
        "x-hub-signature-256": f"sha256={digest}",
        "x-github-event": event,
        "x-github-delivery": DELIVERY,
        "user-agent": "GitHub-Hookshot/044aadd",
        "content-type": "application/json",
    }
    return headers, raw


def status_with(**changes: Any) -> dict[str, Any]:
    return changed(DEPLOYMENT_STATUS, **changes)


def parse(doc: dict[str, Any] | bytes, **kwargs: Any) -> Any:
    return deliver(GitHubDeploySource(SECRET), *request(doc, **kwargs))


def rejected(doc: dict[str, Any] | bytes, status: int = 422) -> str:
    got, message = refusal(parse, doc)
    assert got == status
    return message


def test_is_a_deploy_source() -> None:
    assert isinstance(GitHubDeploySource(SECRET), DeploySource)
    assert GitHubDeploySource(SECRET).name == "github"


def test_success_without_payload_maps_from_github_fields() -> None:
    event = parse(DEPLOYMENT_STATUS)
    assert event.service == "vault"
    assert event.version == SHA[:12]
    assert event.environment == "production"
    assert event.commit == SHA
    assert event.repository == "acme/vault"
    assert event.author == Author(github="bill")
    assert event.title == "Deploy request from hubot"
    assert event.url == "https://ci.acme.example/runs/991"
    assert event.deployed_at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert (event.source, event.delivery_id) == ("github", DELIVERY)


@pytest.mark.parametrize("encode", [False, True], ids=["object", "json-string"])
def test_payload_in_the_generic_shape_overrides(encode: bool) -> None:
    payload = json.dumps(PAYLOAD) if encode else PAYLOAD
    event = parse(status_with(deployment__payload=payload))
    assert (event.service, event.version) == ("vault-service", "1.4.2")
    assert event.title == "Cache vault appraisals"
    assert event.url == "https://github.com/acme/vault/pull/42"
    assert event.previous_commit == "1a2b3c4d5e6f"
    assert event.author == Author(email="bill@acme.example", slack="U123", github="bill")
    assert event.features == ("appraisal",)
    assert event.changes == (Change("vault/appraisal.py", (), ((10, 42),)),)


def test_payload_author_github_wins_over_creator() -> None:
    event = parse(status_with(deployment__payload={"author": {"github": "alice"}}))
    assert event.author.github == "alice"


def test_bot_creator_falls_back_to_sender() -> None:
    doc = status_with(deployment__creator=user("github-actions[bot]", "Bot"))
    assert parse(doc).author.github == "octo-deployer"


def test_missing_creator_and_bot_sender_leave_github_unknown() -> None:
    doc = status_with(deployment__creator=..., sender=user("deploy-app[bot]", "Bot"))
    assert parse(doc).author.github is None


@pytest.mark.parametrize("payload", ["", None])
def test_empty_payload_string_or_null_is_no_payload(payload: Any) -> None:
    assert parse(status_with(deployment__payload=payload)).service == "vault"


def test_created_at_is_used_when_updated_at_is_missing() -> None:
    doc = status_with(deployment_status__updated_at=...)
    assert parse(doc).deployed_at == datetime(2026, 11, 24, 9, 59, 58, tzinfo=UTC)


def test_empty_target_url_falls_back_to_log_url_then_none() -> None:
    doc = status_with(deployment_status__target_url="")
    assert parse(doc).url is None
    doc["deployment_status"]["log_url"] = "https://ci.acme.example/runs/991/log"
    assert parse(doc).url == "https://ci.acme.example/runs/991/log"


@pytest.mark.parametrize(
    "state", ["pending", "queued", "in_progress", "failure", "error", "inactive"]
)
def test_states_other_than_success_are_ignored(state: str) -> None:
    assert parse(status_with(deployment_status__state=state)) is None


@pytest.mark.parametrize("event", ["ping", "deployment", "push", "workflow_run"])
def test_other_events_are_ignored(event: str) -> None:
    body = {"zen": "Keep it logically awesome.", "hook_id": 1} if event == "ping" else {}
    assert parse(body, event=event) is None


def test_missing_signature_is_401() -> None:
    headers, body = request(DEPLOYMENT_STATUS)
    del headers["x-hub-signature-256"]
    assert refusal(GitHubDeploySource(SECRET).verify, headers, body) == (
        401,
        "X-Hub-Signature-256: missing",
    )


def test_wrong_signature_is_401() -> None:
    headers, body = request(DEPLOYMENT_STATUS)
    status, message = refusal(GitHubDeploySource("another-secret").verify, headers, body)
    assert status == 401
    assert message.startswith("X-Hub-Signature-256:")


@pytest.mark.parametrize(
    ("header", "display"),
    [("x-github-delivery", "X-GitHub-Delivery"), ("x-github-event", "X-GitHub-Event")],
)
def test_missing_github_header_is_400(header: str, display: str) -> None:
    headers, body = request(DEPLOYMENT_STATUS)
    del headers[header]
    assert refusal(GitHubDeploySource(SECRET).parse, headers, body) == (400, f"{display}: missing")


def test_body_that_is_not_json_is_400() -> None:
    assert rejected(b"payload=%7B%7D", status=400).startswith("body: not valid JSON (")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"deployment_status": ...}, "deployment_status: is required"),
        ({"deployment_status": "success"}, "deployment_status: expected an object"),
        ({"deployment_status__state": ...}, "deployment_status.state: is required"),
        ({"deployment_status__state": 1}, "deployment_status.state: expected a string"),
    ],
)
def test_unreadable_state_is_422(changes: dict[str, Any], expected: str) -> None:
    assert rejected(status_with(**changes)) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"deployment": ...}, "deployment: is required"),
        ({"deployment__sha": ...}, "deployment.sha: is required"),
        ({"repository": ...}, "repository: is required"),
        ({"repository__full_name": 5}, "repository.full_name: expected a string"),
        (
            {"deployment__payload": "not json"},
            "deployment.payload: a string that is not valid JSON",
        ),
        (
            {"deployment__payload": "[1]"},
            "deployment.payload: expected an object or a JSON-encoded object",
        ),
        ({"deployment__payload": {"version": 2}}, "deployment.payload.version: expected a string"),
        (
            {"deployment__payload": {"author": {"email": 1}}},
            "deployment.payload.author.email: expected a string",
        ),
        (
            {"deployment__payload": {"features": [1]}},
            "deployment.payload.features[0]: expected a string",
        ),
        (
            {"deployment__payload": {"changes": [{"file": "a.py", "lines": [[3, 1]]}]}},
            "deployment.payload.changes[0].lines[0]: expected [start, end] with 1 <= start <= end",
        ),
        (
            {"deployment_status__updated_at": "today"},
            "deployment_status.updated_at: not an RFC 3339 time with a zone",
        ),
    ],
)
def test_bad_field_is_422_naming_its_path(changes: dict[str, Any], expected: str) -> None:
    assert rejected(status_with(**changes)) == expected


def test_a_repository_without_a_name_is_refused() -> None:
    assert "repository.full_name: expected owner/name" in rejected(
        status_with(repository__full_name="acme/")
    )


def test_a_payload_nested_past_the_recursion_limit_is_a_422() -> None:
    message = rejected(status_with(deployment__payload="[" * 100_000))
    assert "deployment.payload: a string that is not valid JSON" in message
