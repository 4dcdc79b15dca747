"""Every statement the embedded trace backend runs against the ``spans`` table.

Functions take a Session; callers commit (and turn database errors into backend errors). They
are here rather than in :mod:`feedbot.backends.embedded` so SQL stays in the store and the
backends never touch the ORM tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Row,
    Select,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import ENTRY_KINDS, SpanQuery
from feedbot.spans.rows import SpanRow
from feedbot.spans.stored_columns import ITEM_SEP, PART_SEP, WANTED_KEYS
from feedbot.store.spans import Span

_ROW_KEYS = tuple(SpanRow.__annotations__)
_ROW_COLUMNS = tuple(getattr(Span, key) for key in _ROW_KEYS)


def insert_spans(session: Session, rows: Iterable[SpanRow], received_at: datetime) -> None:
    """Insert ``rows`` in bulk, each stamped with ``received_at``; a span already stored is kept.

    The rows are packed here as a decoding process packs them (:func:`pack_spans`) and take
    the one write path there is, :func:`insert_packed`.
    """
    dialect = session.get_bind().dialect.name
    insert_packed(session, [pack_spans(list(rows), dialect)], received_at)


#: Every column of ``spans`` but its key, in the order ``COPY`` writes them.
_COPY_COLUMNS = (*_ROW_KEYS, "packed_attributes", "received_at")
_JSON_COLUMNS = tuple(
    i for i, key in enumerate(_ROW_KEYS) if isinstance(Span.__table__.c[key].type, JSON)
)
#: A scratch table per connection, emptied at every commit (and by a rollback).
_INCOMING = "spans_incoming"
_SQLITE_INSERT = (
    f"INSERT INTO spans ({', '.join(_COPY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COPY_COLUMNS)}) "
    "ON CONFLICT (trace_id, span_id) DO NOTHING"
)


def _dumps(value: Any) -> str:
    """JSON text by orjson (faster), or by the standard library for what orjson refuses.

    orjson refuses lone surrogates and integers beyond 64 bits, which ``json.dumps`` (what an
    ORM insert uses) writes; the parsed values are the same either way.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)


def _stamp(session: Session, received_at: datetime) -> Any:
    """``received_at`` as the ORM gives it to the driver for the ``received_at`` column."""
    dialect = session.get_bind().dialect
    process = Span.__table__.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
    return received_at if process is None else process(received_at)


def _values(rows: Iterable[SpanRow]) -> Iterator[list[Any]]:
    """Each row's values in :data:`_COPY_COLUMNS` order but ``received_at``, JSON as text."""
    keys, json_columns, dumps = _ROW_KEYS, _JSON_COLUMNS, _dumps
    for row in rows:
        values = [row[key] for key in keys]  # type: ignore[literal-required]
        for i in json_columns:
            values[i] = dumps(values[i])
        values.append(pack_attributes(row["attributes"]))
        yield values


@dataclass(frozen=True)
class PackedSpans:
    """Decoded spans ready for :func:`insert_packed`, built where they were decoded (a decoding
    process hands over one bytes object or a list of tuples: cheap to pass, no dict per span).

    For PostgreSQL ``data`` is the ``COPY`` text of their columns but ``received_at``; for
    SQLite, one tuple per span (JSON as text) of the same columns.
    """

    count: int
    dialect: str
    data: bytes | list[tuple[Any, ...]]


def pack_spans(rows: Sequence[SpanRow], dialect: str) -> PackedSpans:
    """``rows`` as :func:`insert_packed` takes them for a database of ``dialect``; pure."""
    values = _values(rows)
    if dialect != "postgresql":
        return PackedSpans(len(rows), dialect, [tuple(row) for row in values])
    lines = ["\t".join(map(_copy_field, row)) for row in values]
    data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    return PackedSpans(len(rows), dialect, data)


