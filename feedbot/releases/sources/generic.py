"""The generic deploy webhook: feedbot's own JSON document, signed with HMAC-SHA256.

Any CI system that can run ``curl`` (or ``feedbot notify-deploy``) can send it::

    POST /webhooks/generic
    X-Feedbot-Signature: sha256=<hex HMAC-SHA256 of the raw body with the shared secret>
    X-Feedbot-Delivery: <optional id; a repeated id is the same release>

    {"service": "vault-service", "version": "1.4.2", "environment": "production",
     "commit": "<sha>", "previous_commit": "<sha>", "repository": "acme/vault",
     "author": {"email": "…", "name": "…", "github": "…", "slack": "U123", "gitlab": "…"},
     "title": "…", "url": "https://…", "features": ["appraisal"],
     "changes": [{"file": "…", "functions": ["…"], "lines": [[10, 42]], "traced": ["…"]}],
     "deployed_at": "2026-11-24T10:00:00Z"}

Only ``service`` and ``version`` are required. A change's ``traced`` lists the functions among its
``functions`` whose own code opens a span, so that feedbot may say one was "not reached". Unknown
keys are ignored, so newer senders keep working with older feedbots.
"""

from __future__ import annotations

from collections.abc import Mapping

from feedbot.releases.event import ReleaseEvent
from feedbot.releases.sources._common import (
    COMMIT_MAX,
    ENVIRONMENT_MAX,
    FEATURES_MAX,
    TITLE_MAX,
    Fields,
    load_json,
    optional_header,
    read_author,
    read_changes,
    require_secret,
    verify_hmac_sha256,
)


class GenericDeploySource:
    """Feedbot's own document, authenticated by ``X-Feedbot-Signature``.

    Args:
        secret: the shared HMAC secret.
    """

    name = "generic"

    def __init__(self, secret: str) -> None:
        self._secret = require_secret("GenericDeploySource", secret)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        verify_hmac_sha256(
            headers,
            body,
            secret=self._secret,
            name="x-feedbot-signature",
            display="X-Feedbot-Signature",
        )

    def parse(self, headers: Mapping[str, str], body: bytes) -> ReleaseEvent:
        """Parse the document; never ignores a request, so never returns None."""
        doc = load_json(body)
        delivery_id = optional_header(headers, "x-feedbot-delivery", "X-Feedbot-Delivery")
        return parse_document(doc, source=self.name, delivery_id=delivery_id)


def parse_document(
    doc: object, *, source: str = "generic", delivery_id: str | None = None
) -> ReleaseEvent:
    """Validate a decoded generic document into a release event.

    Args:
        doc: the decoded JSON.
        source: the source name recorded on the event.
        delivery_id: the request's delivery id, if it had one.

    Returns:
        The validated event; ``deployed_at`` is aware UTC or None.

    Raises:
        WebhookRejected: 422 listing every wrong field as ``path: problem``.
    """
    fields = Fields.of(doc)
    service = fields.text("service", required=True)
    version = fields.text("version", required=True)
    event = ReleaseEvent(
        service=service or "",
        version=version or "",
        environment=fields.text("environment", max_length=ENVIRONMENT_MAX) or "production",
        commit=fields.text("commit", max_length=COMMIT_MAX) or "",
        previous_commit=fields.text("previous_commit", max_length=COMMIT_MAX),
        repository=fields.text("repository"),
        author=read_author(fields.child("author")),
        title=fields.text("title", max_length=TITLE_MAX),
        url=fields.url("url"),
        features=fields.texts("features", max_items=FEATURES_MAX),
        changes=read_changes(fields),
        deployed_at=fields.time("deployed_at"),
        source=source,
        delivery_id=delivery_id,
    )
    fields.problems.raise_if_any()
    return event
