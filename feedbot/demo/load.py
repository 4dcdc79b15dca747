"""Traffic for the demo: the vault's own traffic plans, sent in batches.

Batch ``i`` of every phase uses seed ``seed + i``, so the baseline and the new version get the
same calls in the same mix: the new exception type can then be tested against a baseline that
made as many deposits.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType


@dataclass
class Sent:
    """What a phase sent so far."""

    total: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Pace:
    """How a phase is sent.

    Attributes:
        requests: calls in all.
        batch: calls per batch (each batch first lists the vaults and opens a few).
        seed: seed of the first batch.
        concurrency: calls in flight at once.
    """

    requests: int
    batch: int
    seed: int
    concurrency: int = 4


def send(
    traffic: ModuleType,
    api_url: str,
    pace: Pace,
    *,
    until: float | None = None,
    on_batch: Callable[[Sent], None],
) -> Sent:
    """Send ``pace.requests`` calls to ``api_url`` with ``examples.vault.traffic.drive``.

    Args:
        traffic: the ``examples.vault.traffic`` module.
        api_url: the vault API.
        pace: how many, in which batches.
        until: a ``time.monotonic()`` after which no new batch starts (None: no limit).
        on_batch: called after every batch with the running counts.

    Returns:
        What was sent.
    """
    sent = Sent()
    for i in range(max(1, -(-pace.requests // pace.batch))):
        if until is not None and time.monotonic() > until:
            break
        size = min(pace.batch, pace.requests - i * pace.batch)
        counts: dict[str, int] = traffic.drive(
            api_url, requests=size, seed=pace.seed + i, concurrency=pace.concurrency
        )
        sent.by_endpoint.update(counts)
        sent.total += sum(counts.values())
        on_batch(sent)
    return sent
