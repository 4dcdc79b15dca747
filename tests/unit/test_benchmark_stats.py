"""``python -m benchmarks.stats`` runs and compares like with like."""

from __future__ import annotations

from benchmarks import stats


def test_quick_run_prints_matching_p_values() -> None:
    rows = {name: value for name, value, _ in stats.run(quick=True)}
    diffs = [v for name, v in rows.items() if name.endswith("largest |p - scipy p|")]
    assert len(diffs) == 2 and max(diffs) < 1e-12
    assert all(v > 0 for name, v in rows.items() if name.endswith(", feedbot"))
