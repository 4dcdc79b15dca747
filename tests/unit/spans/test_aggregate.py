"""The streaming aggregator: groups, both attribute generations, callers, N+1, filtering."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedbot.spans import semconv
from feedbot.spans.aggregate import (
    Aggregator,
    aggregate,
    group_label,
    matches,
    to_ns,
)
from feedbot.spans.group import MAX_CODE_LOCATIONS, MAX_EXCEPTION_TYPES
from feedbot.spans.model import CodeSeen, ExceptionSeen, SpanQuery, from_ns
from feedbot.spans.rows import SpanRow
from feedbot.spans.semconv import normalize_statement

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
T0_NS = to_ns(T0)


def row(name: str = "work", **over: Any) -> SpanRow:
    values: dict[str, Any] = {
        "trace_id": "t1",
        "span_id": f"s{random.randrange(10**9)}",
        "parent_span_id": None,
        "service": "vault",
        "version": "1.0.0",
        "environment": "production",
        "instance": None,
        "name": name,
        "kind": "INTERNAL",
        "route": None,
        "method": None,
        "start_ns": T0_NS,
        "duration_ns": 1_000_000,
        "is_error": False,
        "attributes": {},
        "events": [],
    }
    values.update(over)
    return SpanRow(**values)  # type: ignore[typeddict-item]


def exception(kind: str, message: str = "") -> dict[str, Any]:
    return {
        "name": "exception",
        "time_ns": T0_NS,
        "attributes": {"exception.type": kind, "exception.message": message},
    }


@pytest.mark.parametrize(
    ("over", "label"),
    [
        ({"kind": "SERVER", "route": "/a/{id}", "method": "GET"}, "GET /a/{id}"),
        ({"kind": "SERVER", "route": "/a/{id}"}, "/a/{id}"),
        ({"kind": "SERVER"}, "work"),
        ({"kind": "CLIENT", "route": "/a/{id}", "method": "GET"}, "work"),
    ],
)
def test_group_label(over: dict[str, Any], label: str) -> None:
    assert group_label(row(**over)) == label


def test_groups_counts_errors_durations_and_instances() -> None:
    rows = [
        row("GET /a/1", kind="SERVER", route="/a/{id}", method="GET", instance="pod-1"),
        row("GET /a/2", kind="SERVER", route="/a/{id}", method="GET", duration_ns=3_000_000),
        row("GET /a/3", kind="SERVER", route="/a/{id}", method="GET", is_error=True,
            instance="pod-2", duration_ns=2_500_000),
        row("work", kind="INTERNAL"),
        row("work", kind="CLIENT"),
    ]  # fmt: skip
    data = aggregate(rows)

    assert [(g.name, g.kind, g.count, g.errors) for g in data.groups] == [
        ("GET /a/{id}", "SERVER", 3, 1),
        ("work", "CLIENT", 1, 0),
        ("work", "INTERNAL", 1, 0),
    ]
    server = data.groups[0]
    assert server.durations_ms.dtype == np.float64
    np.testing.assert_allclose(server.durations_ms, [1.0, 3.0, 2.5])
    assert server.instance_names == ("pod-1", "(unknown)", "pod-2")
    assert server.instances.tolist() == [0, 1, 2]
    assert data.groups[1].instance_names == () and data.groups[1].instances.size == 0
    assert data.traces == 1


def test_empty_input() -> None:
    data = aggregate([])
    assert (data.groups, data.repeats, data.traces) == ([], [], 0)


def test_exceptions_with_example_trace_and_error_type_fallback() -> None:
    rows = [
        row(trace_id="t1", events=[exception("ValueError", "bad"), exception("KeyError")]),
        row(trace_id="t2", events=[exception("ValueError", "worse")]),
        row(trace_id="t3", events=[{"name": "db.client.operation.exception", "attributes": {
            "exception.type": "TimeoutError"}}]),
        row(trace_id="t4", is_error=True, attributes={"error.type": "500"}),
        row(trace_id="t5", is_error=True),
        row(trace_id="t6", events=[{"name": "cache.miss", "attributes": {}}]),
    ]  # fmt: skip
    (group,) = aggregate(rows).groups

    assert group.exceptions == (
        ExceptionSeen("ValueError", 2, "bad", "t1"),
        ExceptionSeen("500", 1, "", "t4"),
        ExceptionSeen("KeyError", 1, "", "t1"),
        ExceptionSeen("TimeoutError", 1, "", "t3"),
    )


def test_distinct_exception_types_and_code_locations_are_capped() -> None:
    rows = [
        row(events=[exception(f"E{i}")], attributes={"code.function.name": f"f{i}"})
        for i in range(MAX_EXCEPTION_TYPES + MAX_CODE_LOCATIONS)
    ]
    (group,) = aggregate(rows).groups
    assert len(group.exceptions) == MAX_EXCEPTION_TYPES
    assert len(group.code) == MAX_CODE_LOCATIONS


@pytest.mark.parametrize(
    "attributes",
    [
        {"code.function.name": "vault.Appraiser.appraise", "code.file.path": "vault.py",
         "code.line.number": 7},
        {"code.namespace": "vault.Appraiser", "code.function": "appraise",
         "code.filepath": "vault.py", "code.lineno": 7},
        {"code.namespace": "vault.Appraiser", "code.function.name": "appraise",
         "code.file.path": "vault.py", "code.line.number": 7},
    ],
    ids=["semconv-1.31", "semconv-old", "semconv-1.30"],
)  # fmt: skip
def test_code_locations_of_every_generation(attributes: dict[str, Any]) -> None:
    (group,) = aggregate([row(attributes=attributes), row(attributes=attributes)]).groups
    assert group.code == (CodeSeen("vault.Appraiser.appraise", "vault.py", 7, 2),)


def test_code_without_function_and_spans_without_code() -> None:
    rows = [row(attributes={"code.filepath": "a.py", "code.lineno": "x"}), row()]
    (group,) = aggregate(rows).groups
    assert group.code == (CodeSeen(None, "a.py", None, 1),)


def trace_rows() -> list[SpanRow]:
    """A root SERVER span, two children, a grandchild, and a span whose parent is elsewhere."""
    return [
        row("GET /", kind="SERVER", route="/", span_id="root"),
        row("child", span_id="c1", parent_span_id="root"),
        row("child", span_id="c2", parent_span_id="root"),
        row("grandchild", span_id="g1", parent_span_id="c1"),
        row("child", span_id="c3", parent_span_id="elsewhere"),
    ]


@pytest.mark.parametrize("order", ["forward", "reversed", "shuffled"])
def test_callers_whatever_the_arrival_order(order: str) -> None:
    rows = trace_rows()
    if order == "reversed":
        rows.reverse()
    elif order == "shuffled":
        random.Random(4).shuffle(rows)
    groups = {g.name: g for g in aggregate(rows).groups}

    assert groups["/"].callers == (("(root)", 1),)
    assert groups["child"].callers == (("/", 2), ("(remote)", 1))
    assert groups["grandchild"].callers == (("child", 1),)


def test_parents_resolve_within_their_own_trace() -> None:
    rows = [
        row("a", trace_id="t1", span_id="p"),
        row("b", trace_id="t2", span_id="p"),
        row("c", trace_id="t2", span_id="x", parent_span_id="p"),
    ]
    groups = {g.name: g for g in aggregate(rows).groups}
    assert groups["c"].callers == (("b", 1),)


def test_a_trace_closed_early_counts_late_parents_as_remote_but_once_as_a_trace() -> None:
    aggregator = Aggregator(max_open_spans=2)
    aggregator.add_many(
        [
            row("child", trace_id="t1", span_id="c", parent_span_id="p"),
            row("other", trace_id="t2", span_id="o"),
            row("other", trace_id="t3", span_id="o"),
            row("parent", trace_id="t1", span_id="p"),
        ]
    )
    data = aggregator.result()
    assert {g.name: g.callers for g in data.groups}["child"] == (("(remote)", 1),)
    assert data.traces == 3


def db(trace: str, parent: str, sql: str, ms: float = 1.0, key: str = "db.query.text") -> SpanRow:
    return row(
        "SELECT",
        kind="CLIENT",
        trace_id=trace,
        parent_span_id=parent,
        duration_ns=int(ms * 1e6),
        attributes={key: sql},
    )


def test_repeated_statements_fold_per_parent_group_and_trace() -> None:
    rows = [
        # t1: one handler span runs the same statement 3 times (with different ids).
        row("GET /a", kind="SERVER", route="/a", trace_id="t1", span_id="h1"),
        *(db("t1", "h1", f"SELECT * FROM x WHERE id = {i}", ms=2) for i in range(3)),
        db("t1", "h1", "SELECT 1"),
        # t2: two spans of the same handler group, 2 and 4 repeats (old attribute): keep 4.
        row("GET /a", kind="SERVER", route="/a", trace_id="t2", span_id="h2"),
        row("GET /a", kind="SERVER", route="/a", trace_id="t2", span_id="h3"),
        *(db("t2", "h2", f"SELECT * FROM x WHERE id = {i}", key="db.statement") for i in range(2)),
        *(db("t2", "h3", f"SELECT * FROM x WHERE id = {i}", key="db.statement") for i in range(4)),
        # t3: a parent outside the rows.
        *(db("t3", "gone", "DELETE FROM y WHERE k IN (1, 2)") for _ in range(2)),
    ]
    data = aggregate(rows)

    assert [(r.parent, r.statement) for r in data.repeats] == [
        ("(remote)", "DELETE FROM y WHERE k IN (?)"),
        ("/a", "SELECT * FROM x WHERE id = ?"),
    ]
    remote, handler = data.repeats
    assert remote.repeats.tolist() == [2] and remote.example_trace_id == "t3"
    assert sorted(handler.repeats.tolist()) == [3, 4]
    np.testing.assert_allclose(sorted(handler.total_ms), [4.0, 6.0])
    assert handler.example_trace_id == "t2"
    assert handler.repeats.dtype == np.int32 and handler.total_ms.dtype == np.float64


def test_result_passes_sampling_and_notes_through() -> None:
    data = aggregate([row()], sampled_traces=40, notes=("sampled",))
    assert (data.sampled_traces, data.notes) == (40, ("sampled",))


@pytest.mark.parametrize(
    ("sql", "normal"),
    [
        ("SELECT * FROM t WHERE id = 42", "SELECT * FROM t WHERE id = ?"),
        ("select a from t where name = 'O''Brien'", "select a from t where name = ?"),
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"),
        ("SELECT * FROM t WHERE id in ( 'a' ,'b' )", "SELECT * FROM t WHERE id in (?)"),
        ("SELECT  *\n\tFROM t  WHERE x = 1.5e3 ", "SELECT * FROM t WHERE x = ?"),
        ('SELECT "c1", t2.c3 FROM "T1" WHERE a = $1', 'SELECT "c1", t2.c3 FROM "T1" WHERE a = ?'),
        ("UPDATE t SET v = 0xFF, w = .5", "UPDATE t SET v = ?, w = ?"),
        ("INSERT INTO t VALUES (?, ?)", "INSERT INTO t VALUES (?, ?)"),
        ("SELECT id FROM t LIMIT 10 OFFSET 20", "SELECT id FROM t LIMIT ? OFFSET ?"),
    ],
)  # fmt: skip
def test_normalize_statement(sql: str, normal: str) -> None:
    assert normalize_statement(sql) == normal


_SQL_PIECES = st.sampled_from(
    ["0", "1", "7", "09", "0x", "0X", "x", "e", "E", "+", "-", ".", "'", "''", '"', "$", " ",
     "\n", ",", "(", ")", "IN", "in", "?", "t", "_", "SELECT ", " = ", "\u0661", "é", "\ud800"]
)  # fmt: skip


@given(st.lists(_SQL_PIECES, max_size=24).map("".join))
@settings(max_examples=3000, deadline=None)
def test_normalising_by_shape_answers_as_the_statement_itself(sql: str) -> None:
    # The fast path normalises the statement with its digits all "1"; it must never differ
    # from normalising the statement as it is.
    assert normalize_statement(sql) == semconv._normalize.__wrapped__(sql)


def window_query(**over: Any) -> SpanQuery:
    values: dict[str, Any] = {
        "service": "vault",
        "version": "1.0.0",
        "start": T0,
        "end": T0 + timedelta(minutes=10),
        "environment": "production",
    }
    values.update(over)
    return SpanQuery(**values)


@pytest.mark.parametrize(
    ("over", "query_over", "expected"),
    [
        ({}, {}, True),
        ({"start_ns": T0_NS - 1}, {}, False),
        ({"start_ns": T0_NS + 600 * 10**9 - 1}, {}, True),
        ({"start_ns": T0_NS + 600 * 10**9}, {}, False),
        ({"service": "other"}, {}, False),
        ({"version": "1.0.1"}, {}, False),
        ({"version": None}, {}, False),
        ({"environment": "staging"}, {}, False),
        ({"environment": None}, {}, True),
        ({"environment": "staging"}, {"environment": None}, True),
        ({"name": "other"}, {"span_name": "work"}, False),
        ({}, {"span_name": "work"}, True),
    ],
)
def test_matches(over: dict[str, Any], query_over: dict[str, Any], expected: bool) -> None:
    assert matches(row(**over), window_query(**query_over)) is expected


def test_aggregate_filters_with_the_query() -> None:
    rows = [row(), row(version="2.0.0"), row(start_ns=T0_NS - 1)]
    (group,) = aggregate(rows, window_query()).groups
    assert group.count == 1


def test_naive_window_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        matches(row(), window_query(start=datetime(2026, 11, 24)))


def _warmup_rows() -> list[SpanRow]:
    """pod-a from T0 (slow for 5 min), pod-b from T0 + 10 min (slow for 5 min), no-instance."""
    rows = []
    for pod, first in (("pod-a", 0), ("pod-b", 10)):
        for minute in range(first, 30):
            slow = minute < first + 5
            rows.append(
                row(
                    "handler",
                    trace_id=f"{pod}-{minute}",
                    instance=pod,
                    start_ns=T0_NS + minute * 60 * 10**9,
                    duration_ns=(200 if slow else 100) * 10**6,
                    is_error=minute % 7 == 0,
                )
            )
    rows.append(row("handler", trace_id="bare", start_ns=T0_NS, duration_ns=300 * 10**6))
    return rows


def test_the_warmup_of_each_instance_is_marked_not_left_out() -> None:
    plain = aggregate(_warmup_rows())
    aggregator = Aggregator(warmup=timedelta(minutes=5))
    aggregator.add_many(reversed(_warmup_rows()))  # first-seen is by start, not arrival
    warm = aggregator.result()

    (before,), (after,) = plain.groups, warm.groups
    assert before.early.size == 0 and int(after.early.sum()) == 10
    assert (after.count, after.errors) == (before.count, before.errors)
    assert after.callers == before.callers and after.warmup_excluded == 0
    # Every duration stays (the analysis decides); the early ones are each pod's slow ones.
    assert len(after.durations_ms) == len(before.durations_ms)
    assert sorted(set(after.durations_ms[after.early].tolist())) == [200.0]
    assert sorted(set(after.durations_ms[~after.early].tolist())) == [100.0, 300.0]
    names = after.instance_names
    early = [names[i] for i in after.instances[after.early].tolist()]
    assert early.count("pod-a") == 5 and early.count("pod-b") == 5


def test_the_warmup_is_counted_from_the_instances_first_span_in_any_group() -> None:
    rows = [
        row("first", trace_id="a", instance="pod-a", start_ns=T0_NS),
        row("later", trace_id="b", instance="pod-a", start_ns=T0_NS + 4 * 60 * 10**9),
        row("later", trace_id="c", instance="pod-a", start_ns=T0_NS + 5 * 60 * 10**9),
    ]
    aggregator = Aggregator(warmup=timedelta(minutes=5))
    aggregator.add_many(rows)
    groups = {g.name: g for g in aggregator.result().groups}
    # The span at exactly 5 min is not early.
    assert groups["later"].early.tolist() == [True, False] and groups["later"].count == 2
    assert groups["first"].early.tolist() == [True]


def test_a_zero_warmup_changes_nothing() -> None:
    plain = aggregate(_warmup_rows())
    query = SpanQuery("vault", "1.0.0", T0, T0 + timedelta(hours=1), warmup=timedelta(0))
    zero = aggregate(_warmup_rows(), query)
    for mine, theirs in zip(zero.groups, plain.groups, strict=True):
        assert mine == theirs and mine.early.size == 0
        assert mine.durations_ms.tolist() == theirs.durations_ms.tolist()
        assert mine.instances.tolist() == theirs.instances.tolist()


def test_aggregate_takes_the_warmup_from_the_query() -> None:
    query = SpanQuery("vault", "1.0.0", T0, T0 + timedelta(hours=1), warmup=timedelta(minutes=5))
    assert int(aggregate(_warmup_rows(), query).groups[0].early.sum()) == 10


@pytest.mark.parametrize("cut", [1, 17, 30, 45])
def test_two_aggregators_absorbed_give_the_single_answer(cut: int) -> None:
    rows = [
        row(
            "child" if n % 3 else "parent",
            trace_id=f"t{n // 6}",
            span_id=f"s{n}",
            parent_span_id=None if n % 3 == 0 else f"s{n - n % 3}",
            instance=f"pod-{n % 4}",
            start_ns=T0_NS + n * 10**9,
            duration_ns=(n + 1) * 10**6,
            attributes={"db.query.text": f"SELECT {n}"} if n % 3 else {},
            events=[exception(f"E{n % 5}")] if n % 4 == 0 else [],
            is_error=n % 4 == 0,
        )
        for n in range(60)
    ]
    whole = Aggregator(warmup=timedelta(seconds=20))
    whole.add_many(rows)
    first, later = (
        Aggregator(warmup=timedelta(seconds=20)),
        Aggregator(warmup=timedelta(seconds=20), hold_first=10),
    )
    first.add_many(rows[:cut])
    later.add_many(rows[cut:])
    first.absorb(later)
    want, got = whole.result(), first.result()
    assert got.groups == want.groups and got.repeats == want.repeats
    assert got.traces == want.traces
    assert got.observed == want.observed == (from_ns(T0_NS), from_ns(T0_NS + 59 * 10**9))
    for mine, theirs in zip(got.groups, want.groups, strict=True):
        assert mine.durations_ms.tolist() == theirs.durations_ms.tolist()
        assert mine.early.tolist() == theirs.early.tolist()
        assert [mine.instance_names[i] for i in mine.instances] == [
            theirs.instance_names[i] for i in theirs.instances
        ]


def test_observed_is_the_range_of_the_counted_starts_only() -> None:
    window = SpanQuery("vault", "1.0.0", T0, T0 + timedelta(hours=24))
    rows = [
        row(start_ns=T0_NS + 7 * 10**9 + 1500, duration_ns=10**12),  # ends long after: start counts
        row(start_ns=T0_NS + 3 * 10**9),
        row(start_ns=T0_NS - 10**9),  # before the window
        row(start_ns=T0_NS + 5 * 10**9, version="1.1.0"),  # another version
        row(start_ns=T0_NS + 60 * 10**9, version="1.1.0"),
    ]

    got = aggregate(rows, window).observed

    assert got == (T0 + timedelta(seconds=3), T0 + timedelta(seconds=7, microseconds=1))
    assert aggregate([], window).observed is None
