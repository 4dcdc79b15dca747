from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from feedbot.releases.event import Author
from feedbot.releases.sources.base import DeploySource
from feedbot.releases.sources.gitlab import GitLabDeploySource, parse_gitlab_time
from tests.deploy_sources import changed, deliver, refusal

TOKEN = "gl-webhook-token"
SHA = "279484c09fbe69ededfced8c1bb6e6d24616b468"

# Shaped after the "Deployment events" example in GitLab's webhook events documentation.
DEPLOYMENT_HOOK: dict[str, Any] = {
    "object_kind": "deployment",
    "status": "success",
    "status_changed_at": "2021-04-28 21:50:00 +0200",
    "deployment_id": 15,
    "deployable_id": 796,
    "deployable_url": "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
    "environment": "staging",
    "environment_tier": "staging",
    "environment_slug": "staging",
    "environment_external_url": "https://staging.example.com",
    "project": {
        "id": 30,
        "name": "test-deployment-webhooks",
        "description": "",
        "web_url": "http://10.126.0.2:3000/root/test-deployment-webhooks",
        "avatar_url": None,
        "git_ssh_url": "ssh://vlad@10.126.0.2:2222/root/test-deployment-webhooks.git",
        "git_http_url": "http://10.126.0.2:3000/root/test-deployment-webhooks.git",
        "namespace": "Administrator",
        "visibility_level": 0,
        "path_with_namespace": "root/test-deployment-webhooks",
        "default_branch": "master",
        "ci_config_path": "",
        "homepage": "http://10.126.0.2:3000/root/test-deployment-webhooks",
        "url": "ssh://vlad@10.126.0.2:2222/root/test-deployment-webhooks.git",
        "ssh_url": "ssh://vlad@10.126.0.2:2222/root/test-deployment-webhooks.git",
        "http_url": "http://10.126.0.2:3000/root/test-deployment-webhooks.git",
    },
    "short_sha": "279484c0",
    "user": {
        "id": 1,
        "name": "Administrator",
        "username": "root",
        "avatar_url": "https://www.gravatar.com/avatar/e64c7d89f26bd1972efa854d13d7dd61?s=80&d=identicon",
        "email": "admin@example.com",
    },
    "user_url": "http://10.126.0.2:3000/root",
    "commit_url": f"http://10.126.0.2:3000/root/test-deployment-webhooks/-/commit/{SHA}",
    "commit_title": "Add new file",
    "ref": "1.0.0",
    "sha": SHA,
    "tag": True,
}


def request(
    body: dict[str, Any] | bytes, *, event: str = "Deployment Hook", **extra: str
) -> tuple[dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "x-gitlab-token": TOKEN,
        "x-gitlab-event": event,
        "x-gitlab-instance": "http://10.126.0.2:3000",
        "user-agent": "GitLab/17.5.0",
        "content-type": "application/json",
        **extra,
    }
    return headers, raw


def hook_with(**changes: Any) -> dict[str, Any]:
    return changed(DEPLOYMENT_HOOK, **changes)


def parse(doc: dict[str, Any] | bytes, **kwargs: Any) -> Any:
    return deliver(GitLabDeploySource(TOKEN), *request(doc, **kwargs))


def rejected(doc: dict[str, Any] | bytes, status: int = 422, **kwargs: Any) -> str:
    got, message = refusal(parse, doc, **kwargs)
    assert got == status
    return message


def test_is_a_deploy_source() -> None:
    assert isinstance(GitLabDeploySource(TOKEN), DeploySource)
    assert GitLabDeploySource(TOKEN).name == "gitlab"


def test_documented_deployment_hook_maps_onto_an_event() -> None:
    event = parse(DEPLOYMENT_HOOK)
    assert event.service == "test-deployment-webhooks"
    assert event.version == "279484c0"
    assert event.environment == "staging"
    assert event.commit == SHA
    assert event.repository == "root/test-deployment-webhooks"
    assert event.author == Author(email="admin@example.com", name="Administrator", gitlab="root")
    assert event.title == "Add new file"
    assert event.url == DEPLOYMENT_HOOK["commit_url"]
    assert event.deployed_at == datetime(2021, 4, 28, 19, 50, tzinfo=UTC)
    assert (event.source, event.delivery_id) == ("gitlab", "15:success")


def test_project_path_wins_over_path_with_namespace() -> None:
    assert parse(hook_with(project__path="vault-service")).service == "vault-service"


