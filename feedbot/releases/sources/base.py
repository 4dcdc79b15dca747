"""The contract of a deploy source: verify a request, then parse it into a :class:`ReleaseEvent`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from feedbot.releases.event import ReleaseEvent


@runtime_checkable
class DeploySource(Protocol):
    """One webhook dialect (generic, GitHub, GitLab, Argo CD).

    Headers arrive as a mapping with lower-case keys. Both methods raise
    :class:`feedbot.errors.WebhookRejected` with the HTTP status and a message naming the field.
    """

    name: str

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check the request's signature or token over the raw body; 401 when missing or wrong."""
        ...

    def parse(self, headers: Mapping[str, str], body: bytes) -> ReleaseEvent | None:
        """Turn a verified body into a release event.

        Returns:
            The event, or None when the request is well-formed but not a finished deploy (a
            GitHub ``deployment_status`` of ``pending``, a GitLab ``running``, a ping): the
            caller answers 202 "ignored" and registers nothing.
        """
        ...
