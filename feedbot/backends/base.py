"""The trace backend contract: what the analysis asks of a team's trace store.

:meth:`TraceBackend.collect` returns, for one service version in one window, everything the
analysis needs: per span group the counts, errors, durations (with the instance each came from,
since the instance is the unit of replication for host-to-host spread), exception types with an
example trace, code locations seen, and calling groups; plus, per trace, DB statements repeated
under one parent (N+1 candidates). A backend that can aggregate does it on its side; one that
cannot streams spans through :mod:`feedbot.spans.aggregate`.

:class:`VersionLister` is the capability to say which versions of a service sent spans in a
window: the baseline is found in the data when no earlier release was registered (the first
deploy after install, versions shipped by another pipeline, ``feedbot report``).
:class:`SpanCensus` is the capability to say what a store holds of a service in a window, by
environment and version, so that a release with no matching span is explained (a mismatched
environment, spans without ``service.version``) rather than called "not serving yet".
:class:`ServingTimes` is the capability to say cheaply when each version served in a window, so
a check compares the versions over the time both served (a rolling deploy's overlap).
:class:`RequestCounter` is the capability to count the whole service's requests in a window, every
version together, in one query: a before/after look tells a busier time at the deploy (more
requests per minute) from a release that slowed every route (the same requests, or fewer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from feedbot.spans.model import ReleaseData, SpanQuery


@runtime_checkable
class TraceBackend(Protocol):
    """A source of spans. Errors raise :class:`feedbot.errors.BackendError` subclasses."""

    name: str

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Return everything the analysis needs about the spans matching ``query``.

        Groups are ordered largest first. Durations are in milliseconds.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds (its HTTP client, its database connections).

        The one who built the backend calls it once done with it; calling it again does
        nothing. A backend holding nothing does nothing.
        """
        ...


@runtime_checkable
class VersionLister(Protocol):
    """A backend that can say which versions of a service it holds spans of."""

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """Spans per ``service.version`` of ``service`` starting in ``[start, end)``.

        Spans without a version are not counted; with ``environment``, spans of other
        environments are not either (spans that name none are). Search-only stores count the
        spans of the traces their search returns, a sample when the window is busy.
        """
        ...


@runtime_checkable
class SpanCensus(Protocol):
    """A backend that can count a service's spans by environment and version cheaply."""

    def census(
        self, service: str, start: datetime, end: datetime
    ) -> dict[tuple[str | None, str | None], int]:
        """Spans of ``service`` starting in ``[start, end)`` per (environment, version).

        None stands for a span that names no environment, or no version.
        """
        ...


@runtime_checkable
class ServingTimes(Protocol):
    """A backend that can say cheaply when each version of a service served in a window."""

    def serving(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, tuple[datetime, datetime, int]]:
        """First and last span start, and spans, per ``service.version`` in ``[start, end)``.

        Counted as :meth:`VersionLister.versions` counts (versioned spans only; spans naming
        no environment count for every environment), without reading the spans themselves.
        """
        ...


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a service served in a window, every version together.

    Attributes:
        first: The first span's start in the window.
        last: The last span's start in the window.
        spans: Versioned spans (any kind).
        entries: Of those, SERVER and CONSUMER spans: one per request the service took.
    """

    first: datetime
    last: datetime
    spans: int
    entries: int


@runtime_checkable
class RequestCounter(Protocol):
    """A backend that can count a service's requests in a window in one query."""

    def traffic(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> Traffic | None:
        """The spans of ``service`` starting in ``[start, end)``, every version together
        (counted as :meth:`VersionLister.versions` counts); None when there is none."""
        ...
