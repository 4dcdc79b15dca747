"""How long one route chart takes to draw, and how big it is.

``python -m benchmarks.charts`` prints, for routes of 100 to 100,000 spans per version, the
median over 20 renders of :func:`feedbot.digest.chart.render` (latency panel alone, and with the
error panel) in wall-clock and in CPU time (steadier on a shared machine), and the PNG's size.
The first render of the process (font loading) is left out.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from feedbot.digest import chart

SPANS = (100, 1_000, 10_000, 100_000)
REPEATS = 20


def sides(n: int) -> tuple[chart.Side, chart.Side]:
    """A baseline with a 20 ms median and a new version with 56 ms, ``n`` spans each."""
    rng = np.random.default_rng(7)
    base = chart.Side("1.0.0", rng.lognormal(np.log(20), 0.4, n), n, n // 200)
    new = chart.Side("2.0.0", rng.lognormal(np.log(56), 0.5, n), n, n // 25)
    return base, new


def run(repeats: int = REPEATS) -> list[tuple[int, bool, float, float, int]]:
    """``(spans, with errors, median wall ms, median CPU ms, PNG bytes)`` per case."""
    chart.render("GET /warm-up", *sides(100))
    rows = []
    for n in SPANS:
        base, new = sides(n)
        for errors in (False, True):
            times, cpu, size = [], [], 0
            for _ in range(repeats):
                started, used = time.perf_counter(), time.process_time()
                size = len(chart.render("POST /vaults/{id}/items", base, new, errors=errors).png)
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - used) * 1000)
            rows.append((n, errors, statistics.median(times), statistics.median(cpu), size))
    return rows


def main() -> None:
    print(f"{'spans':>8}  {'panels':>16}  {'wall ms':>8}  {'CPU ms':>7}  {'PNG KiB':>7}")
    for n, errors, ms, cpu, size in run():
        panels = "latency + errors" if errors else "latency"
        print(f"{n:>8}  {panels:>16}  {ms:>8.1f}  {cpu:>7.1f}  {size / 1024:>7.1f}")


if __name__ == "__main__":
    main()
