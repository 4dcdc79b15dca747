"""The one shape every deploy source produces: a validated, immutable release event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Author:
    """Who shipped; any field may be unknown."""

    email: str | None = None
    name: str | None = None
    github: str | None = None
    gitlab: str | None = None
    slack: str | None = None


@dataclass(frozen=True)
class Change:
    """Code a release changed: a file, the qualified functions touched, and line ranges.

    ``traced`` names the functions among ``functions`` whose own code opens a span (a
    ``start_as_current_span`` or ``start_span`` call in their body or decorators): only those
    can be told apart as "not reached" when no baseline span names them.
    """

    file: str | None = None
    functions: tuple[str, ...] = ()
    lines: tuple[tuple[int, int], ...] = ()
    traced: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseEvent:
    """A deploy, as any source reports it, after validation.

    ``delivery_id`` is the source's own id of the request (GitHub's ``X-GitHub-Delivery``) when it
    has one; a repeated delivery id is the same release. ``deployed_at`` is None when the source did
    not say; the registration then uses the time it was received.
    """

    service: str
    version: str
    environment: str = "production"
    commit: str = ""
    previous_commit: str | None = None
    repository: str | None = None
    author: Author = field(default_factory=Author)
    title: str | None = None
    url: str | None = None
    features: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    deployed_at: datetime | None = None
    source: str = "generic"
    delivery_id: str | None = None