def _copy_field(value: Any) -> str:
    """One value in COPY's text format: NULL as ``\\N``, booleans as t/f, text escaped."""
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    text_value = str(value)
    if "\\" in text_value or "\t" in text_value or "\n" in text_value or "\r" in text_value:
        text_value = (
            text_value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text_value


def insert_packed(session: Session, batches: Sequence[PackedSpans], received_at: datetime) -> None:
    """Insert spans packed by :func:`pack_spans` in bulk, each stamped with ``received_at``;
    a span already stored is kept.

    A span is its ``(trace_id, span_id)``: exporters retry a batch they got no answer for, and
    the copy is skipped (``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL), so it is never
    counted twice. The first copy stored wins.

    On PostgreSQL the COPY text is streamed into a temporary table and moved with one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING``: an ``executemany`` there is one INSERT per row,
    and a multi-row INSERT spends longer in psycopg parsing its placeholders than in the
    database (measured: benchmarks/ingest.py). On SQLite the tuples go to the driver's
    ``executemany``, JSON already text: through the ORM each value passed SQLAlchemy's bind
    processors one by one, which took several times the insert itself.

    Raises:
        ValueError: a batch was packed for another database.
    """
    connection = session.connection()
    dialect = connection.dialect.name
    if any(batch.dialect != dialect for batch in batches):
        raise ValueError(f"spans packed for another database than {dialect}")
    dbapi = connection.dialect.loaded_dbapi
    stamp = _stamp(session, received_at)
    try:
        if dialect == "postgresql":
            _copy_packed(session, batches, stamp)
            return
        raw = connection.connection.driver_connection
        cursor = raw.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(
                _SQLITE_INSERT,
                (
                    (*values, stamp)
                    for batch in batches
                    for values in cast(list[tuple[Any, ...]], batch.data)
                ),
            )
        finally:
            cursor.close()
    except dbapi.Error as exc:
        # The driver's own error, as SQLAlchemy would have raised it (OperationalError stays
        # one: callers tell "the database is away" from "these rows were refused").
        raise DBAPIError.instance(
            "INSERT INTO spans", None, exc, dbapi.Error, dialect=connection.dialect
        ) from exc


def _copy_packed(session: Session, batches: Sequence[PackedSpans], stamp: Any) -> None:
    columns = ", ".join(_COPY_COLUMNS)
    copied = ", ".join(_COPY_COLUMNS[:-1])  # all but received_at
    session.execute(
        text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_INCOMING} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM spans WITH NO DATA"
        )
    )
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f"COPY {_INCOMING} ({copied}) FROM STDIN") as copy:
            for batch in batches:
                copy.write(cast(bytes, batch.data))
    session.execute(
        text(
            f"INSERT INTO spans ({columns}) SELECT {copied}, :stamp FROM {_INCOMING} "
            # In key order: two writers storing the same spans then wait for each other's
            # rows in one order, never each for the other's (a deadlock, one of them refused).
            "ORDER BY trace_id, span_id "
            "ON CONFLICT (trace_id, span_id) DO NOTHING"
        ),
        {"stamp": stamp},
    )
    # ON COMMIT DELETE ROWS empties the scratch table at the commit. A second call in the same
    # transaction moves these rows again, and they are skipped as already stored.


def span_rows(session: Session, query: SpanQuery, *, batch: int) -> Iterator[SpanRow]:
    """The rows matching ``query``, filtered in SQL on the service, version and start index.

    Rows are fetched ``batch`` at a time (a server-side cursor on PostgreSQL) and streamed.
    """
    statement = select(*_ROW_COLUMNS).where(*_filters(query))
    result = session.execute(statement.execution_options(yield_per=batch))
    for rows in result.partitions():
        yield from _rows(rows)


#: Substrings of every key :func:`feedbot.spans.labels.is_label_key` may take beyond its list
#: (a superset: the caller applies the exact test).
_LABEL_WORDS: tuple[str, ...] = (
    "tenant",
    "customer",
    "account",
    "org",
    "region",
    "zone",
    "shard",
    "plan",
)
_LABEL_WORDS += ("tier", "cohort")


