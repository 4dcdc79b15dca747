"""A small bookshop with stock OpenTelemetry auto-instrumentation, for end-to-end audits.

Unlike ``examples/vault`` it has no span of its own: every span comes from the FastAPI, ASGI,
SQLAlchemy (psycopg on PostgreSQL) and httpx instrumentations, exported by the SDK's OTLP/HTTP
exporter, so its spans have the shapes teams really send: ``SELECT <db>`` statements, HTTP
client spans named ``GET`` with the id in ``url.full``, and a plain ASGI mount (``/covers/…``)
whose server spans have no ``http.route``. Two versions:

- ``GET /books/{book_id}``: 1.0 reads the book and its average rating in one joined query; 2.0
  reads the reviews' ids, then each review's stars with its own query (an N+1): slower.
- ``POST /orders``: both raise ``OutOfStock`` when more than 5 copies are asked for; 2.0 also
  raises the new ``PaymentDeclined`` on about 1 order in 12.
- An unknown book raises ``BookNotFound`` on ``GET /books/{book_id}`` (both versions) and on
  ``GET /quote/{book_id}`` (:func:`drive` sends unknown ids there in 2.0's traffic only).

:class:`Shop` runs one version under uvicorn on loopback; :func:`drive` sends it a seeded mix of
requests; :class:`Collector` receives OTLP/HTTP protobuf exports and writes them as OTLP/JSON
lines, hex ids and all, as the Collector's file exporter does.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic import BaseModel

from tests.servers import AppServer

SERVICE = "bookshop"
BOOKS = 40
REVIEWS = 12  # per book: the N of 2.0's N+1
COVERS = [f"{n:040x}"[-12:] + f"{n * 7919:028x}" for n in range(1, 181)]  # sha1-like hashes


class BookNotFound(LookupError):
    pass


class OutOfStock(RuntimeError):
    pass


class PaymentDeclined(RuntimeError):
    pass


class Order(BaseModel):
    book_id: int
    quantity: int


# The database --------------------------------------------------------------------------------


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url``, fill it; its SQLAlchemy URL."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
            "price_cents INTEGER NOT NULL, stock INTEGER NOT NULL)"
        )
        connection.exec_driver_sql(
            "CREATE TABLE reviews (id SERIAL PRIMARY KEY, book_id INTEGER NOT NULL, "
            "stars INTEGER NOT NULL)"
        )
        connection.exec_driver_sql("CREATE INDEX reviews_book ON reviews (book_id)")
        connection.exec_driver_sql(
            "CREATE TABLE orders (id SERIAL PRIMARY KEY, book_id INTEGER NOT NULL, "
            "quantity INTEGER NOT NULL)"
        )
        connection.execute(
            sa.text("INSERT INTO books VALUES (:id, :title, :price, 100)"),
            [{"id": i, "title": f"Book {i}", "price": 500 + i} for i in range(1, BOOKS + 1)],
        )
        connection.execute(
            sa.text("INSERT INTO reviews (book_id, stars) VALUES (:book, :stars)"),
            [
                {"book": b, "stars": 1 + (b * r) % 5}
                for b in range(1, BOOKS + 1)
                for r in range(REVIEWS)
            ],
        )
    engine.dispose()
    return url


def drop_database(admin_url: str, name: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# An external pricing API (not instrumented: it is someone else's) ----------------------------


class Pricing:
    """``GET /rates/<id>`` answers a JSON rate after about a millisecond; a context manager."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                time.sleep(0.001)
                body = json.dumps({"path": self.path, "rate": 1.07}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Pricing:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# The shop ------------------------------------------------------------------------------------


def build_app(v2: bool, engine: sa.Engine, pricing: httpx.Client) -> tuple[FastAPI, Any]:
    """The FastAPI routes of 1.0 (or 2.0, with ``v2``), and a plain ASGI app for covers."""
    app = FastAPI()

    @app.get("/books/{book_id}")
    def book(book_id: int) -> dict[str, Any]:
        with engine.connect() as db:
            if not v2:
                row = db.execute(
                    sa.text(
                        "SELECT b.title, b.price_cents, avg(r.stars) FROM books b "
                        "LEFT JOIN reviews r ON r.book_id = b.id WHERE b.id = :id "
                        "GROUP BY b.title, b.price_cents"
                    ),
                    {"id": book_id},
                ).first()
                if row is None:
                    raise BookNotFound(book_id)
                return {"title": row[0], "price": row[1], "stars": float(row[2] or 0)}
            found = db.execute(
                sa.text("SELECT title, price_cents FROM books WHERE id = :id"), {"id": book_id}
            ).first()
            if found is None:
                raise BookNotFound(book_id)
            ids = db.execute(
                sa.text("SELECT id FROM reviews WHERE book_id = :id"), {"id": book_id}
            ).scalars()
            stars = [
                db.execute(sa.text("SELECT stars FROM reviews WHERE id = :id"), {"id": i}).scalar()
                for i in list(ids)
            ]
            return {"title": found[0], "price": found[1], "stars": sum(stars) / len(stars)}

    @app.get("/books")
    def search(q: str = "") -> list[str]:
        with engine.connect() as db:
            rows = db.execute(
                sa.text("SELECT title FROM books WHERE title LIKE :q ORDER BY id LIMIT 10"),
                {"q": f"%{q}%"},
            )
            return [r[0] for r in rows]

    @app.get("/quote/{book_id}")
    def quote(book_id: int) -> dict[str, Any]:
        with engine.connect() as db:
            price = db.execute(
                sa.text("SELECT price_cents FROM books WHERE id = :id"), {"id": book_id}
            ).scalar()
        if price is None:
            raise BookNotFound(book_id)
        rate = pricing.get(f"/rates/{book_id}").json()["rate"]
        return {"book": book_id, "price": round(price * rate)}

    @app.post("/orders")
    def order(order: Order) -> dict[str, Any]:
        with engine.begin() as db:
            stock = db.execute(
                sa.text("SELECT stock FROM books WHERE id = :id FOR UPDATE"),
                {"id": order.book_id},
            ).scalar()
            if stock is None or order.quantity > 5:
                raise OutOfStock(f"book {order.book_id}: {order.quantity} asked")
            if v2 and order.book_id % 12 == 0:
                raise PaymentDeclined(f"book {order.book_id}")
            number = db.execute(
                sa.text("INSERT INTO orders (book_id, quantity) VALUES (:b, :q) RETURNING id"),
                {"b": order.book_id, "q": order.quantity},
            ).scalar()
        return {"order": number}

    async def covers(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A plain ASGI app: no router, so its server spans carry no ``http.route``."""
        known = scope["path"].removeprefix("/covers/").removesuffix(".jpg") in COVERS
        await send(
            {
                "type": "http.response.start",
                "status": 200 if known else 404,
                "headers": [(b"content-type", b"image/jpeg")],
            }
        )
        await send({"type": "http.response.body", "body": b"\xff\xd8" * 64 if known else b""})

    return app, covers


class Shop:
    """One version of the shop under uvicorn on loopback, exporting to ``exports``.

    Args:
        version: ``service.version`` (None: the Resource has none).
        changed: run 2.0's code (default: when ``version`` starts with 2).
        database_url: the shop's PostgreSQL database.
        pricing_url: the external pricing API.
        exports: OTLP/HTTP traces URLs, each with the headers its exporter sends.
        instance: ``service.instance.id``.
    """

    def __init__(
        self,
        version: str | None,
        database_url: str,
        pricing_url: str,
        exports: list[tuple[str, dict[str, str]]],
        *,
        changed: bool | None = None,
        instance: str = "pod-1",
        environment: str = "production",
    ) -> None:
        attributes = {
            "service.name": SERVICE,
            "deployment.environment.name": environment,
            "service.instance.id": f"{SERVICE}-{version}-{instance}",
        }
        if version is not None:
            attributes["service.version"] = version
        resource = Resource.create(attributes)
        self.provider = TracerProvider(resource=resource)
        for url, headers in exports:
            self.provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=url, headers=headers, timeout=10),
                    schedule_delay_millis=200,
                )
            )
        self.engine = sa.create_engine(database_url, pool_size=8)
        SQLAlchemyInstrumentor().instrument(
            engine=self.engine, tracer_provider=self.provider, skip_dep_check=True
        )
        self.pricing = httpx.Client(base_url=pricing_url, timeout=5)
        HTTPXClientInstrumentor.instrument_client(self.pricing, tracer_provider=self.provider)
        if changed is None:
            changed = version is not None and version.startswith("2")
        api, covers = build_app(changed, self.engine, self.pricing)
        FastAPIInstrumentor.instrument_app(api, tracer_provider=self.provider)
        raw = OpenTelemetryMiddleware(covers, tracer_provider=self.provider)

        async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
            target = raw if scope.get("path", "").startswith("/covers/") else api
            await target(scope, receive, send)

        self.server = AppServer(dispatch)
        # uvicorn logs each unhandled exception's traceback: the spans carry them already.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self.url = self.server.url

    def __enter__(self) -> Shop:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)
        self.provider.force_flush(10_000)
        self.provider.shutdown()
        SQLAlchemyInstrumentor().uninstrument()
        self.pricing.close()
        self.engine.dispose()


# Traffic -------------------------------------------------------------------------------------


def requests_of(rng: random.Random, unknown_quotes: bool) -> Iterator[tuple[str, str, Any]]:
    """An endless seeded mix of (method, path, json body) as a storefront sends them."""
    words = ["1", "2", "Book", "3", "x"]
    while True:
        roll = rng.random()
        book = rng.randint(1, BOOKS)
        if roll < 0.36:
            yield "GET", f"/books/{book if rng.random() > 0.05 else 9000 + book}", None
        elif roll < 0.52:
            yield "GET", f"/books?q={rng.choice(words)}", None
        elif roll < 0.66:
            missing = unknown_quotes and rng.random() < 0.05
            yield "GET", f"/quote/{9000 + book if missing else book}", None
        elif roll < 0.82:
            quantity = 6 if rng.random() < 0.04 else rng.randint(1, 3)
            yield "POST", "/orders", {"book_id": book, "quantity": quantity}
        else:
            yield "GET", f"/covers/{rng.choice(COVERS)}.jpg", None


def drive(
    base_url: str, *, seconds: float, seed: int, concurrency: int = 4, unknown_quotes: bool = False
) -> Counter[tuple[str, int]]:
    """Send the mix for ``seconds`` from ``concurrency`` clients; (path kind, status) counts."""
    counts: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        with httpx.Client(base_url=base_url, timeout=10) as http:
            for method, path, body in requests_of(rng, unknown_quotes):
                if time.monotonic() >= deadline:
                    return
                try:
                    status = http.request(method, path, json=body).status_code
                except httpx.TransportError:
                    # An unhandled exception: Starlette answers 500, re-raises, and uvicorn
                    # drops the connection.
                    status = 599
                with lock:
                    counts[(path.split("/")[1].split("?")[0], status)] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


# A file of OTLP/JSON lines, as the Collector's file exporter writes it ----------------------


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON form of a request: camelCase, int64 as strings, ids in hex (not base64)."""
    document: dict[str, Any] = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        if link.get(key):
                            link[key] = base64.b64decode(link[key]).hex()
    return document


class Collector:
    """Receives OTLP/HTTP protobuf on ``/v1/traces``; keeps each request and writes JSON lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[ExportTraceServiceRequest] = []
        lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                line = json.dumps(otlp_json(request), separators=(",", ":"))
                with lock:
                    collector.requests.append(request)
                    with collector.path.open("a") as file:
                        file.write(line + "\n")
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# One pod: ``python -m tests.stock_app`` ------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Serve one version until SIGTERM, printing its URL first; spans are flushed on the way out."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.stock_app")
    parser.add_argument("--version", required=True)
    parser.add_argument("--changed", choices=["yes", "no"], help="run 2.0's code")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--pricing-url", required=True)
    parser.add_argument("--instance", default="pod-1")
    parser.add_argument("--export", action="append", default=[], help="URL[ TOKEN]")
    args = parser.parse_args(argv)
    exports = []
    for item in args.export:
        url, _, token = item.partition(" ")
        exports.append((url, {"Authorization": f"Bearer {token}"} if token else {}))
    changed = None if args.changed is None else args.changed == "yes"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Shop(
        args.version, args.database_url, args.pricing_url, exports,
        changed=changed, instance=args.instance,
    ) as shop:  # fmt: skip
        print(shop.url, flush=True)
        stop.wait()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
