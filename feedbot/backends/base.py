"""The trace backend contract: what the analysis asks of a team's trace store.

:meth:`TraceBackend.collect` returns, for one service version in one window, everything the
analysis needs: per span group the counts, errors, durations (with the instance each came from,
since the instance is the unit of replication for host-to-host spread), exception types with an
example trace, code locations seen, and calling groups; plus, per trace, DB statements repeated
under one parent (N+1 candidates). A backend that can aggregate does it on its side; one that
cannot streams spans through :mod:`feedbot.spans.aggregate`.
"""

from __future__ import annotations

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
