"""benchmarks/slash_load.py runs end to end (quick mode): every command acked, load done."""

from __future__ import annotations

import pytest

from benchmarks import slash_load
from tests.conftest import PG_ADMIN_URL

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_the_slash_benchmark_acks_every_command_while_the_load_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows, rates = slash_load.run(PG_ADMIN_URL, quick=True)
    assert capsys.readouterr().out == ""
    assert [name for name, *_ in rows] == ["p50 ack", "p95 ack", "p99 ack", "max ack"]
    assert all(alone > 0 and loaded > 0 for _, alone, loaded, _ in rows)
    # Sent on schedule for the whole run, not a handful: the p99 is not the maximum.
    assert rates["commands"] == slash_load.QUICK_SECONDS * slash_load.RATE
    assert rates["spans"] > 0 and rates["deploys"] > 0
