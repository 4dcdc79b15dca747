"""insert_spans and insert_packed (one path): idempotent per (trace id, span id), every value
stored as given.

On PostgreSQL the rows are COPYed straight into spans, or through a scratch table when some are
stored already; on SQLite they go through executemany.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from feedbot.spans.rows import SpanRow
from feedbot.store import span_queries
from feedbot.store.spans import Span

T0 = datetime(2026, 12, 7, 9, tzinfo=UTC)


def _row(span_id: str, name: str = "GET /vaults", **attributes: Any) -> SpanRow:
    return {
        "trace_id": "5b8aa5a2d2c872e8321cf37308d69df2",
        "span_id": span_id,
        "parent_span_id": None,
        "service": "vault-inserts",
        "version": "1.0",
        "environment": "production",
        "instance": None,
        "name": name,
        "kind": "SERVER",
        "route": "/vaults",
        "method": "GET",
        "start_ns": 1_765_098_000_000_000_000,
        "duration_ns": 1_500_000,
        "is_error": False,
        "attributes": dict(attributes),
        "events": [{"name": "exception", "attributes": {"exception.type": "KeyError"}}],
    }


def _stored(session: Session) -> dict[str, Span]:
    rows = session.scalars(select(Span).where(Span.service == "vault-inserts")).all()
    return {r.span_id: r for r in rows}


def test_the_first_copy_of_a_span_wins_within_a_batch_and_across_batches(
    db_session: Session,
) -> None:
    span_queries.insert_spans(
        db_session, [_row("00f067aa0ba902b7", "first"), _row("00f067aa0ba902b7", "second")], T0
    )
    db_session.commit()
    span_queries.insert_spans(
        db_session, [_row("00f067aa0ba902b7", "retry"), _row("00f067aa0ba902b8", "new")], T0
    )
    db_session.commit()
    stored = _stored(db_session)
    assert {k: v.name for k, v in stored.items()} == {
        "00f067aa0ba902b7": "first",
        "00f067aa0ba902b8": "new",
    }


def test_two_batches_in_one_transaction_store_both_once(db_session: Session) -> None:
    span_queries.insert_spans(db_session, [_row("00000000000000a1")], T0)
    span_queries.insert_spans(db_session, [_row("00000000000000a2")], T0)
    db_session.commit()
    assert sorted(_stored(db_session)) == ["00000000000000a1", "00000000000000a2"]


def test_values_orjson_refuses_are_stored_as_json_dumps_writes_them(db_session: Session) -> None:
    odd = {"lone": "\ud800x", "big": 2**70, "text": 'caf\u00e9 \u0000 "q"', "n": 1.5}
    span_queries.insert_spans(db_session, [_row("00000000000000b1", **odd)], T0)
    db_session.commit()
    db_session.expire_all()
    span = _stored(db_session)["00000000000000b1"]
    assert span.attributes == odd
    assert span.events == [{"name": "exception", "attributes": {"exception.type": "KeyError"}}]
    assert span.received_at == T0
    assert span.duration_ns == 1_500_000 and span.is_error is False and span.parent_span_id is None


def test_received_at_is_stored_as_the_orm_stores_it(db_session: Session) -> None:
    # Pruning compares received_at in SQL: on SQLite that is text, so the bulk insert must
    # write the ORM's format exactly, or old spans sort after new ones.
    by_orm = Span(**{**_row("00000000000000c1"), "received_at": T0})
    db_session.add(by_orm)
    db_session.flush()
    span_queries.insert_spans(db_session, [_row("00000000000000c2")], T0)
    db_session.flush()
    stored = db_session.execute(
        text("SELECT span_id, received_at FROM spans WHERE service = 'vault-inserts'")
    ).all()
    assert len(stored) == 2
    assert stored[0][1] == stored[1][1]


def test_packed_spans_are_stored_as_the_rows_they_were_packed_from(db_session: Session) -> None:
    # COPY's text format escapes backslashes, tabs, newlines and carriage returns; NULL is \N.
    odd = {"q": 'a\tb\nc\rd\\e "f"', "n": None, "u": "caf\u00e9 \\N", "big": 2**70}
    plain, tricky = _row("00000000000000d1"), _row("00000000000000d2", "tab\there\\N", **odd)
    tricky["route"], tricky["is_error"], tricky["method"] = None, True, "\\N"
    dialect = db_session.get_bind().dialect.name
    packed = span_queries.pack_spans([plain, tricky], dialect)
    assert packed.count == 2
    span_queries.insert_packed(db_session, [packed, span_queries.pack_spans([], dialect)], T0)
    db_session.commit()
    db_session.expire_all()
    stored = _stored(db_session)
    for row in (plain, tricky):
        span = stored[row["span_id"]]
        assert {key: getattr(span, key) for key in row} == row
        assert span.received_at == T0
        # The attributes a check reads are packed on this path too (else every check unpacks
        # them again in SQL).
        assert span.packed_attributes == span_queries.pack_attributes(row["attributes"])
        assert span.packed_attributes is not None


def _staged(session: Session) -> bool:
    """Whether this connection's PostgreSQL scratch table exists (the staging path ran)."""
    return session.scalar(text("SELECT to_regclass('pg_temp.spans_incoming')")) is not None


