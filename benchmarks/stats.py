"""The latency test over a release's span groups: feedbot's numpy test against a scipy loop.

Thirty span groups of lognormal durations (σ = 0.5, a third of them 10% slower, a quarter
rounded to whole milliseconds so there are ties), at several spans per group and version. Two
ways to get every group's one-sided Mann-Whitney p-value, timed side by side in one run (median
of the repeats, milliseconds for all 30 groups):

* ``scipy loop``: ``scipy.stats.mannwhitneyu(method="asymptotic")`` once per group;
* ``feedbot``: :func:`feedbot.analysis.stats.rank.mann_whitney` once per group (numpy midranks
  with one ``np.unique``, tie correction from its counts).

Ranking all groups in one pass (one sort of the pooled values by group and value, rank sums by
``np.bincount``) was tried: 17x faster than the loop at 30 spans a group, but slower from 300 up,
since gathers over the pooled array miss the cache that a group's few thousand values fit in.

The largest p-value difference from scipy's is printed too: the speed is worth nothing if the
answers differ.

    python -m benchmarks.stats [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy import stats as scipy_stats

from feedbot.analysis.stats.rank import mann_whitney

GROUPS = 30
Row = tuple[str, float, str]
Samples = tuple[list[np.ndarray], list[np.ndarray]]


def _samples(n: int, seed: int = 7) -> Samples:
    rng = np.random.default_rng(seed)
    new, base = [], []
    for i in range(GROUPS):
        x = rng.lognormal(np.log(50.0 * (1.1 if i % 3 == 0 else 1.0)), 0.5, n)
        y = rng.lognormal(np.log(50.0), 0.5, n)
        if i % 4 == 0:
            x, y = np.round(x), np.round(y)
        new.append(x)
        base.append(y)
    return new, base


def _scipy(data: Samples) -> np.ndarray:
    return np.array(
        [
            scipy_stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue
            for x, y in zip(*data, strict=True)
        ]
    )


def _per_group(data: Samples) -> np.ndarray:
    return np.array([mann_whitney(x, y, method="asymptotic").p for x, y in zip(*data, strict=True)])


def _median_ms(fn: Callable[[Samples], np.ndarray], data: Samples, repeats: int) -> float:
    fn(data)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(data)
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def run(*, quick: bool = False) -> list[Row]:
    """Rows of (benchmark, figure, unit) for each sample size."""
    rows: list[Row] = []
    sizes = (300, 3_000) if quick else (30, 300, 3_000, 30_000)
    for n in sizes:
        data = _samples(n)
        repeats = 5 if quick else (21 if n <= 3_000 else 7)
        reference = _scipy(data)
        worst = float(np.max(np.abs(_per_group(data) - reference)))
        timed = {
            "scipy loop": _median_ms(_scipy, data, repeats),
            "feedbot": _median_ms(_per_group, data, repeats),
        }
        label = f"stats MWU, {GROUPS} groups x {n} spans"
        rows += [(f"{label}, {name}", ms, "ms (median)") for name, ms in timed.items()]
        rows.append((f"{label}, scipy / feedbot", timed["scipy loop"] / timed["feedbot"], "x"))
        rows.append((f"{label}, largest |p - scipy p|", worst, "(must be ~0)"))
    return rows


def main() -> None:
    """``python -m benchmarks.stats [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, five repeats")
    rows = run(quick=parser.parse_args().quick)
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'figure':>12}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>12.3g}  {unit}")


if __name__ == "__main__":
    main()
