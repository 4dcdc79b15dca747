"""The default trace backend: spans sent to feedbot over OTLP/HTTP, kept in its own database.

Differs from the other backends in that feedbot is the store: :meth:`EmbeddedBackend.ingest`
writes what ``POST /v1/traces`` receives, :meth:`EmbeddedBackend.prune` enforces
``traces.retention``. :meth:`EmbeddedBackend.collect` filters in SQL (on the service, version
and start index) and streams the matching rows through :mod:`feedbot.spans.aggregate`. The
SQL statements live in :mod:`feedbot.store.span_queries`; this module builds none.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from datetime import datetime
from itertools import chain

import pyarrow as pa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.base import Traffic
from feedbot.clock import Clock, SystemClock
from feedbot.errors import BackendUnavailable
from feedbot.spans.aggregate import Aggregator
from feedbot.spans.aggregate_columns import fold
from feedbot.spans.model import ReleaseData, SpanQuery, from_ns
from feedbot.spans.otlp_http import decode_request, decode_request_columns
from feedbot.spans.otlp_scan import Unusual
from feedbot.spans.rows import SpanRow
from feedbot.spans.stored_columns import WANTED_KEYS, stored_columns
from feedbot.store import span_queries
from feedbot.store.db import UNAVAILABLE

#: The largest request accepted after decompression (the OTLP spec's recommended limit).
MAX_DECODED_BYTES = 64 * 1024 * 1024
#: Rows fetched per round trip while streaming (a server-side cursor on PostgreSQL).
STREAM_BATCH = 5000
#: Spans deleted per transaction by :meth:`EmbeddedBackend.prune`, and the pause between two.
PRUNE_BATCH = 2000
PRUNE_PAUSE = 0.005
#: The most spans :class:`SpanWriter` stores in one transaction.
WRITE_GROUP = 16_384
#: :class:`SpanWriter`'s threads on PostgreSQL, each on its own connection: one transaction's
#: commit waits on the disk (about 40% of its time, benchmarks/ingest.py) while the other's
#: COPY runs. SQLite has one write lock, so one writer there.
POSTGRESQL_WRITERS = 2
#: Spans per batch read as columns (a batch's rows are held while it becomes columns).
COLUMN_BATCH = 20_000

log = logging.getLogger(__name__)


class EmbeddedBackend:
    """Spans stored by feedbot itself.

    Args:
        sessions: the store's session factory.
        clock: stamps ``received_at`` (the system clock unless a test fixes it).
    """

    name = "embedded"

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock | None = None) -> None:
        self._sessions = sessions
        self._clock = clock or SystemClock()

    def close(self) -> None:
        """Close the pooled connections of the engine its sessions are bound to (a later
        session opens new ones)."""
        engine = self._sessions.kw.get("bind")
        if engine is not None:
            engine.dispose()

    def ingest(
        self,
        body: bytes,
        content_type: str,
        content_encoding: str | None,
        *,
        max_bytes: int = MAX_DECODED_BYTES,
        max_spans: int | None = None,
    ) -> int:
        """Decode an OTLP/HTTP export and store its spans in one transaction.

        Args:
            body: the request body as received (possibly gzip-compressed).
            content_type: ``application/x-protobuf`` or ``application/json``.
            content_encoding: ``gzip``, ``identity`` or None.
            max_bytes: the largest body accepted after decompression.
            max_spans: the most spans accepted in one request (413 beyond); None for no limit.

        Returns:
            The number of spans accepted. A span already stored (the same trace and span id, as
            an exporter's retry sends it) is accepted and not stored again.

        Raises:
            WebhookRejected: the body is not a decodable export (see ``otlp_http.decode_request``).
            BackendUnavailable: the database refused the write.
        """
        rows = self.decode(
            body, content_type, content_encoding, max_bytes=max_bytes, max_spans=max_spans
        )
        self.store([rows])
        return len(rows)

    def decode(
        self,
        body: bytes,
        content_type: str,
        content_encoding: str | None,
        *,
        max_bytes: int = MAX_DECODED_BYTES,
        max_spans: int | None = None,
    ) -> list[SpanRow]:
        """The rows of an OTLP/HTTP export, as :meth:`ingest` stores them; pure, no I/O.

        Raises:
            WebhookRejected: the body is not a decodable export (see ``otlp_http.decode_request``).
        """
        return decode_request(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_bytes=max_bytes,
            max_spans=max_spans,
        )

    @property
    def dialect(self) -> str:
        """The name of the store's database (``sqlite``, ``postgresql``)."""
        return str(self._sessions.kw["bind"].dialect.name)

    def store_packed(self, batches: Sequence[span_queries.PackedSpans]) -> None:
        """Store spans packed by :func:`decode_packed` in one transaction (all or none).

        Raises:
            BackendUnavailable: the database refused the write.
        """
        count = sum(batch.count for batch in batches)
        if not count:
            return
        received_at = self._clock.now()
        with _unavailable(f"store {count} spans"), self._sessions.begin() as session:
            span_queries.insert_packed(session, batches, received_at)

    def store(self, batches: Sequence[Sequence[SpanRow]]) -> None:
        """Store the rows of several decoded exports in one transaction (all or none).

        Raises:
            BackendUnavailable: the database refused the write.
        """
        count = sum(len(rows) for rows in batches)
        if not count:
            return
        received_at = self._clock.now()
        with _unavailable(f"store {count} spans"), self._sessions.begin() as session:
            span_queries.insert_spans(session, chain.from_iterable(batches), received_at)

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Fold the matching spans into the aggregator, ``COLUMN_BATCH`` at a time as columns.

        Only the columns and attributes the analysis reads leave the database
        (:func:`~feedbot.store.span_queries.span_column_rows`); each batch becomes Arrow and
        numpy columns (:mod:`feedbot.spans.stored_columns`) folded at once while a thread
        fetches the next, so memory is the answer's plus two batches, whatever the window
        holds. When a span is one the columnar reader does not read as the row path does, the
        whole query is read again as rows.
        The answer is :meth:`collect_rows`' but for which spans a group of more than
        :data:`~feedbot.spans.critical.SAMPLE` keeps for its critical path (closed traces are
        offered in another order), as for OTLP files read as columns.

        Python's cyclic garbage collector is paused meanwhile (:func:`_collector_paused`).
        """
        try:
            with self._sessions.begin() as session, _collector_paused():
                # The unique index on (trace_id, span_id) stores each span once.
                aggregator = Aggregator(warmup=query.warmup, unique=True)
                batches = span_queries.span_column_rows(
                    session, query, WANTED_KEYS, batch=COLUMN_BATCH
                )
                # The next batch is fetched while this one is folded: the driver lets go of
                # the GIL while the database works (PostgreSQL's server, SQLite's steps).
                with closing(batches), ThreadPoolExecutor(1, "span-fetch") as pool:
                    ahead = pool.submit(next, batches, None)
                    while (batch := ahead.result()) is not None:
                        ahead = pool.submit(next, batches, None)
                        fold(aggregator, stored_columns(batch))
                return aggregator.result()
        except (Unusual, pa.ArrowInvalid, SQLAlchemyError) as exc:
            # An odd span (or JSON SQLite's reader refuses): the row path reads anything stored.
            log.debug("embedded: reading %s as rows (%r)", query, exc)
        return self.collect_rows(query)

    def collect_rows(self, query: SpanQuery) -> ReleaseData:
        """Stream the matching rows through the aggregator in batches of ``STREAM_BATCH``."""
        aggregator = Aggregator(warmup=query.warmup)
        with _unavailable(f"read spans of {query}"), self._sessions.begin() as session:
            aggregator.add_many(span_queries.span_rows(session, query, batch=STREAM_BATCH))
        return aggregator.result()

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """Spans per ``service.version`` of ``service`` in ``[start, end)``, counted in SQL.

        Raises:
            BackendUnavailable: the database refused the query.
        """
        with _unavailable("count versions"), self._sessions.begin() as session:
            return span_queries.version_counts(session, service, start, end, environment)

    def serving(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, tuple[datetime, datetime, int]]:
        """First and last span start and spans per version in ``[start, end)``, from the index.

        Raises:
            BackendUnavailable: the database refused the query.
        """
        with _unavailable("date versions"), self._sessions.begin() as session:
            seen = span_queries.version_spans(session, service, start, end, environment)
        return {v: (from_ns(first), from_ns(last), n) for v, (first, last, n) in seen.items()}

    def traffic(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> Traffic | None:
        """The service's spans in ``[start, end)``, every version together, in one SQL count.

        Raises:
            BackendUnavailable: the database refused the query.
        """
        with _unavailable("count requests"), self._sessions.begin() as session:
            seen = span_queries.service_traffic(session, service, start, end, environment)
        if seen is None:
            return None
        first, last, spans, entries = seen
        return Traffic(from_ns(first), from_ns(last), spans, entries)

    def census(
        self, service: str, start: datetime, end: datetime
    ) -> dict[tuple[str | None, str | None], int]:
        """Spans of ``service`` in ``[start, end)`` per (environment, version), counted in SQL.

        Raises:
            BackendUnavailable: the database refused the query.
        """
        with _unavailable("survey spans"), self._sessions.begin() as session:
            return span_queries.environment_version_counts(session, service, start, end)

    def prune(self, older_than: datetime, *, max_spans: int | None = None) -> int:
        """Delete spans received before ``older_than``, then the oldest beyond ``max_spans``.

        Deletes ``PRUNE_BATCH`` spans per transaction, pausing ``PRUNE_PAUSE`` between them, so
        ingest is not held behind one long delete (SQLite has one write lock). Below the cap
        the cap step reads only the two ends of the key.

        Returns:
            How many spans were deleted.

        Raises:
            BackendUnavailable: the database refused the delete.
        """
        with _unavailable("prune spans"):
            deleted = self._prune_batches(
                lambda session: span_queries.prune_received(session, older_than, limit=PRUNE_BATCH)
            )
            if max_spans is not None:
                with self._sessions.begin() as session:
                    cut = span_queries.cap_cut(session, max_spans)
                if cut is not None:
                    deleted += self._prune_batches(
                        lambda session: span_queries.prune_ids(session, cut, limit=PRUNE_BATCH)
                    )
        return deleted

    def _prune_batches(self, step: Callable[[Session], int]) -> int:
        deleted = 0
        while True:
            with self._sessions.begin() as session:
                done = step(session)
            deleted += done
            if done < PRUNE_BATCH:
                return deleted
            time.sleep(PRUNE_PAUSE)


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """A database error in the block becomes :class:`BackendUnavailable` saying what failed."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise BackendUnavailable(f"embedded: could not {what}: {exc}") from exc


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off, then on again if it was on.

    A collect allocates a tuple per row fetched and many short-lived objects per batch, none
    in a cycle; each few hundred allocations start a collection that walks every young object,
    and the growing survivors trigger full ones: about a fifth of a million-span check's CPU
    time (benchmarks.store_scale). Reference counting still frees everything as it goes. The
    switch is process-wide: another thread's cycles wait for the collect to end (a second
    collect that finds it off leaves it to the first to turn back on).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode_packed(
    body: bytes,
    *,
    content_type: str,
    content_encoding: str | None,
    dialect: str,
    max_bytes: int = MAX_DECODED_BYTES,
    max_spans: int | None = None,
) -> span_queries.PackedSpans:
    """Decode an OTLP/HTTP export into columns and pack them for a database of ``dialect``;
    pure, for a decoding process (what it returns is one bytes object or a list of tuples,
    cheap to pass).

    Raises:
        WebhookRejected: the body is not a decodable export (see ``otlp_http.decode_request``).
    """
    columns = decode_request_columns(
        body,
        content_type=content_type,
        content_encoding=content_encoding,
        max_bytes=max_bytes,
        max_spans=max_spans,
    )
    return span_queries.pack_columns(columns, dialect)