def test_a_batch_half_stored_already_stores_exactly_the_missing_spans(
    db_session: Session,
) -> None:
    # A retried batch, some of whose spans were stored: on PostgreSQL the COPY straight into
    # spans is refused (unique violation), undone to its savepoint, and the staging path
    # stores the rest. The first copy of each span stays.
    postgres = db_session.get_bind().dialect.name == "postgresql"
    if postgres:  # rolled back with the test
        db_session.execute(text("DROP TABLE IF EXISTS pg_temp.spans_incoming"))
    first = [_row(f"00000000000000e{i}", "first") for i in range(4)]
    span_queries.insert_spans(db_session, first, T0)
    db_session.commit()
    if postgres:
        assert not _staged(db_session)  # new spans only: the COPY went straight in
    retry = [_row(f"00000000000000e{i}", "retry") for i in range(2, 8)]
    dialect = db_session.get_bind().dialect.name
    span_queries.insert_packed(db_session, [span_queries.pack_spans(retry, dialect)], T0)
    db_session.commit()
    if postgres:
        assert _staged(db_session)
    stored = _stored(db_session)
    assert {k: v.name for k, v in stored.items()} == {
        **{f"00000000000000e{i}": "first" for i in range(4)},
        **{f"00000000000000e{i}": "retry" for i in range(4, 8)},
    }
    # The same spans once more: nothing new, nothing twice, and the session still usable.
    span_queries.insert_spans(db_session, retry, T0)
    db_session.commit()
    assert len(_stored(db_session)) == 8


def test_a_group_holding_a_batch_and_its_retry_stores_each_span_once(
    db_session: Session,
) -> None:
    # Two writers' batches are merged into one COPY sorted by key; a span in both (an
    # exporter's retry in the same group) is written once, the first batch's copy.
    dialect = db_session.get_bind().dialect.name
    batch = [_row(f"00000000000000f{i}", "sent") for i in (3, 1, 2)]
    again = [_row(f"00000000000000f{i}", "again") for i in (2, 4)]
    packed = [span_queries.pack_spans(rows, dialect) for rows in (batch, again)]
    assert [p.count for p in packed] == [3, 2]
    span_queries.insert_packed(db_session, packed, T0)
    db_session.commit()
    stored = _stored(db_session)
    assert {k: v.name for k, v in stored.items()} == {
        "00000000000000f1": "sent",
        "00000000000000f2": "sent",
        "00000000000000f3": "sent",
        "00000000000000f4": "again",
    }


def test_a_refused_value_is_an_error_not_a_fallback(db_session: Session) -> None:
    # Only a unique violation takes the staging path: a span the database refuses for another
    # reason fails the write (the writer then retries each batch alone; nothing is dropped).
    if db_session.get_bind().dialect.name != "postgresql":
        return
    wide = _row("00000000000000a9")
    wide["service"] = "x" * 300  # wider than the column
    with pytest.raises(DBAPIError):
        span_queries.insert_spans(db_session, [wide], T0)


def test_spans_of_ids_no_exporter_sends_are_told_apart_by_their_whole_key(
    db_session: Session,
) -> None:
    # COPY lines are sorted by their first 49 characters, the key of every hex id; an id the
    # text format escapes (backslashes) is longer there, and two spans sharing that start are
    # still two spans.
    odd = "\\" * 32
    rows = [_row("00000000000000c8", "a"), _row("00000000000000c9", "b")]
    for row in rows:
        row["trace_id"] = odd
    dialect = db_session.get_bind().dialect.name
    packed = span_queries.pack_spans([*rows, rows[0]], dialect)
    span_queries.insert_packed(db_session, [packed, span_queries.pack_spans(rows, dialect)], T0)
    db_session.commit()
    stored = _stored(db_session)
    assert {k: (v.trace_id, v.name) for k, v in stored.items()} == {
        "00000000000000c8": (odd, "a"),
        "00000000000000c9": (odd, "b"),
    }
