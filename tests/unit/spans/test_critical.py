"""Critical paths of hand-built traces (Jaeger UI's algorithm) and their per-group sample."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from feedbot.spans.aggregate import Aggregator
from feedbot.spans.critical import PathRecorder, walk

MS = 1_000_000


def _walk(spans: dict[str, tuple[str | None, str, float, float]], root: str) -> dict[str, float]:
    """Walk ``root`` of {id: (parent, group, start ms, end ms)}: ms per group, own as "self"."""
    ids = list(spans)
    groups = sorted({g for _, g, _, _ in spans.values()})
    children: list[list[int]] = [[] for _ in ids]
    for row, (parent, _, _, _) in enumerate(spans.values()):
        if parent in spans:
            children[ids.index(parent)].append(row)
    own, found = walk(
        ids.index(root),
        children,
        [int(s * MS) for _, _, s, _ in spans.values()],
        [int(e * MS) for _, _, _, e in spans.values()],
        [groups.index(g) for _, g, _, _ in spans.values()],
    )
    out = {groups[g]: ns / MS for g, (ns, _) in found.items()}
    out["self"] = own / MS
    return out


def test_sequential_children_and_gaps_are_the_parents_own_time() -> None:
    spans = {
        "r": (None, "route", 0, 100),
        "a": ("r", "db", 10, 30),
        "b": ("r", "db", 30, 60),  # back to back with a: both on the path
        "c": ("r", "http", 70, 90),
    }
    assert _walk(spans, "r") == {"db": 50, "http": 20, "self": 30}


def test_overlapping_children_only_the_last_finishing_one_counts_where_they_overlap() -> None:
    spans = {
        "r": (None, "route", 0, 100),
        "a": ("r", "fast", 10, 40),  # concurrent with b, ends first: off the path
        "b": ("r", "slow", 10, 80),
        "c": ("r", "early", 0, 5),  # ends before b starts: back on the path
    }
    assert _walk(spans, "r") == {"slow": 70, "early": 5, "self": 25}


def test_a_child_overflowing_its_parent_is_truncated_to_the_parents_window() -> None:
    spans = {
        "r": (None, "route", 10, 50),
        "a": ("r", "async", 40, 200),  # ends long after the parent (fire and forget)
        "b": ("r", "before", 0, 20),  # started before the parent (clock skew)
        "g": ("a", "grandchild", 100, 150),  # outside the truncated window: dropped
        "x": ("r", "outside", 60, 70),  # entirely after the parent: dropped
    }
    result = _walk(spans, "r")
    assert result == {"async": 10, "before": 10, "self": 20}
    assert sum(result.values()) == 40  # the parent's duration, exactly


def test_a_deep_chain_names_the_group_where_the_time_is_spent_exclusively() -> None:
    spans = {
        "r": (None, "route", 0, 100),
        "h": ("r", "handler", 5, 95),
        "s": ("h", "seal", 10, 90),
        "q": ("s", "query", 20, 30),
    }
    assert _walk(spans, "r") == {"handler": 10, "seal": 70, "query": 10, "self": 10}
    assert _walk(spans, "s") == {"query": 10, "self": 70}


def test_a_missing_parent_makes_the_span_the_root_of_its_own_subtree() -> None:
    recorder = PathRecorder()
    # Rows: a root, a child whose parent is elsewhere (-1), its child; groups 0, 1, 2.
    recorder.close([-1, -1, 1], [0, 1, 2], [0, 0, 2 * MS], [10 * MS, 8 * MS, 6 * MS], [None] * 3)
    labels = [("root", "SERVER"), ("orphan", "INTERNAL"), ("leaf", "CLIENT")]
    assert recorder.stats(0, labels, None) is None  # no child in the trace
    orphan = recorder.stats(1, labels, None)
    assert orphan is not None and orphan.children == (("leaf", "CLIENT"),)
    assert orphan.own_ms.tolist() == [4.0] and orphan.child_ms.tolist() == [[4.0]]


def test_a_parent_loop_is_followed_once() -> None:
    children = [[1], [0]]
    own, found = walk(0, children, [0, 0], [10 * MS, 10 * MS], [0, 1])
    assert own == 0 and found == {1: [10 * MS, 1]}


def test_the_sample_is_bounded_and_each_rows_parts_add_up_to_the_span() -> None:
    recorder = PathRecorder(size=50)
    rng = np.random.default_rng(1)
    durations = []
    for _ in range(400):
        child = int(rng.integers(1, 9) * MS)
        durations.append(10 * MS + child)
        recorder.close([-1, 0], [0, 1], [0, MS], [10 * MS + child, MS + child], ["a", "a"])
    path = recorder.stats(0, [("p", "SERVER"), ("c", "CLIENT")], None)
    assert path is not None and path.spans == 400 and len(path.own_ms) == 50
    totals = path.own_ms + path.child_ms.sum(axis=1)
    assert set(np.round(totals * MS).astype(int)) <= set(durations)
    assert path.calls.tolist() == [[1]] * 50


def _trace(aggregator: Aggregator, trace: str, start: int, child_ms: float, instance: str) -> None:
    key = ("GET /x", "SERVER", "GET", "/x", None)
    aggregator.add_span(trace, "r", None, key, start, 20 * MS, instance, False, None, None)
    child = ("seal", "INTERNAL", None, None, None)
    aggregator.add_span(
        trace, "c", "r", child, start + MS, int(child_ms * MS), instance, False, None, None
    )


def test_the_aggregator_leaves_the_warm_up_window_out_of_critical_paths() -> None:
    # Durations keep the warm-up window, marked early (the analysis decides from evidence
    # whether to leave it out); attribution never uses spans that may be a cold start.
    aggregator = Aggregator(warmup=timedelta(seconds=10))
    for i in range(30):
        _trace(aggregator, f"t{i}", i * 1_000 * MS, 15.0 if i < 10 else 5.0, "pod-a")
    (route,) = [g for g in aggregator.result().groups if g.name == "GET /x"]
    path = route.critical_path
    assert path is not None and path.spans == 30 and path.children == (("seal", "INTERNAL"),)
    assert route.durations_ms.size == 30 and int(route.early.sum()) == 10
    assert len(path.own_ms) == 20
    assert path.child_ms[:, 0].tolist() == [5.0] * 20
    assert path.own_ms.tolist() == [15.0] * 20


def test_absorbing_another_aggregator_keeps_a_bounded_sample_of_both() -> None:
    first, second = Aggregator(), Aggregator()
    first.paths = PathRecorder(size=40)
    for i in range(60):
        _trace(first, f"a{i}", i * MS * 100, 4.0, "pod-a")
        _trace(second, f"b{i}", i * MS * 100, 8.0, "pod-b")
    first.absorb(second)
    (route,) = [g for g in first.result().groups if g.name == "GET /x"]
    path = route.critical_path
    assert path is not None and path.spans == 120 and len(path.own_ms) == 40
    assert sorted(set(path.child_ms[:, 0].tolist())) == [4.0, 8.0]
    assert path.own_ms + path.child_ms[:, 0] == pytest.approx(np.full(40, 20.0))


def test_closing_columns_keeps_the_same_sample_as_closing_rows() -> None:
    # Blocks of traces of three spans (a root, two children) over four groups, many more than
    # the reservoir holds: the columnar close must draw and keep exactly what the row close does.
    rng = np.random.default_rng(7)
    rows, columns = PathRecorder(size=30), PathRecorder(size=30)
    for block in range(6):
        traces = 40 + 13 * block
        parents = np.tile(np.array([-1, 0, 0]), traces) + np.repeat(np.arange(traces) * 3, 3)
        parents[::3] = -1
        groups = rng.integers(0, 4, traces * 3).astype(np.intp)
        starts = rng.integers(0, 10 * MS, traces * 3).astype(np.int64)
        ends = starts + rng.integers(0, 10 * MS, traces * 3).astype(np.int64)
        instances = [f"pod-{g}" for g in rng.integers(0, 3, traces * 3).tolist()]
        rows.close(parents.tolist(), groups.tolist(), starts.tolist(), ends.tolist(), instances)
        columns.close_arrays(parents.astype(np.intp), groups, starts, ends, instances)
    assert list(columns._samples) == list(rows._samples)
    for group, sample in rows._samples.items():
        theirs = columns._samples[group]
        assert theirs.seen == sample.seen > 30
        assert theirs.rows() == sample.rows()
    assert columns._random.getstate() == rows._random.getstate()


@pytest.mark.parametrize("depth", [2, 40])
def test_closing_columns_walks_deep_and_looping_trees_as_closing_rows(depth: int) -> None:
    # Chains deeper or shallower than the levels the columnar close follows before taking every
    # span, a parent later in the block, a loop and a missing parent: every walk as the rows'.
    rng = np.random.default_rng(depth)
    rows, columns = PathRecorder(size=8), PathRecorder(size=8)
    for _ in range(4):
        size = 300
        parents = np.arange(size) - 1
        parents[:: depth + 1] = -1  # chains of `depth` spans under each root
        parents[5] = 9  # a parent later in the block
        parents[20], parents[21] = 21, 20  # a loop
        parents[30] = size + 5  # a parent not among these spans
        parents[parents >= size] = -1
        groups = rng.integers(0, 3, size).astype(np.intp)
        starts = np.arange(size, dtype=np.int64) * MS
        ends = starts + rng.integers(0, 50 * MS, size).astype(np.int64)
        instances = [None] * size
        rows.close(parents.tolist(), groups.tolist(), starts.tolist(), ends.tolist(), instances)
        columns.close_arrays(parents.astype(np.intp), groups, starts, ends, instances)
    for group, sample in rows._samples.items():
        assert columns._samples[group].rows() == sample.rows()
    assert columns._random.getstate() == rows._random.getstate()
