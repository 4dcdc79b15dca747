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
from itertools import repeat
from operator import eq, itemgetter
from typing import Any, cast

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
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
from feedbot.spans.rows import Columns, SpanRow, columns_of
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


@dataclass(frozen=True)
class PackedSpans:
    """Decoded spans ready for :func:`insert_packed`, built where they were decoded (a decoding
    process hands over one bytes object or a list of tuples: cheap to pass, no dict per span).

    For PostgreSQL ``data`` is the ``COPY`` text of their columns but ``received_at``, its
    lines sorted by (trace id, span id), a span sent twice in the batch once (the first); for
    SQLite, one tuple per span (JSON as text) of the same columns. ``count`` is the spans
    received, each counted.
    """

    count: int
    dialect: str
    data: bytes | list[tuple[Any, ...]]


def pack_spans(rows: Sequence[SpanRow], dialect: str) -> PackedSpans:
    """``rows`` as :func:`insert_packed` takes them for a database of ``dialect``; pure."""
    return pack_columns(columns_of(rows), dialect)


#: Characters of a span's COPY line before its first tab but one: its trace id (32 hex
#: digits), a tab and its span id (16), the key a COPY into ``spans`` is sorted by.
_KEY_CHARS = 32 + 1 + 16
_KEY = itemgetter(slice(0, _KEY_CHARS))


def pack_columns(columns: Columns, dialect: str) -> PackedSpans:
    """Spans decoded as columns, as :func:`insert_packed` takes them for ``dialect``; pure.

    Each column is made text at once (JSON by orjson, one escaping pass over a column's texts
    together), not value by value. For PostgreSQL the lines are sorted by (trace id, span id)
    and only the first of a span sent twice in the batch is kept (see :func:`insert_packed`).
    """
    count = len(columns["trace_id"])
    dumps = _dumps
    attributes = columns["attributes"]
    texts: dict[str, list[Any]] = {
        "attributes": [dumps(value) for value in attributes],
        "events": [dumps(value) if value else "[]" for value in columns["events"]],
    }
    packed = [pack_attributes(value) for value in attributes]
    if dialect != "postgresql":
        values = [texts.get(key, columns[key]) for key in _ROW_KEYS]
        return PackedSpans(count, dialect, list(zip(*values, packed, strict=True)))
    fields = []
    for key in _ROW_KEYS:
        column = texts.get(key, columns[key])
        if key in _INT_COLUMNS:
            fields.append(list(map(str, column)))
        elif key in _BOOL_COLUMNS:
            fields.append(["t" if value else "f" for value in column])
        else:
            fields.append(_copy_texts(column))
    fields.append(_copy_texts(packed))
    lines = list(map("\t".join, zip(*fields, strict=True)))
    lines.sort(key=_KEY)  # stable: the first of a span sent twice stays first
    keys = set(map(_KEY, lines))
    if len(keys) < len(lines):
        lines = _first_of_each(lines)
    data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    return PackedSpans(count, dialect, data)


_INT_COLUMNS = frozenset(
    key for key in _ROW_KEYS if isinstance(Span.__table__.c[key].type, BigInteger)
)
_BOOL_COLUMNS = frozenset(
    key for key in _ROW_KEYS if isinstance(Span.__table__.c[key].type, Boolean)
)
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _first_of_each(lines: Sequence[Any]) -> list[Any]:
    """Of COPY lines (text or bytes) sorted by :data:`_KEY`, the first of each span.

    A span is its trace and span id, the text before the second tab. For the ids OTLP allows
    (32 and 16 hex digits) that is :data:`_KEY`, and the first of each is picked by a dict in C;
    any other ids are compared one line at a time.
    """
    text = isinstance(lines[0], str)
    tab: Any = "\t" if text else ord("\t")
    try:
        exact = all(
            sum(map(eq, map(itemgetter(at), lines), repeat(tab))) == len(lines)
            for at in (_KEY_CHARS - 17, _KEY_CHARS)
        )
    except IndexError:
        exact = False
    if exact:  # the last of each key in reverse is its first; the order is the sort's
        firsts = dict(zip(map(_KEY, reversed(lines)), reversed(lines), strict=True))
        kept = list(firsts.values())
        kept.reverse()
        return kept
    separator: Any = "\t" if text else b"\t"
    kept, seen = [], set()
    for line in lines:
        key = line[: line.find(separator, line.find(separator) + 1)]
        if key not in seen:
            seen.add(key)
            kept.append(line)
    return kept