def _packed_attributes(dialect: str, keys: Sequence[str]) -> str:
    """SQL for one text per span of its attributes among ``keys`` (and label-like keys):
    ``key US type US value`` joined by RS, types as SQLite's ``json_each`` names them
    (``text``, ``integer``, ``real``, ``true``, ``false``, ``null``, ``array``, ``object``);
    NULL when the span has none. A separator inside a key or value adds an item ``odd`` (one
    part), which the reader refuses. Only those attributes leave the database.
    """
    listed = ", ".join("'" + key.replace("'", "''") + "'" for key in sorted(keys))
    if dialect == "postgresql":
        words = " OR ".join(f"key ILIKE '%{word}%'" for word in _LABEL_WORDS)
        kind = (
            "CASE json_typeof(value) WHEN 'string' THEN 'text' "
            "WHEN 'boolean' THEN value #>> '{}' "
            "WHEN 'number' THEN CASE WHEN (value #>> '{}') ~ '^-?[0-9]+$' "
            "THEN 'integer' ELSE 'real' END ELSE json_typeof(value) END"
        )
        item = f"key || chr(31) || {kind} || chr(31) || coalesce(value #>> '{{}}', '')"
        both = "key || coalesce(value #>> '{}', '')"
        odd = f"max(strpos({both}, chr(30)) + strpos({both}, chr(31))) > 0"
        return (
            f"(SELECT string_agg({item}, chr(30)) || CASE WHEN {odd} THEN chr(30) || 'odd' "
            f"ELSE '' END FROM json_each(spans.attributes) WHERE key IN ({listed}) OR {words})"
        )
    words = " OR ".join(f"key LIKE '%{word}%'" for word in _LABEL_WORDS)
    item = "key || char(31) || type || char(31) || coalesce(atom, '')"
    both = "key || coalesce(atom, '')"
    odd = f"max(instr({both}, char(30)) + instr({both}, char(31))) > 0"
    return (
        f"(SELECT group_concat({item}, char(30)) || CASE WHEN {odd} THEN char(30) || 'odd' "
        f"ELSE '' END FROM json_each(spans.attributes) WHERE key IN ({listed}) OR {words})"
    )


def _packing_tag(keys: Sequence[str]) -> str:
    """What prefixes a text :func:`pack_attributes` wrote for ``keys``: a digest of the keys, the
    label words and the format, so a text packed for another key set is never read as this."""
    spec = "\n".join(["1", *sorted(keys), "", *_LABEL_WORDS])
    return "p" + hashlib.sha1(spec.encode(), usedforsecurity=False).hexdigest()[:8] + ":"


_TAG = _packing_tag(WANTED_KEYS)
_INT64 = (-(2**63), 2**63 - 1)
#: Per attribute key seen at ingest, whether it is packed (keys are few; bounded as labels').
_PACKED_KEYS: dict[str, bool] = {}
_WANTED = frozenset(WANTED_KEYS)
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _packs(key: str) -> bool:
    found = _PACKED_KEYS.get(key)
    if found is None:
        # As LIKE on SQLite (ASCII case folded), a superset of what the reader keeps.
        lower = key.translate(_LOWER)
        found = key in _WANTED or any(word in lower for word in _LABEL_WORDS)
        if len(_PACKED_KEYS) < 65_536:
            _PACKED_KEYS[key] = found
    return found


def pack_attributes(attributes: Mapping[str, Any]) -> str | None:
    """The text :func:`_packed_attributes` builds in SQL for a span (for ``WANTED_KEYS``),
    written at ingest, prefixed by a tag of the keys it was packed for.

    Items are in the attributes' order, types named as SQLite's ``json_each`` names them, a
    separator inside a key or a value marked ``odd`` as the SQL marks it. None (the check packs
    the span in SQL, as before) for what a text column cannot hold or the SQL reads otherwise:
    a NUL character, an integer beyond 64 bits, a value of another type.
    """
    items = []
    known = _PACKED_KEYS
    for key, value in attributes.items():
        packs = known.get(key)
        if packs is None:
            packs = _packs(key)
        if not packs:
            continue
        if type(value) is str:
            kind, atom = "text", value
        elif value is True or value is False:
            kind, atom = ("true", "1") if value else ("false", "0")
        elif isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                return None
            kind, atom = "integer", str(value)
        elif isinstance(value, str):
            kind, atom = "text", value
        elif isinstance(value, float):
            kind, atom = "real", ""
        elif value is None:
            kind, atom = "null", ""
        elif isinstance(value, list):
            kind, atom = "array", ""
        elif isinstance(value, dict):
            kind, atom = "object", ""
        else:
            return None
        items.append(f"{key}{PART_SEP}{kind}{PART_SEP}{atom}")
    packed = ITEM_SEP.join(items)
    if "\x00" in packed:
        return None
    # A separator inside a key or a value: more separators than the items put there.
    if packed.count(PART_SEP) != 2 * len(items) or packed.count(ITEM_SEP) != max(len(items) - 1, 0):
        packed += ITEM_SEP + "odd"
    return _TAG + packed


#: The columns of :func:`span_column_rows`, in order.
COLUMN_KEYS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "route",
    "method",
    "start_ns",
    "duration_ns",
    "instance",
    "is_error",
    "attributes",
    "events",
)


