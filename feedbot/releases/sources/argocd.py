"""Argo CD Notifications, through the ``feedbot-deployed`` template in ``docs/argocd.md``.

Argo CD Notifications can send static headers but cannot compute an HMAC, so the request carries
``Authorization: Bearer <token>``. The body is the JSON our template renders::

    {"app": "vault-service", "project": "default", "namespace": "vault",
     "revision": "<git sha or chart version>", "images": ["ghcr.io/acme/vault:1.4.2", …],
     "environment": "production", "service": null, "version": null,
     "url": "https://argocd.example.com/applications/vault-service",
     "deployed_at": "2026-11-24T10:00:00Z"}

``app`` and ``revision`` are required; ``environment``, ``service`` and ``version`` come from
the Application's ``feedbot.io/*`` annotations and are null when it has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from feedbot.releases.event import ReleaseEvent
from feedbot.releases.sources._common import (
    COMMIT_MAX,
    ENVIRONMENT_MAX,
    FEATURES_MAX,
    PATH_MAX,
    Fields,
    load_json,
    require_secret,
    verify_token,
)

# A tag that names no particular build; comparing "latest" with "latest" says nothing.
_FLOATING_TAGS = frozenset({"latest"})


class ArgoCDDeploySource:
    """Argo CD Notifications' webhook service with feedbot's template.

    Args:
        token: the bearer token stored as ``feedbot-token`` in ``argocd-notifications-secret``.
    """

    name = "argocd"

    def __init__(self, token: str) -> None:
        self._token = require_secret("ArgoCDDeploySource", token)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
        verify_token(given, self._token, display="Authorization")

    def parse(self, headers: Mapping[str, str], body: bytes) -> ReleaseEvent:
        """Parse the template's body; the trigger only fires on deploys, so never None."""
        return parse_notification(load_json(body), source=self.name)


def parse_notification(doc: object, *, source: str = "argocd") -> ReleaseEvent:
    """Validate the ``feedbot-deployed`` template's body into a release event.

    The service is the ``service`` override, else the app's name. The version is the
    ``version`` override, else the tag of the image named like the service, else the first
    image's tag, else the first 12 characters of the revision. The delivery id is
    ``<app>@<revision>``, matching the trigger's ``oncePer``.

    Args:
        doc: the decoded JSON.
        source: the source name recorded on the event.

    Raises:
        WebhookRejected: 422 listing every wrong field.
    """
    fields = Fields.of(doc)
    app = fields.text("app", required=True) or ""
    revision = fields.text("revision", required=True, max_length=COMMIT_MAX) or ""
    service = fields.text("service") or app
    images = fields.texts("images", max_items=FEATURES_MAX, max_length=PATH_MAX)
    event = ReleaseEvent(
        service=service,
        version=fields.text("version") or image_version(images, service) or revision[:12],
        environment=fields.text("environment", max_length=ENVIRONMENT_MAX) or "production",
        commit=revision,
        url=fields.url("url"),
        deployed_at=fields.time("deployed_at"),
        source=source,
        delivery_id=f"{app}@{revision}",
    )
    fields.problems.raise_if_any()
    return event


def image_version(images: Sequence[str], service: str) -> str | None:
    """The tag of the image named like ``service``, else of the first tagged image.

    Args:
        images: image references (``registry:5000/acme/vault:1.4.2@sha256:…``).
        service: the service name.

    Returns:
        The tag, or None when no image has a tag other than ``latest``.
    """
    tagged = [(name, tag) for name, tag in map(_split_image, images) if tag]
    for name, tag in tagged:
        if name == service:
            return tag
    return tagged[0][1] if tagged else None


def _split_image(image: str) -> tuple[str, str | None]:
    """``registry:5000/acme/vault:1.4.2@sha256:…`` → ``("vault", "1.4.2")``."""
    last = image.partition("@")[0].rpartition("/")[2]
    name, _, tag = last.partition(":")
    return name, (tag if tag and tag not in _FLOATING_TAGS else None)
