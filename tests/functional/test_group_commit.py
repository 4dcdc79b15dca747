"""Concurrent deploy webhooks through the real app, registered in shared transactions.

Fifty senders at once, on SQLite and PostgreSQL. The store is held locked while the first
requests arrive, so the deploys pile up behind the first registration and the next transaction
takes all of them (group commit). Every good deploy must be registered exactly once, a
redelivery must be the same release even in the same transaction, and each bad request gets its
own refusal, naming its field, without touching the others.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.store.models import Delivery, Release, WebhookDelivery
from feedbot.web.app import create_app
from tests.factories import sign
from tests.servers import AppServer

SECRET = "group-commit-secret"
SENDERS = 50
SERVICES = 5
GOOD = 100
REDELIVERED = 20


def request(doc: dict[str, Any] | bytes, *, delivery: str = "", secret: str = SECRET) -> Any:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {"X-Feedbot-Signature": sign(body, secret)}
    if delivery:
        headers["X-Feedbot-Delivery"] = delivery
    return body, headers


def requests() -> list[tuple[str, Any]]:
    """(what is expected, (body, headers)) of every request, interleaved."""
    good = [
        ("good", request({"service": f"s{i % SERVICES}", "version": f"1.{i}", "commit": f"{i:x}"}))
        for i in range(GOOD)
    ]
    redelivered = [
        (f"dup-{i}", request({"service": f"d{i}", "version": "1"}, delivery=f"delivery-{i}"))
        for i in range(REDELIVERED)
    ]
    bad = [("version", request({"service": f"s{i}"})) for i in range(5)]
    bad += [("service", request({"service": f"s{i}\u0000", "version": "2"})) for i in range(5)]
    bad += [("unsigned", request({"service": "s0", "version": "9"}, secret="wrong"))]
    bad += [("json", request(b"{not json"))]
    everything = good + redelivered + redelivered + bad
    # Interleaved so that bad requests and both copies of a redelivery meet in one batch.
    return [everything[(i * 37) % len(everything)] for i in range(len(everything))]


@contextmanager
def store_held(runtime: Runtime) -> Iterator[None]:
    """Hold the release table (PostgreSQL) or the write lock (SQLite) until the block ends."""
    engine: Engine = runtime.engine
    with engine.connect() as locker:
        if engine.dialect.name == "postgresql":
            locker.execute(text("LOCK TABLE releases IN ACCESS EXCLUSIVE MODE"))
        else:
            locker.execute(text("SELECT 1"))  # in BEGIN IMMEDIATE: the write lock is ours
        yield
        locker.rollback()


@pytest.fixture
def runtime(fresh_database_url: str) -> Iterator[Runtime]:
    raw = {"database_url": fresh_database_url, "webhooks": {"secret": SECRET}}
    raw["checks"] = {"after": ["1h"]}
    runtime = build_runtime(settings_from_mapping(raw, {}))
    yield runtime
    runtime.engine.dispose()


def test_concurrent_deploys_are_each_registered_once_and_bad_ones_refused_alone(
    runtime: Runtime,
) -> None:
    todo = requests()
    started = threading.Semaphore(0)
    limits = httpx.Limits(max_connections=SENDERS)
    with (
        AppServer(create_app(runtime)) as server,
        httpx.Client(base_url=server.url, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(SENDERS) as senders,
    ):

        def send(item: tuple[str, Any]) -> tuple[str, httpx.Response]:
            kind, (body, headers) = item
            started.release()
            return kind, client.post("/webhooks/deploy", content=body, headers=headers)

        with store_held(runtime):
            answers = senders.map(send, todo)
            for _ in range(SENDERS):
                assert started.acquire(timeout=30)
            time.sleep(0.5)  # the first requests reach the server and wait behind the lock
        results = list(answers)

    created: Counter[int] = Counter()
    by_kind: dict[str, list[httpx.Response]] = {}
    for kind, answer in results:
        by_kind.setdefault(kind, []).append(answer)
    for answer in by_kind["good"]:
        assert answer.status_code == 202, answer.text
        assert answer.json()["created"] is True
        created[answer.json()["release_id"]] += 1
    for i in range(REDELIVERED):
        both = by_kind[f"dup-{i}"]
        assert [a.status_code for a in both] == [202, 202], [a.text for a in both]
        assert len({a.json()["release_id"] for a in both}) == 1
        assert sorted(a.json()["created"] for a in both) == [False, True]
    for field in ("version", "service"):
        for answer in by_kind[field]:
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"].startswith(f"{field}:"), answer.text
    assert [a.status_code for a in by_kind["unsigned"]] == [401]
    assert [a.status_code for a in by_kind["json"]] == [400]

    with runtime.sessions() as session:
        rows = session.execute(select(Release.service, Release.version, Release.state)).all()
        parents = session.scalar(select(func.count()).where(Delivery.kind == "parent"))
        deliveries = session.scalar(select(func.count()).select_from(WebhookDelivery))
        if runtime.engine.dialect.name == "postgresql":
            # Rows inserted together carry the inserting transaction's id. (Not releases': a
            # superseded one carries the id of the transaction that superseded it.)
            query = "SELECT count(DISTINCT xmin::text) FROM deliveries WHERE kind = 'parent'"
            transactions = session.scalar(text(query))
            assert parents is not None and transactions is not None
            assert transactions < parents
    assert len(created) == GOOD and set(created.values()) == {1}
    assert len(rows) == GOOD + REDELIVERED
    assert len({(service, version) for service, version, _ in rows}) == len(rows)
    active = Counter(service for service, _, state in rows if state == "active")
    assert all(active[f"s{i}"] == 1 for i in range(SERVICES))
    assert parents == len(rows) and deliveries == REDELIVERED