def span_column_rows(
    session: Session, query: SpanQuery, keys: Sequence[str], *, batch: int
) -> Generator[Sequence[Sequence[Any]], None, None]:
    """The rows matching ``query`` as :data:`COLUMN_KEYS`, ``batch`` at a time, lean.

    ``attributes`` is the packed text of :func:`_packed_attributes` (only ``keys`` and label-like
    keys: no row's JSON is decoded here), as :func:`pack_attributes` wrote it at ingest, or
    extracted in SQL for a row stored without it; ``events`` the JSON text of the
    span's events, only where it has some, else NULL.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        events = "CASE WHEN spans.events::text <> '[]' THEN spans.events::text END"
    else:
        events = "CASE WHEN spans.events <> '[]' THEN spans.events END"
    columns = [getattr(Span, key) for key in COLUMN_KEYS[:-2]]
    # Packed at ingest for these keys, else (rows stored before) packed here.
    tag = _packing_tag(keys)
    packed = (
        f"CASE WHEN substr(spans.packed_attributes, 1, {len(tag)}) = '{tag}' "
        f"THEN nullif(substr(spans.packed_attributes, {len(tag) + 1}), '') "
        f"ELSE {_packed_attributes(dialect, keys)} END"
    )
    statement = select(
        *columns,
        literal_column(packed),
        literal_column(events),
    ).where(*_filters(query))
    # Not the ORM, nor Core's Row around each tuple: the driver's tuples as fetched (the
    # per-row objects cost more than the columns built from them: a third of the fetch). The
    # statement is compiled as Core would send it; PostgreSQL streams it from a server-side
    # cursor in the session's transaction.
    connection = session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    raw: Any = connection.connection.driver_connection
    if dialect == "postgresql":
        cursor = raw.cursor(name="feedbot_span_columns")
        params: Any = compiled.params
    else:
        cursor = raw.cursor()
        params = tuple(compiled.params[key] for key in compiled.positiontup or ())
    try:
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(batch):
            yield rows
    except connection.dialect.loaded_dbapi.Error as error:
        # As Core raises it (the caller reads the rows instead of a refused JSON, say).
        raise DBAPIError.instance(
            str(compiled), params, error, connection.dialect.loaded_dbapi.Error
        ) from error
    finally:
        cursor.close()  # a reader that stops early closes PostgreSQL's server-side cursor


def version_counts(
    session: Session, service: str, start: datetime, end: datetime, environment: str | None
) -> dict[str, int]:
    """Spans per version of ``service`` starting in ``[start, end)`` (versioned spans only).

    Spans that name no environment count for every environment, as in :func:`span_rows`.
    """
    statement = version_counts_statement(service, start, end, environment)
    return {str(version): int(n) for version, n in session.execute(statement)}


def version_counts_statement(
    service: str, start: datetime, end: datetime, environment: str | None
) -> Select[str | None, int]:
    """The statement of :func:`version_counts` (a check's baseline search), to run or explain.

    It reads a range of ``ix_spans_service_start_ns_version`` alone.
    """
    where = _versioned_in(service, start, end, environment)
    return select(Span.version, func.count()).where(*where).group_by(Span.version)


def _versioned_in(
    service: str, start: datetime, end: datetime, environment: str | None
) -> list[Any]:
    """The service's versioned spans in ``[start, end)`` (and the environment, or none named):
    one range of ``ix_spans_service_start_ns_version``."""
    where = [
        Span.service == service,
        Span.version.is_not(None),
        Span.version != "",
        Span.start_ns >= to_ns(start),
        Span.start_ns < to_ns(end),
    ]
    if environment is not None:
        where.append(or_(Span.environment == environment, Span.environment.is_(None)))
    return where


def version_spans(
    session: Session, service: str, start: datetime, end: datetime, environment: str | None
) -> dict[str, tuple[int, int, int]]:
    """First and last span start (ns) and spans per version of ``service`` in ``[start, end)``.

    Reads the same index range as :func:`version_counts` (index-only): where each version
    served in a window, without reading a span.
    """
    where = _versioned_in(service, start, end, environment)
    statement = (
        select(Span.version, func.min(Span.start_ns), func.max(Span.start_ns), func.count())
        .where(*where)
        .group_by(Span.version)
    )
    return {
        str(version): (int(first), int(last), int(n))
        for version, first, last, n in session.execute(statement)
    }


def service_traffic(
    session: Session, service: str, start: datetime, end: datetime, environment: str | None
) -> tuple[int, int, int, int] | None:
    """First and last span start (ns), spans and entry spans (SERVER, CONSUMER) of ``service``
    in ``[start, end)``, every version together; None when it has none.

    One aggregate over the range :func:`version_counts` reads; the kind is read from each row
    (it is not in that index), which costs one row look-up per span of the window, far less than
    the check's own read of those spans.
    """
    where = _versioned_in(service, start, end, environment)
    entry = case((Span.kind.in_(ENTRY_KINDS), 1))
    statement = select(
        func.min(Span.start_ns), func.max(Span.start_ns), func.count(), func.count(entry)
    ).where(*where)
    first, last, spans, entries = session.execute(statement).one()
    if not spans:
        return None
    return int(first), int(last), int(spans), int(entries)


def environment_version_counts(
    session: Session, service: str, start: datetime, end: datetime
) -> dict[tuple[str | None, str | None], int]:
    """Spans of ``service`` starting in ``[start, end)`` per (environment, version)."""
    where = [Span.service == service, Span.start_ns >= to_ns(start), Span.start_ns < to_ns(end)]
    statement = (
        select(Span.environment, Span.version, func.count())
        .where(*where)
        .group_by(Span.environment, Span.version)
    )
    return {
        (env or None, version or None): int(n) for env, version, n in session.execute(statement)
    }


def prune_received(session: Session, older_than: datetime, *, limit: int) -> int:
    """Delete at most ``limit`` spans received before ``older_than``; how many were.

    Bounded so each transaction holds SQLite's write lock (and ingest) briefly: callers commit
    and call again while a full batch went.
    """
    return _delete_some(session, Span.received_at < older_than, limit, oldest_first=False)


def cap_cut(session: Session, max_spans: int) -> int | None:
    """The newest span id to delete to keep ``max_spans``, or None when there are no more.

    Ids grow with arrival, so ``max(id) - min(id) + 1`` bounds the count from above: at or
    below the cap nothing is read but the two ends of the key. Above it, the id ``max_spans``
    places below the newest is found on the key's index.
    """
    # Two statements: SQLite reads min() or max() alone at one end of the key, both together
    # by a scan.
    low, high = session.scalar(select(func.min(Span.id))), session.scalar(select(func.max(Span.id)))
    if low is None or high is None or high - low + 1 <= max_spans:
        return None
    return session.scalar(select(Span.id).order_by(Span.id.desc()).offset(max_spans).limit(1))


def prune_ids(session: Session, cut: int, *, limit: int) -> int:
    """Delete at most ``limit`` spans of id ``cut`` or below (oldest first); how many were."""
    return _delete_some(session, Span.id <= cut, limit)


def _delete_some(
    session: Session, where: ColumnElement[bool], limit: int, *, oldest_first: bool = True
) -> int:
    # Unordered, a filter on received_at reads its index; ordered by id, SQLite walks the table.
    chosen = select(Span.id).where(where).limit(limit)
    if oldest_first:
        chosen = chosen.order_by(Span.id)
    # The ids first, then a delete by key: as one `id IN (subquery)` PostgreSQL may plan a hash
    # join that scans the whole table for every batch.
    ids = list(session.scalars(chosen))
    if not ids:
        return 0
    statement = delete(Span).where(Span.id.in_(ids))
    return _rowcount(session.execute(statement.execution_options(synchronize_session=False)))


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))


def _filters(query: SpanQuery) -> list[ColumnElement[bool]]:
    where = [
        Span.service == query.service,
        Span.version == query.version,
        Span.start_ns >= to_ns(query.start),
        Span.start_ns < to_ns(query.end),
    ]
    if query.environment is not None:
        # Spans from services that do not set deployment.environment belong to every
        # environment: a release must not look unused because the SDK left the attribute out.
        where.append(or_(Span.environment == query.environment, Span.environment.is_(None)))
    if query.span_name is not None:
        where.append(Span.name == query.span_name)
    return where


def _rows(batch: Sequence[Row[Any]]) -> Iterator[SpanRow]:
    """Database rows as span rows (the columns are :data:`SpanRow`'s keys, in order)."""
    for row in batch:
        yield cast(SpanRow, dict(zip(_ROW_KEYS, row, strict=True)))