def test_sha_prefix_is_the_version_without_short_sha() -> None:
    assert parse(hook_with(short_sha=...)).version == SHA[:12]


def test_redacted_email_is_unknown() -> None:
    assert parse(hook_with(user__email="[REDACTED]")).author.email is None


def test_delivery_id_is_stable_even_with_an_event_uuid() -> None:
    uuid = "13792a34-cac6-4fda-95a8-c58e00a3954e"
    event = parse(DEPLOYMENT_HOOK, **{"x-gitlab-event-uuid": uuid})
    assert event.delivery_id == "15:success"


def test_event_uuid_is_the_delivery_id_without_a_deployment_id() -> None:
    uuid = "13792a34-cac6-4fda-95a8-c58e00a3954e"
    event = parse(hook_with(deployment_id=...), **{"x-gitlab-event-uuid": uuid})
    assert event.delivery_id == uuid
    assert parse(hook_with(deployment_id=...)).delivery_id is None


@pytest.mark.parametrize("status", ["created", "running", "failed", "canceled"])
def test_statuses_other_than_success_are_ignored(status: str) -> None:
    assert parse(hook_with(status=status)) is None


@pytest.mark.parametrize("event", ["Push Hook", "Pipeline Hook", "Job Hook"])
def test_other_hooks_are_ignored(event: str) -> None:
    assert parse({"object_kind": "push"}, event=event) is None


def test_missing_token_is_401() -> None:
    headers, body = request(DEPLOYMENT_HOOK)
    del headers["x-gitlab-token"]
    assert refusal(GitLabDeploySource(TOKEN).verify, headers, body) == (
        401,
        "X-Gitlab-Token: missing",
    )


@pytest.mark.parametrize("token", ["wrong", TOKEN + "x", "tökén"])
def test_wrong_token_is_401(token: str) -> None:
    headers, body = request(DEPLOYMENT_HOOK)
    headers["x-gitlab-token"] = token
    assert refusal(GitLabDeploySource(TOKEN).verify, headers, body) == (
        401,
        "X-Gitlab-Token: wrong token",
    )


def test_missing_event_header_is_400() -> None:
    headers, body = request(DEPLOYMENT_HOOK)
    del headers["x-gitlab-event"]
    assert refusal(GitLabDeploySource(TOKEN).parse, headers, body) == (
        400,
        "X-Gitlab-Event: missing",
    )


def test_body_that_is_not_json_is_400() -> None:
    assert rejected(b"<html>", status=400).startswith("body: not valid JSON (")


def test_body_that_is_not_an_object_is_422() -> None:
    assert rejected(b"[]").startswith("body: expected a JSON object")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"object_kind": "build"}, 'object_kind: expected "deployment"'),
        ({"object_kind": ...}, "object_kind: is required"),
        ({"status": ...}, "status: is required"),
        ({"status": True}, "status: expected a string"),
        ({"sha": ...}, "sha: is required"),
        ({"project": ...}, "project: is required"),
        ({"project": "root/x"}, "project: expected an object"),
        ({"project__path_with_namespace": ...}, "project.path_with_namespace: is required"),
        ({"user": []}, "user: expected an object"),
        ({"user__username": 1}, "user.username: expected a string"),
        ({"commit_url": "not a url"}, "commit_url: expected an http(s) URL"),
        ({"deployment_id": 1.5}, "deployment_id: expected a string or an integer"),
        ({"deployment_id": True}, "deployment_id: expected a string or an integer"),
        (
            {"status_changed_at": "28/04/2021"},
            'status_changed_at: expected a time like "2021-04-28 21:50:00 +0200"',
        ),
    ],
)
def test_bad_field_is_422_naming_it(changes: dict[str, Any], expected: str) -> None:
    assert rejected(hook_with(**changes)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-04-28 21:50:00 +0200", datetime(2021, 4, 28, 19, 50, tzinfo=UTC)),
        ("2021-04-28 19:50:00 UTC", datetime(2021, 4, 28, 19, 50, tzinfo=UTC)),
        ("2021-04-28T19:50:00Z", datetime(2021, 4, 28, 19, 50, tzinfo=UTC)),
        ("2021-04-28 19:50:00", None),
        ("yesterday", None),
    ],
)
def test_gitlab_times(text: str, expected: datetime | None) -> None:
    assert parse_gitlab_time(text) == expected


def test_a_namespace_without_a_name_is_refused() -> None:
    message = rejected(hook_with(project__path_with_namespace="acme/"))
    assert "project.path_with_namespace: is required" in message
