"""The example vault app, v1 then v2, as real processes sending real spans to feedbot.

Each version's stack (rates service, API and, with RabbitMQ on this machine, the goblin) runs as
separate processes exporting OTLP/HTTP to feedbot's embedded backend, gets 100 requests of mixed
traffic, and is stopped (which flushes its spans). The tests then read what feedbot stored: the
differences the v2 release made must be visible in the traces, and nothing else.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from examples.vault import traffic
from examples.vault.run import StackError, start_stack
from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.spans.model import ReleaseData, SpanGroupStats, SpanQuery
from feedbot.store.db import make_engine, migrate
from feedbot.store.spans import Span
from feedbot.web.app import create_app
from tests.servers import AppServer

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
VERSIONS = ("1.0.0", "2.0.0")
REQUESTS = 100
APPRAISE_PATH = "/vaults/{vault_id}/appraisal"
APPRAISE_ROUTE = f"GET {APPRAISE_PATH}"
QUEUE_PATH = "/vaults/{vault_id}/appraisals"


def broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Run:
    """What the module's two deploys left in feedbot."""

    runtime: Runtime
    start: datetime
    end: datetime
    broker: bool
    sent: dict[str, dict[str, int]]

    def collect(self, version: str, service: str = "vault-service") -> ReleaseData:
        query = SpanQuery(service, version, self.start, self.end, environment="production")
        return self.runtime.backend.collect(query)

    def rows(self, version: str, service: str = "vault-service") -> list[Span]:
        statement = select(Span).where(Span.service == service, Span.version == version)
        with self.runtime.sessions() as session:
            return list(session.scalars(statement))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("vault")
    url = f"sqlite:///{workdir / 'feedbot.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    runtime = build_runtime(settings_from_mapping({"database_url": url}, {}))
    broker = broker_up()
    start = datetime.now(UTC) - timedelta(minutes=1)
    sent: dict[str, dict[str, int]] = {}
    with AppServer(create_app(runtime)) as receiver:
        for version in VERSIONS:
            sent[version] = deploy_and_drive(version, receiver.url, workdir, broker)
    yield Run(runtime, start, datetime.now(UTC) + timedelta(minutes=1), broker, sent)
    runtime.engine.dispose()


def deploy_and_drive(version: str, otlp: str, workdir: Path, broker: bool) -> dict[str, int]:
    """One deploy: the stack of ``version`` on the vault database both versions share."""
    logs = workdir / version
    logs.mkdir()
    stack = start_stack(
        version,
        otlp_endpoint=otlp,
        database_url=f"sqlite:///{workdir / 'vault.db'}",
        amqp_url=AMQP_URL if broker else None,
        workdir=logs,
    )
    with stack:
        sent = traffic.drive(stack.api_url, requests=REQUESTS, seed=7, concurrency=4)
        processes = list(stack.processes)
    assert all(p.popen.poll() is not None for p in processes), "a process outlived stop()"
    return sent


def group(data: ReleaseData, name: str) -> SpanGroupStats:
    found = [g for g in data.groups if g.name == name]
    assert found, f"no group {name!r} in {[g.name for g in data.groups]}"
    return found[0]


def test_traffic_reaches_every_endpoint(run: Run) -> None:
    for version in VERSIONS:
        assert sum(run.sent[version].values()) == REQUESTS
        assert set(run.sent[version]) == {e for e, _ in traffic.MIX} | {traffic.LIST}


def test_spans_of_each_version_arrive_with_their_version(run: Run) -> None:
    for version in VERSIONS:
        rows = run.rows(version)
        assert len(rows) > REQUESTS
        assert {r.environment for r in rows} == {"production"}
        assert len({r.instance for r in rows}) == 1  # one API process per deploy
        data = run.collect(version)
        assert group(data, APPRAISE_ROUTE).count > 0
        assert group(data, "POST /vaults/{vault_id}/items").kind == "SERVER"
    assert run.rows("3.0.0") == []


def db_spans_per_appraisal(run: Run, version: str) -> list[int]:
    rows = run.rows(version)
    appraisals = {r.trace_id for r in rows if r.kind == "SERVER" and r.route == APPRAISE_PATH}
    queries = Counter(r.trace_id for r in rows if r.attributes.get("db.query.text"))
    return [queries[t] for t in appraisals]


