"""The one shape every deploy source produces: a validated, immutable release event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


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


#: How far ahead of feedbot's clock a deploy may say it happened (clocks drift), and how far
#: back: the last scheduled check is at +24h, so an older deploy has nothing left to check.
DEPLOY_SKEW = timedelta(minutes=5)
DEPLOY_MAX_AGE = timedelta(days=7)


def deploy_time_problem(deployed_at: datetime | None, now: datetime) -> str | None:
    """Why a deploy's time cannot be registered (``deployed_at: …``), or None when it can.

    Args:
        deployed_at: the deploy's time as the source sent it (aware UTC), None when it sent none.
        now: feedbot's clock.
    """
    if deployed_at is None:
        return None
    if deployed_at > now + DEPLOY_SKEW:
        return (
            f"deployed_at: {deployed_at.isoformat()} is in the future (feedbot's clock says "
            f"{now.isoformat(timespec='seconds')}; up to {DEPLOY_SKEW} of clock skew is allowed)"
        )
    if deployed_at < now - DEPLOY_MAX_AGE:
        return (
            f"deployed_at: {deployed_at.isoformat()} is more than {DEPLOY_MAX_AGE.days} days "
            "ago; feedbot checks a release in the day after its deploy"
        )
    return None
