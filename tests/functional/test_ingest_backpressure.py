"""Ingest under load: past its cap of exports in flight the receiver answers 503 with
Retry-After without reading the body; the writer stores what waits together, and one batch the
database refuses fails only its own request.

The store is held busy for real: another connection holds SQLite's write lock, or an EXCLUSIVE
lock on PostgreSQL's ``spans`` table, so the writer waits inside its transaction.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, delete, func, select, text

from feedbot.backends.embedded import EmbeddedBackend, SpanWriter
from feedbot.errors import BackendUnavailable
from feedbot.spans.otlp import decode_protobuf
from feedbot.store.db import make_sessions
from feedbot.store.span_queries import PackedSpans, pack_spans
from feedbot.store.spans import Span
from feedbot.web.otlp import otlp_router
from tests.fakes.sdk_spans import protobuf, recording
from tests.servers import AppServer

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def service(engine: Engine) -> Iterator[str]:
    """A service name no other test uses; its spans are deleted afterwards."""
    name = f"pressure-{uuid.uuid4().hex[:8]}"
    yield name
    with make_sessions(engine).begin() as session:
        session.execute(delete(Span).where(Span.service == name))


def export(service: str, spans: int) -> bytes:
    """An ExportTraceServiceRequest of ``spans`` spans recorded by the real SDK."""
    with recording({"service.name": service}, "pressure") as (tracer, finished):
        for i in range(spans):
            tracer.start_span(f"op-{i}", attributes={"http.route": "/vaults"}).end()
    return protobuf(finished)


@contextmanager
def store_held(engine: Engine) -> Iterator[None]:
    """The spans table cannot be written by anyone else until the block ends."""
    with engine.connect() as connection:
        transaction = connection.begin()  # SQLite: BEGIN IMMEDIATE takes the write lock
        if connection.dialect.name == "postgresql":
            connection.execute(text("LOCK TABLE spans IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            transaction.rollback()


def stored(engine: Engine, service: str) -> int:
    with make_sessions(engine).begin() as session:
        return int(
            session.scalar(select(func.count()).select_from(Span).where(Span.service == service))
            or 0
        )


def test_an_export_past_the_cap_in_flight_is_503_unread_and_stored_once_on_retry(
    engine: Engine, service: str
) -> None:
    app = FastAPI()
    app.include_router(otlp_router(EmbeddedBackend(make_sessions(engine)), max_in_flight=1))
    first, second = export(service, 3), export(service, 2)
    answers: list[httpx.Response] = []
    with AppServer(app) as server, store_held(engine):

        def send_first() -> None:  # as an exporter does: again after a 503 (a probe's turn)
            while True:
                answer = httpx.post(
                    f"{server.url}/v1/traces", content=first, headers=PROTOBUF, timeout=30
                )
                if answer.status_code != 503:
                    answers.append(answer)
                    return
                time.sleep(0.01)

        sender = threading.Thread(target=send_first)
        sender.start()
        # An empty export is answered at once unless another is in flight: wait for that.
        deadline = time.monotonic() + 30
        while True:
            probe = httpx.post(f"{server.url}/v1/traces", content=b"", headers=PROTOBUF)
            if probe.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert probe.status_code == 503, [(a.status_code, a.text) for a in answers]
        busy = httpx.post(f"{server.url}/v1/traces", content=second, headers=PROTOBUF)
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "1"
        assert "in flight" in busy.json()["error"]
        assert not answers  # the first waits for the store, not refused
    sender.join(30)
    assert [answer.status_code for answer in answers] == [200]
    assert stored(engine, service) == 3  # the refused export was not stored
    with AppServer(app) as server:
        retried = httpx.post(f"{server.url}/v1/traces", content=second, headers=PROTOBUF)
        again = httpx.post(f"{server.url}/v1/traces", content=second, headers=PROTOBUF)
    assert (retried.status_code, again.status_code) == (200, 200)
    assert stored(engine, service) == 5


def _rows(engine: Engine, service: str, count: int, *, broken: bool = False) -> PackedSpans:
    rows = decode_protobuf(export(service, count))
    if broken:  # a value the database refuses: trace_id is NOT NULL
        rows[0]["trace_id"] = None  # type: ignore[typeddict-item]
    return pack_spans(rows, engine.dialect.name)


def test_batches_waiting_together_are_one_transaction_and_a_refused_one_fails_alone(
    engine: Engine, service: str
) -> None:
    writer = SpanWriter(EmbeddedBackend(make_sessions(engine)))
    with store_held(engine):
        held = writer.submit(_rows(engine, service, 2))
        time.sleep(0.3)  # the writer takes the first batch and waits for the lock
        good, bad, later = (
            writer.submit(_rows(engine, service, 3)),
            writer.submit(_rows(engine, service, 1, broken=True)),
            writer.submit(_rows(engine, service, 4)),
        )
        assert not held.done()
    assert held.result(30) == 2
    assert good.result(30) == 3 and later.result(30) == 4
    with pytest.raises(BackendUnavailable):
        bad.result(30)
    assert stored(engine, service) == 2 + 3 + 4


def test_writers_storing_the_same_spans_at_once_store_them_once_and_refuse_none(
    engine: Engine, service: str
) -> None:
    # An exporter's retry can reach one writer while its first try is with another, in another
    # order (another batch it joined). Both wait for the store, then write at once.
    rows = decode_protobuf(export(service, 200))
    forward = pack_spans(rows, engine.dialect.name)
    backward = pack_spans(rows[::-1], engine.dialect.name)
    writer = SpanWriter(EmbeddedBackend(make_sessions(engine)), max_group=200)
    assert writer.writers == (2 if engine.dialect.name == "postgresql" else 1)
    with store_held(engine):
        first, second = writer.submit(forward), writer.submit(backward)
        time.sleep(0.3)  # each writer takes one and waits for the lock
        assert not first.done() and not second.done()
    assert (first.result(30), second.result(30)) == (200, 200)
    assert stored(engine, service) == 200


def test_a_decoding_process_refuses_and_stores_as_a_thread_does(
    engine: Engine, service: str
) -> None:
    app = FastAPI()
    backend = EmbeddedBackend(make_sessions(engine))
    before = children()
    app.include_router(otlp_router(backend, max_spans=4, decode_processes=1))
    with AppServer(app) as server:
        url = f"{server.url}/v1/traces"
        too_many = httpx.post(url, content=export(service, 5), headers=PROTOBUF, timeout=60)
        broken = httpx.post(url, content=b"\x0a\x05\x0a", headers=PROTOBUF, timeout=60)
        accepted = httpx.post(url, content=export(service, 4), headers=PROTOBUF, timeout=60)
    # The app's shutdown (uvicorn's lifespan in serve; AppServer runs none) ends the decoder.
    assert children() - before
    for handler in app.router.on_shutdown:
        handler()
    assert children() - before <= tracker()
    assert too_many.status_code == 413 and "more than 4 spans" in too_many.json()["error"]
    assert broken.status_code == 400 and "ExportTraceServiceRequest" in broken.json()["error"]
    assert accepted.status_code == 200
    assert stored(engine, service) == 4


def children() -> set[int]:
    """This process's child processes."""
    found = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def tracker() -> set[int]:
    """multiprocessing's resource tracker: one per parent process, alive as long as it."""
    return {
        pid
        for pid in children()
        if "resource_tracker" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    }
