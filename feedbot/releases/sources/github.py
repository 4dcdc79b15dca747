"""GitHub ``deployment_status`` and ``pull_request`` webhooks, signed with ``X-Hub-Signature-256``.

A ``pull_request`` event (actions ``opened``, ``synchronize``, ``reopened``) is no release: the
web layer asks :func:`is_pull_request` and hands :func:`parse_pull_request`'s event to the
pull-request preview (:mod:`feedbot.checks.preview`).

Only a status of ``success`` is a release; every other state, ``ping`` and every other event is
answered "ignored". ``deployment.payload`` is free JSON set by whoever created the deployment
(GitHub delivers it as an object or as a JSON-encoded string); feedbot reads the generic
document's keys from it (``service``, ``version``, ``title``, ``url``, ``previous_commit``,
``author``, ``features``, ``changes``), so a workflow can say exactly what it shipped::

    gh api repos/acme/vault/deployments -f ref=main -f environment=production \\
      -f 'payload={"service": "vault-service", "version": "1.4.2"}'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from feedbot.releases.event import Author, ReleaseEvent
from feedbot.releases.sources._common import (
    COMMIT_MAX,
    ENVIRONMENT_MAX,
    FEATURES_MAX,
    HANDLE_MAX,
    TITLE_MAX,
    Fields,
    Problems,
    load_json,
    read_author,
    read_changes,
    require_secret,
    required_header,
    verify_hmac_sha256,
)


class GitHubDeploySource:
    """GitHub's ``deployment_status`` event.

    Args:
        secret: the webhook's secret, as set in the repository's or organisation's settings.
    """

    name = "github"

    def __init__(self, secret: str) -> None:
        self._secret = require_secret("GitHubDeploySource", secret)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        verify_hmac_sha256(
            headers,
            body,
            secret=self._secret,
            name="x-hub-signature-256",
            display="X-Hub-Signature-256",
        )

    def parse(self, headers: Mapping[str, str], body: bytes) -> ReleaseEvent | None:
        """Returns None for ``ping``, other events, and states other than ``success``."""
        delivery_id = required_header(headers, "x-github-delivery", "X-GitHub-Delivery")
        if required_header(headers, "x-github-event", "X-GitHub-Event") != "deployment_status":
            return None
        fields = Fields.of(load_json(body))
        state = _required_child(fields, "deployment_status").text("state", required=True)
        fields.problems.raise_if_any()
        if state != "success":
            return None
        return parse_deployment_status(fields, delivery_id=delivery_id, source=self.name)


def parse_deployment_status(fields: Fields, *, delivery_id: str, source: str) -> ReleaseEvent:
    """Map a successful ``deployment_status`` body onto a release event.

    Args:
        fields: the decoded body.
        delivery_id: the ``X-GitHub-Delivery`` GUID.
        source: the source name recorded on the event.

    Raises:
        WebhookRejected: 422 listing every wrong field.
    """
    status = _required_child(fields, "deployment_status")
    deployment = _required_child(fields, "deployment")
    repository = _required_child(fields, "repository")
    payload = _payload(deployment)
    full_name = repository.text("full_name", required=True) or ""
    sha = deployment.text("sha", required=True, max_length=COMMIT_MAX) or ""
    service = payload.text("service") or full_name.rpartition("/")[2]
    if full_name and not service:
        repository.problems.add(repository.path("full_name"), "expected owner/name")
    event = ReleaseEvent(
        service=service,
        version=payload.text("version") or sha[:12],
        environment=deployment.text("environment", max_length=ENVIRONMENT_MAX) or "production",
        commit=sha,
        previous_commit=payload.text("previous_commit", max_length=COMMIT_MAX),
        repository=full_name or None,
        author=_author(fields, deployment, payload),
        title=payload.text("title", max_length=TITLE_MAX)
        or deployment.text("description", max_length=TITLE_MAX),
        url=payload.url("url") or status.url("target_url") or status.url("log_url"),
        features=payload.texts("features", max_items=FEATURES_MAX),
        changes=read_changes(payload),
        deployed_at=status.time("updated_at") or status.time("created_at"),
        source=source,
        delivery_id=delivery_id,
    )
    fields.problems.raise_if_any()
    return event


def _required_child(fields: Fields, key: str) -> Fields:
    """A nested object that must be there; when it is not, an empty stand-in.

    The stand-in records into a throwaway collector, so a missing parent is reported once
    rather than once for each field read from it.
    """
    child = fields.child(key)
    if child is None:
        if not fields.has(key):
            fields.problems.add(fields.path(key), "is required")
        return Fields({}, Problems(), fields.path(key))
    return child


def _payload(deployment: Fields) -> Fields:
    """``deployment.payload``, decoded when GitHub sent it as a JSON-encoded string."""
    path = deployment.path("payload")
    raw = deployment.data.get("payload")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the limit
            deployment.problems.add(path, "a string that is not valid JSON")
            raw = None
    if raw is None:
        return Fields({}, deployment.problems, path)
    if not isinstance(raw, dict):
        deployment.problems.add(path, "expected an object or a JSON-encoded object")
        return Fields({}, deployment.problems, path)
    return Fields(raw, deployment.problems, path)


def _author(fields: Fields, deployment: Fields, payload: Fields) -> Author:
    """The payload's ``author``, with the GitHub login of whoever deployed filled in.

    Deployments made by GitHub Actions are created by ``github-actions[bot]``; a bot is nobody
    to send feedback to, so bot logins are skipped in favour of the next candidate.
    """
    author = read_author(payload.child("author"))
    if author.github is None:
        login = _human_login(deployment.child("creator")) or _human_login(fields.child("sender"))
        author = replace(author, github=login)
    return author


def _human_login(user: Fields | None) -> str | None:
    if user is None:
        return None
    login = user.text("login", max_length=HANDLE_MAX)
    if login is None or login.endswith("[bot]") or user.data.get("type") == "Bot":
        return None
    return login


#: The ``pull_request`` actions that change what the pull request would deploy.
PREVIEW_ACTIONS = ("opened", "synchronize", "reopened")
_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class PullRequestEvent:
    """A ``pull_request`` webhook asking for a preview: a new or updated head to look at."""

    repository: str
    number: int
    head: str
    base: str
    url: str | None
    author: str | None
    action: str
    delivery_id: str


def is_pull_request(headers: Mapping[str, str]) -> bool:
    """Whether a (verified) GitHub request is a ``pull_request`` event."""
    return headers.get("x-github-event", "").strip() == "pull_request"


def parse_pull_request(headers: Mapping[str, str], body: bytes) -> PullRequestEvent | None:
    """A ``pull_request`` event, or None for actions that need no preview (``closed``, …).

    Raises:
        WebhookRejected: 400 unreadable, 422 naming every wrong field.
    """
    delivery_id = required_header(headers, "x-github-delivery", "X-GitHub-Delivery")
    fields = Fields.of(load_json(body))
    action = fields.text("action", required=True)
    fields.problems.raise_if_any()
    if action not in PREVIEW_ACTIONS:
        return None
    pull = _required_child(fields, "pull_request")
    repository = _required_child(fields, "repository")
    full_name = repository.text("full_name", required=True) or ""
    if full_name and not _REPOSITORY.match(full_name):
        repository.problems.add(repository.path("full_name"), "expected owner/name")
    number = fields.data.get("number", pull.data.get("number"))
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 2**31:
        fields.problems.add(fields.path("number"), "expected a positive integer")
    head = _sha(_required_child(pull, "head"))
    base = _sha(_required_child(pull, "base"))
    user = pull.child("user")
    event = PullRequestEvent(
        repository=full_name,
        number=number if isinstance(number, int) else 0,
        head=head,
        base=base,
        url=pull.url("html_url"),
        author=_human_login(user),
        action=action,
        delivery_id=delivery_id,
    )
    fields.problems.raise_if_any()
    return event


def _sha(ref: Fields) -> str:
    sha = ref.text("sha", required=True) or ""
    if sha and not _SHA.match(sha):
        ref.problems.add(ref.path("sha"), "expected a full commit SHA (40 hex characters)")
    return sha