def _copy_texts(values: Sequence[str | None]) -> list[str]:
    """Texts in COPY's text format, NULL as ``\\N``: the column's texts joined, escaped in one
    pass when any needs it, and split again (a text with a NUL in it, which none stored has,
    is escaped alone)."""
    present = [value for value in values if value is not None]
    blob = "\x00".join(present)
    if "\\" in blob or "\t" in blob or "\n" in blob or "\r" in blob:
        if blob.count("\x00") == max(len(present) - 1, 0):
            present = blob.translate(_COPY_ESCAPES).split("\x00")
        else:
            present = [value.translate(_COPY_ESCAPES) for value in present]
    if len(present) == len(values):
        return present
    escaped = iter(present)
    return ["\\N" if value is None else next(escaped) for value in values]


def insert_packed(session: Session, batches: Sequence[PackedSpans], received_at: datetime) -> None:
    """Insert spans packed by :func:`pack_spans` in bulk, each stamped with ``received_at``;
    a span already stored is kept.

    A span is its ``(trace_id, span_id)``: exporters retry a batch they got no answer for, and
    the copy is skipped (``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL), so it is never
    counted twice. The first copy stored wins.

    On PostgreSQL the batches' COPY lines are merged in key order (a span twice among them
    kept once, the first) and COPYed straight into ``spans`` inside a savepoint. When a span
    is stored already (a retried batch), the unique index refuses the COPY: it is undone to
    the savepoint and the same text goes through a temporary table, moved with one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (the staging path, which writes every row twice
    and checks each for a conflict: it cost the server about half again as much per span as
    the straight COPY, benchmarks/ingest.py). Two writers storing the same spans insert them in
    one order, so one waits for the other and never each for the other (a deadlock). An
    ``executemany`` there is one INSERT per row, and a multi-row INSERT spends longer in
    psycopg parsing its placeholders than in the database. On SQLite the tuples go to the driver's
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


#: The SQLSTATE of a unique violation: a span of the COPY is stored already.
_UNIQUE_VIOLATION = "23505"


def _copy_packed(session: Session, batches: Sequence[PackedSpans], stamp: datetime) -> None:
    """COPY the spans straight into ``spans`` inside a savepoint; when one is stored already
    (a retried batch), undo that and take the staging path (:func:`_copy_staged`)."""
    suffix = f"\t{stamp.isoformat()}\n".encode()
    data = _stamped(batches, suffix)
    if not data:
        return
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute("SAVEPOINT feedbot_spans_copy")
        try:
            with cursor.copy(f"COPY spans ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
                copy.write(data)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT feedbot_spans_copy")
            cursor.execute("RELEASE SAVEPOINT feedbot_spans_copy")
            _copy_staged(session, data)
            return
        cursor.execute("RELEASE SAVEPOINT feedbot_spans_copy")


def _stamped(batches: Sequence[PackedSpans], suffix: bytes) -> bytes:
    """The COPY lines of ``batches``, sorted by key, the first of each span only, each ending
    with ``suffix`` (the ``received_at`` field and the newline)."""
    if len(batches) == 1:  # sorted already
        return cast(bytes, batches[0].data).replace(b"\n", suffix)
    lines: list[bytes] = []
    for batch in batches:
        lines += cast(bytes, batch.data).split(b"\n")[:-1]
    lines.sort(key=_KEY)  # each batch is sorted: Timsort merges the runs
    if len(set(map(_KEY, lines))) < len(lines):
        lines = _first_of_each(lines)
    return suffix.join(lines) + suffix if lines else b""


def _copy_staged(session: Session, data: bytes) -> None:
    """The staging path: the COPY text into a temporary table, moved with one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING``, so the spans stored already are skipped."""
    columns = ", ".join(_COPY_COLUMNS)
    session.execute(
        text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_INCOMING} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM spans WITH NO DATA"
        )
    )
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f"COPY {_INCOMING} ({columns}) FROM STDIN") as copy:
            copy.write(data)
    session.execute(
        text(
            f"INSERT INTO spans ({columns}) SELECT {columns} FROM {_INCOMING} "
            # In key order, as the COPY's: two writers storing the same spans then wait for
            # each other's rows in one order, never each for the other's (a deadlock).
            "ORDER BY trace_id, span_id "
            "ON CONFLICT (trace_id, span_id) DO NOTHING"
        )
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
