"""A PostgreSQL server restarted under a running ``feedbot serve``.

The test runs a throwaway PostgreSQL cluster of its own (``initdb`` in a temporary directory,
trust auth, 127.0.0.1 on a free port, its unix socket in that directory), stops it for a few
seconds while checks are due and webhooks keep arriving, then starts it again. feedbot must stay
up, say so on ``/readyz`` (503, then 200 again), answer webhooks during the outage with a
retryable 503 (never a 500), and afterwards lose nothing: every release registered, every check
run once, every message sent once. The machine's own PostgreSQL server is never touched.

It needs the server binaries (``/usr/lib/postgresql/<version>/bin``). As root it runs them as the
``postgres`` user, since ``initdb`` refuses to run as root.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from feedbot.store.db import make_sessions, migrate
from feedbot.store.models import Check, Delivery, Release
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.processes import Feedbot, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.serial]
SECRET = "restart-secret"
AFTER = ["2s", "4s"]
BEFORE, DURING, AFTERWARDS = range(8), range(8, 12), range(12, 16)
RELEASES = len(BEFORE) + len(DURING) + len(AFTERWARDS)
OUTAGE_SECONDS = 4.0


def server_binaries() -> Path:
    """The ``bin`` directory of the newest PostgreSQL server installed (Debian's layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parents[1].name) if p.parents[1].name.isdigit() else 0,
    )
    if not found:
        pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin/")
    return found[-1].parent


class Cluster:
    """A throwaway PostgreSQL cluster in ``root``: data in ``root/data``, socket in ``root``."""

    def __init__(self, root: Path, port: int) -> None:
        self.bin, self.root, self.port = server_binaries(), root, port
        self.data, self.log = root / "data", root / "server.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        # initdb and the server refuse to run as root: run them as the postgres user then.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, program: str, *args: str, check: bool = True) -> None:
        command = [*self.as_owner, str(self.bin / program), *args]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"{' '.join(command)}: {done.returncode}\n{done.stderr}\n{log}")

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\n"
            )

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, check: bool = True) -> None:
        self.run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", check=check
        )

    def accepting(self) -> bool:
        probe = [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

    def wait_accepting(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.accepting():
            assert time.monotonic() < deadline, "PostgreSQL does not accept connections"
            time.sleep(0.2)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A cluster of this test's own, started; stopped and removed after the test."""
    root = Path(tempfile.mkdtemp(prefix="feedbot-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    made = Cluster(root, free_port())
    try:
        made.init()
        made.start()
        made.wait_accepting()
        yield made
    finally:
        if made.data.exists():
            made.stop(check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(cluster: Cluster) -> str:
    """A migrated database in the test's cluster.

    Its engines pool no connection (``NullPool``): none of them may outlive the restart.
    """
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text('CREATE DATABASE "feedbot"'))
    url = cluster.url.removesuffix("/postgres") + "/feedbot"
    migrate(create_engine(url, poolclass=NullPool))
    return url


def deploy(url: str, i: int) -> httpx.Response:
    body = json.dumps(
        {"service": f"svc-{i}", "version": "2.0", "commit": f"c{i}", "author": {"slack": f"U{i}"}}
    ).encode()
    headers = {"X-Feedbot-Signature": sign(body, SECRET)}
    return httpx.post(f"{url}/webhooks/deploy", content=body, headers=headers, timeout=30)


def deploy_retrying(url: str, i: int, timeout: float = 60) -> int:
    """Send like a webhook sender does: again after a 503, until it is accepted."""
    deadline = time.monotonic() + timeout
    while (answer := deploy(url, i)).status_code == 503:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    assert answer.status_code == 202, answer.text
    return int(answer.json()["release_id"])


class ReadinessProbe(threading.Thread):
    """Polls ``/readyz`` every 100 ms, as a kubelet would, recording each status."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.statuses, self.stopping = url, list[int](), threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            try:
                self.statuses.append(httpx.get(f"{self.url}/readyz", timeout=5).status_code)
            except httpx.TransportError:
                self.statuses.append(0)  # the process did not answer at all


def config_for(tmp_path: Path, postgres_url: str, slack_api: FakeSlackAPI) -> Path:
    config = tmp_path / "feedbot.yaml"
    slack = {"bot_token": "xoxb-r", "signing_secret": "s", "api_url": slack_api.base_url}
    checks = {"after": AFTER, "tick": "200ms", "lease": "3s", "retry_backoff": "1s"}
    conf = {"database_url": postgres_url, "webhooks": {"secret": SECRET}, "slack": slack}
    config.write_text(yaml.safe_dump({**conf, "checks": checks}))
    return config


MESSAGE_SENT = (Delivery.state == "sent", Delivery.kind != "home")


def all_finished(url: str, timeout: float = 90) -> tuple[int, int, int]:
    engine = create_engine(url, poolclass=NullPool)
    sessions = make_sessions(engine)
    want = (RELEASES, RELEASES * len(AFTER), RELEASES * (1 + 2 * len(AFTER)))
    deadline = time.monotonic() + timeout
    try:
        while True:
            with sessions() as s:
                got = (
                    int(s.scalar(select(func.count(Release.id))) or 0),
                    int(s.scalar(select(func.count()).where(Check.state == "done")) or 0),
                    # Messages only: Home tab publications are at least once (and coalesced).
                    int(s.scalar(select(func.count()).where(*MESSAGE_SENT)) or 0),
                )
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.3)
    finally:
        engine.dispose()


def test_postgres_restarted_under_the_service_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, cluster: Cluster, database_url: str, slack_api: FakeSlackAPI
) -> None:
    log = tmp_path / "feedbot.log"
    feedbot = Feedbot(config_for(tmp_path, database_url, slack_api), log)
    probe = ReadinessProbe(feedbot.url)
    try:
        probe.start()
        ids = [deploy_retrying(feedbot.url, i) for i in BEFORE]
        cluster.stop()
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        refused = [deploy(feedbot.url, i) for i in DURING]
        time.sleep(max(outage_ends - time.monotonic(), 0))  # checks come due meanwhile
        assert feedbot.proc.poll() is None, "feedbot serve died with the database"
        cluster.start()
        cluster.wait_accepting()
        ids += [deploy_retrying(feedbot.url, i) for i in (*DURING, *AFTERWARDS)]
        got = all_finished(database_url)
        assert feedbot.proc.poll() is None
    finally:
        probe.stopping.set()
        probe.join(10)
        feedbot.stop()

    for answer in refused:
        assert answer.status_code == 503, (answer.status_code, answer.text)
        assert answer.headers.get("retry-after") and "database" in answer.json()["error"]
    assert 503 in probe.statuses and 0 not in probe.statuses
    assert probe.statuses[-1] == 200 and probe.statuses.index(503) > 0
    assert len(set(ids)) == RELEASES
    assert got == (RELEASES, RELEASES * len(AFTER), RELEASES * (1 + 2 * len(AFTER)))

    text = log.read_text()
    ran = Counter(re.findall(r"check (\d+) of release \d+ done by", text))
    assert len(ran) == RELEASES * len(AFTER) and set(ran.values()) == {1}
    assert "Exception in ASGI application" not in text  # no request ended in a 500
    keys = [p["metadata"]["event_payload"]["key"] for p in slack_api.calls_to("chat.postMessage")]
    assert len(keys) == RELEASES * (1 + len(AFTER)) and len(set(keys)) == len(keys)
