"""GitLab deployment events (``X-Gitlab-Event: Deployment Hook``), authenticated by token.

GitLab cannot sign a body; it sends the webhook's secret token verbatim in ``X-Gitlab-Token``.
Only ``status: success`` is a release; ``created``, ``running``, ``failed`` and ``canceled``, and
every other hook, are answered "ignored".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from feedbot.releases.event import Author, ReleaseEvent
from feedbot.releases.sources._common import (
    COMMIT_MAX,
    ENVIRONMENT_MAX,
    HANDLE_MAX,
    TITLE_MAX,
    Fields,
    load_json,
    optional_header,
    parse_rfc3339,
    require_secret,
    required_header,
    verify_token,
)

# GitLab replaces e-mail addresses it may not disclose with this placeholder.
_REDACTED = "[REDACTED]"


class GitLabDeploySource:
    """GitLab's deployment hook.

    Args:
        token: the webhook's secret token, as set in the project's webhook settings.
    """

    name = "gitlab"

    def __init__(self, token: str) -> None:
        self._token = require_secret("GitLabDeploySource", token)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        verify_token(headers.get("x-gitlab-token"), self._token, display="X-Gitlab-Token")

    def parse(self, headers: Mapping[str, str], body: bytes) -> ReleaseEvent | None:
        """Returns None for other hooks and statuses other than ``success``."""
        if required_header(headers, "x-gitlab-event", "X-Gitlab-Event") != "Deployment Hook":
            return None
        fields = Fields.of(load_json(body))
        kind = fields.text("object_kind", required=True)
        if kind is not None and kind != "deployment":
            fields.problems.add("object_kind", 'expected "deployment"')
        status = fields.text("status", required=True)
        fields.problems.raise_if_any()
        if status != "success":
            return None
        uuid = optional_header(headers, "x-gitlab-event-uuid", "X-Gitlab-Event-UUID")
        return parse_deployment(fields, event_uuid=uuid, source=self.name)


def parse_deployment(fields: Fields, *, event_uuid: str | None, source: str) -> ReleaseEvent:
    """Map a successful deployment hook body onto a release event.

    The delivery id is ``<deployment_id>:<status>``, which stays the same however often GitLab
    redelivers the hook; GitLab versions before ``deployment_id`` was added fall back to the
    ``X-Gitlab-Event-UUID`` header.

    Args:
        fields: the decoded body.
        event_uuid: the ``X-Gitlab-Event-UUID`` header, if sent.
        source: the source name recorded on the event.

    Raises:
        WebhookRejected: 422 listing every wrong field.
    """
    sha = fields.text("sha", required=True, max_length=COMMIT_MAX) or ""
    deployment_id = fields.identifier("deployment_id")
    project = fields.child("project")
    if project is None and not fields.has("project"):
        fields.problems.add("project", "is required")
    event = ReleaseEvent(
        service=_service(project) if project else "",
        version=fields.text("short_sha") or sha[:12],
        environment=fields.text("environment", max_length=ENVIRONMENT_MAX) or "production",
        commit=sha,
        repository=project.text("path_with_namespace") if project else None,
        author=_author(fields.child("user")),
        title=fields.text("commit_title", max_length=TITLE_MAX),
        url=fields.url("commit_url"),
        deployed_at=fields.time(
            "status_changed_at",
            parse=parse_gitlab_time,
            expected='expected a time like "2021-04-28 21:50:00 +0200"',
        ),
        source=source,
        delivery_id=f"{deployment_id}:success" if deployment_id else event_uuid,
    )
    fields.problems.raise_if_any()
    return event


def _service(project: Fields) -> str:
    path = project.text("path")
    if path:
        return path
    full = project.text("path_with_namespace")
    name = (full or "").rpartition("/")[2]
    if not name:
        project.problems.add(project.path("path_with_namespace"), "is required")
    return name


def _author(user: Fields | None) -> Author:
    if user is None:
        return Author()
    email = user.text("email")
    return Author(
        email=None if email == _REDACTED else email,
        name=user.text("name"),
        gitlab=user.text("username", max_length=HANDLE_MAX),
    )


def parse_gitlab_time(text: str) -> datetime | None:
    """Parse GitLab's hook time (``2021-04-28 21:50:00 +0200`` or ``… UTC``) into aware UTC.

    RFC 3339 is accepted too, in case GitLab moves to it.

    Returns:
        The time in UTC, or None when the text is in none of these formats.
    """
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S UTC"):
        try:
            parsed = datetime.strptime(text, fmt)
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError):
            continue
    return parse_rfc3339(text)
