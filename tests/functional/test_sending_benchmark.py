"""benchmarks/sending.py runs end to end (quick mode); concurrent senders lose no claims."""

from __future__ import annotations

import pytest

from benchmarks import sending
from tests.conftest import PG_ADMIN_URL

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_the_sending_benchmark_returns_rows_and_three_senders_never_race(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = sending.run(PG_ADMIN_URL, quick=True)

    assert capsys.readouterr().out == ""
    assert len(rows) == 16 and all(value >= 0 for _, value, _ in rows)
    lost = {name: value for name, value, _ in rows if name.startswith("lost claims")}
    assert len(lost) == 4
    # Before, three senders read the same oldest rows and raced for each: about two lost
    # claims per message sent on PostgreSQL.
    assert set(lost.values()) == {0.0}, lost