def test_v2_appraisal_issues_one_query_per_item(run: Run) -> None:
    v1 = db_spans_per_appraisal(run, "1.0.0")
    v2 = db_spans_per_appraisal(run, "2.0.0")
    assert v1 and v2
    assert max(v1) <= 2  # the joined query (and at most a connect)
    assert sorted(v2)[len(v2) // 2] > 2 * sorted(v1)[len(v1) // 2]
    repeats = {v: run.collect(v).repeats for v in VERSIONS}
    assert not [r for r in repeats["1.0.0"] if r.parent == "vault.appraisal.appraise"]
    n_plus_one = [r for r in repeats["2.0.0"] if r.parent == "vault.appraisal.appraise"]
    assert len(n_plus_one) == 1
    assert "FROM items WHERE items.id = ?" in n_plus_one[0].statement
    assert int(n_plus_one[0].repeats.max()) >= 4


def test_dragon_deposits_raise_the_new_exception_in_v2_only(run: Run) -> None:
    v2 = group(run.collect("2.0.0"), "vault.deposits.deposit")
    assert [e.type for e in v2.exceptions] == ["examples.vault.v2.deposits.GoblinRateLimitError"]
    assert 0 < v2.exceptions[0].count < v2.count
    assert "dragon goods are rationed" in v2.exceptions[0].message
    assert all(not g.exceptions for g in run.collect("1.0.0").groups)


def test_code_attributes_name_the_changed_functions(run: Run) -> None:
    for version, package in (("1.0.0", "v1"), ("2.0.0", "v2")):
        data = run.collect(version)
        (code,) = group(data, "vault.appraisal.appraise").code
        assert code.function == f"examples.vault.{package}.appraisal.appraise"
        assert code.filepath is not None
        assert code.filepath.endswith(f"examples/vault/{package}/appraisal.py")
        source = Path(code.filepath).read_text().splitlines()
        assert code.lineno is not None and source[code.lineno - 1] == "@traced"
        sealed = "vault.deposits.goblin_seal" in {g.name for g in data.groups}
        assert sealed == (package == "v2")
        functions = {c.function for g in data.groups for c in g.code}
        assert not [f for f in functions if f and "recount_galleons" in f]  # never reached


def test_a_trace_crosses_rabbitmq_into_the_goblin(run: Run) -> None:
    # RabbitMQ runs on every machine of this project (.ci/run starts it when it is down): a
    # missing broker is a failure here, not a reason to skip.
    assert run.broker, "RabbitMQ is not listening on 127.0.0.1:5672"
    for version in VERSIONS:
        api = run.rows(version)
        goblin = run.rows(version, service="vault-goblin")
        published = {r.trace_id for r in api if r.kind == "SERVER" and r.route == QUEUE_PATH}
        consumed = {r.trace_id for r in goblin if r.kind == "CONSUMER"}
        assert published and consumed and consumed <= published
        producer = {r.span_id for r in api if r.kind == "PRODUCER"}
        assert {r.parent_span_id for r in goblin if r.kind == "CONSUMER"} <= producer
        work = group(run.collect(version, "vault-goblin"), "vault.jobs.work")
        assert work.count == len(consumed)


def test_traffic_plan_is_fixed_by_its_seed() -> None:
    assert traffic.plan(REQUESTS, seed=7) == traffic.plan(REQUESTS, seed=7)
    assert traffic.plan(REQUESTS, seed=7) != traffic.plan(REQUESTS, seed=8)
    opening, mixed = traffic.plan(REQUESTS, seed=7)
    assert len(opening) + len(mixed) == REQUESTS
    names = [str((c.body or {}).get("name", "")) for c in mixed]
    assert any("dragon" in n.lower() for n in names)


def _children() -> set[str]:
    found = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True)
    return set(found.stdout.split())


def test_a_process_that_cannot_start_stops_the_stack(tmp_path: Path) -> None:
    # Children this test process had before (multiprocessing's resource tracker or forkserver,
    # started by an earlier test in the same session, live as long as it) are not the stack's.
    before = _children()
    with pytest.raises(StackError, match=r"(?s)api: exited with 1.*unable to open database"):
        start_stack(
            "1.0.0",
            otlp_endpoint="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'missing' / 'vault.db'}",
            workdir=tmp_path,
        )
    assert _children() - before == set()
