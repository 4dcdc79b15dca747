"""Synthetic ReleaseData for the analysis tests: lognormal latency, several instances."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from feedbot.spans.model import (
    CodeSeen,
    ExceptionSeen,
    ReleaseData,
    RepeatedStatement,
    SpanGroupStats,
)


@dataclass
class Group:
    """How to draw one span group for one version."""

    name: str
    n: int
    median_ms: float = 50.0
    sigma: float = 0.5
    ratio: float = 1.0
    error_rate: float = 0.001
    kind: str = "SERVER"
    exceptions: tuple[ExceptionSeen, ...] = ()
    code: tuple[CodeSeen, ...] = ()
    callers: tuple[tuple[str, int], ...] = ()
    tail_ratio: float = 1.0  # multiplies the slowest 5%
    extra: dict[str, object] = field(default_factory=dict)


def group(rng: np.random.Generator, spec: Group, offsets: np.ndarray) -> SpanGroupStats:
    """Draw one group: each span from a random instance with its log-offset."""
    ids = rng.integers(0, offsets.size, spec.n).astype(np.int32)
    logs = rng.normal(np.log(spec.median_ms * spec.ratio), spec.sigma, spec.n) + offsets[ids]
    durations = np.exp(logs)
    if spec.tail_ratio != 1.0:
        cut = np.quantile(durations, 0.95)
        durations = np.where(durations > cut, durations * spec.tail_ratio, durations)
    errors = int(rng.binomial(spec.n, spec.error_rate))
    return SpanGroupStats(
        name=spec.name,
        kind=spec.kind,
        count=spec.n,
        errors=errors,
        durations_ms=durations,
        instances=ids,
        instance_names=tuple(f"host-{i}" for i in range(offsets.size)),
        exceptions=spec.exceptions,
        code=spec.code,
        callers=spec.callers,
    )


def release(
    rng: np.random.Generator,
    specs: Sequence[Group],
    *,
    instances: int = 4,
    spread: float = 0.02,
    repeats: Sequence[RepeatedStatement] = (),
    traces: int = 0,
) -> ReleaseData:
    """One version: groups sharing one set of per-instance log-offsets (sd ``spread``)."""
    offsets = rng.normal(0.0, spread, instances)
    groups = [group(rng, s, offsets) for s in specs]
    return ReleaseData(groups=groups, repeats=list(repeats), traces=traces)


def routes(k: int, n: int, **over: object) -> list[Group]:
    """k routes of n spans each with medians spread over 5-200 ms."""
    medians = np.geomspace(5.0, 200.0, k)
    return [Group(f"GET /r{i}", n, median_ms=float(m), **over) for i, m in enumerate(medians)]  # type: ignore[arg-type]
