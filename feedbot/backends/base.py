"""The trace backend contract: what the analysis asks of a team's trace store.

A backend that can aggregate does it on its side; one that cannot streams spans and aggregates
them here. This first cut carries per-group counts, errors and durations; the trace-backend issue
widens it (exception types, code attributes, per-trace DB statement repetition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SpanQuery:
    """Spans of one service version in one environment within ``[start, end)``."""

    service: str
    version: str
    start: datetime
    end: datetime
    environment: str | None = None
    span_name: str | None = None


@dataclass(frozen=True)
class SpanGroupStats:
    """One span group: same span name and kind (server spans grouped by ``http.route``)."""

    name: str
    kind: str
    count: int
    errors: int
    durations_ms: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.empty(0, dtype=np.float64), compare=False, repr=False
    )


@runtime_checkable
class TraceBackend(Protocol):
    """A source of spans. Errors raise :class:`feedbot.errors.BackendError` subclasses."""

    name: str

    def group_stats(self, query: SpanQuery) -> list[SpanGroupStats]:
        """Return per-group statistics of the spans matching ``query``, largest groups first."""
        ...