class SpanWriter:
    """Stores what requests decoded from one thread, the batches waiting together in one
    transaction (a group commit).

    Eight exporters writing through eight threads wait for each other on SQLite's one write
    lock (its busy handler sleeps between tries: seconds of p99) and pay a commit each; a
    writer takes whatever batches are waiting, up to ``max_group`` spans, and commits them at
    once. A request is answered only after its spans are committed, so a 200 still means stored.
    On PostgreSQL :data:`POSTGRESQL_WRITERS` writers do so side by side, each on its own
    connection (a span sent to both is stored once: see ``span_queries.insert_packed``).

    Args:
        backend: the store.
        max_group: the most spans written in one transaction (a batch is never split).
        writers: threads writing at once; by default one on SQLite, and
            :data:`POSTGRESQL_WRITERS` on PostgreSQL.
    """

    def __init__(
        self, backend: EmbeddedBackend, *, max_group: int = WRITE_GROUP, writers: int = 0
    ) -> None:
        self._backend = backend
        self._max_group = max_group
        if not writers:
            writers = POSTGRESQL_WRITERS if backend.dialect == "postgresql" else 1
        self.writers = writers
        self._queue: queue.SimpleQueue[tuple[span_queries.PackedSpans, Future[int]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def submit(self, rows: span_queries.PackedSpans) -> Future[int]:
        """Queue ``rows`` (packed by :func:`decode_packed`) to be stored; the future gives their
        count once they are committed, or raises :class:`~feedbot.errors.BackendUnavailable`."""
        done: Future[int] = Future()
        if not rows.count:
            done.set_result(0)
            return done
        with self._lock:
            while len(self._threads) < self.writers:
                name = f"span-writer-{len(self._threads) + 1}"
                thread = threading.Thread(target=self._run, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        self._queue.put((rows, done))
        return done

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            spans = group[0][0].count
            while spans < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                group.append(item)
                spans += item[0].count
            self._write(group)

    def _write(self, group: list[tuple[span_queries.PackedSpans, Future[int]]]) -> None:
        try:
            self._backend.store_packed([rows for rows, _ in group])
        except Exception as exc:  # every waiting request hears of it
            if len(group) > 1 and not isinstance(exc.__cause__, UNAVAILABLE):
                # Not the database gone but something in one batch: the others are stored,
                # each on its own, and only that one's request hears of it.
                for item in group:
                    self._write([item])
                return
            for _, done in group:
                with suppress(InvalidStateError):  # a request that went away had its try
                    done.set_exception(exc)
            return
        for rows, done in group:
            with suppress(InvalidStateError):
                done.set_result(rows.count)
