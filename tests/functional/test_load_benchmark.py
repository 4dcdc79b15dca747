"""benchmarks/load.py runs end to end (quick mode) and returns figures without printing."""

from __future__ import annotations

import pytest

from benchmarks import load
from tests.conftest import PG_ADMIN_URL

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_the_load_benchmark_returns_rows_and_prints_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = load.run(PG_ADMIN_URL, quick=True)
    assert capsys.readouterr().out == ""
    units = [unit for _, _, unit in rows]
    # Webhooks per database: rate, p50, p99, server CPU; then ingest per database: rate, p99 and
    # CPU per 1,000 spans per format, and the server's memory before and at its peak.
    ingest = ["spans/s", "ms", "ms", "spans/s", "ms", "ms", "MiB", "MiB"]
    webhooks = ["req/s", "ms", "ms", "ms"]
    assert units == [*webhooks, *webhooks, *ingest, *ingest]
    assert all(value > 0 for _, value, _ in rows)
    assert any("concurrency 50" in name for name, _, _ in rows)
    assert any("json" in name for name, _, _ in rows)
    assert any("SQLite" in name for name, _, _ in rows)
    assert any("PostgreSQL" in name and "ingest" in name for name, _, _ in rows)
