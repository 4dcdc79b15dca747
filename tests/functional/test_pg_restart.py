"""The PostgreSQL server restarted under a running ``feedbot serve``.

The real server on this machine is stopped for a few seconds while checks are due and webhooks
keep arriving, then started again. feedbot must stay up, say so on ``/readyz`` (503, then 200
again), answer webhooks during the outage with a retryable 503 (never a 500), and afterwards
lose nothing: every release registered, every check run once, every message sent once.

This test stops a server that every other PostgreSQL test shares: it must never run in parallel
with them (the suite runs serially; nothing here uses pytest-xdist).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from feedbot.store.db import make_sessions, migrate
from feedbot.store.models import Check, Delivery, Release
from tests.conftest import PG_ADMIN_URL
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.processes import Feedbot

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.serial]
SECRET = "restart-secret"
AFTER = ["2s", "4s"]
BEFORE, DURING, AFTERWARDS = range(8), range(8, 12), range(12, 16)
RELEASES = len(BEFORE) + len(DURING) + len(AFTERWARDS)
OUTAGE_SECONDS = 4.0


def cluster(action: str) -> None:
    """``pg_ctlcluster`` on the one cluster of this machine (``/etc/postgresql/<version>``)."""
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        timeout=60,
        capture_output=True,
    )


def accepting() -> bool:
    probe = ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-t", "1"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


def wait_accepting(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not accepting():
        assert time.monotonic() < deadline, "PostgreSQL does not accept connections"
        time.sleep(0.2)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A migrated database of this test's own; PostgreSQL is up again after the test.

    Its engines pool no connection (``NullPool``): none of them may outlive the restart.
    """
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"feedbot_restart_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    migrate(create_engine(url, poolclass=NullPool))
    try:
        yield url
    finally:
        if not accepting():
            cluster("start")
        wait_accepting()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
                    int(s.scalar(select(func.count()).where(Delivery.state == "sent")) or 0),
                )
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.3)
    finally:
        engine.dispose()


def test_postgres_restarted_under_the_service_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, database_url: str, slack_api: FakeSlackAPI
) -> None:
    log = tmp_path / "feedbot.log"
    feedbot = Feedbot(config_for(tmp_path, database_url, slack_api), log)
    probe = ReadinessProbe(feedbot.url)
    try:
        probe.start()
        ids = [deploy_retrying(feedbot.url, i) for i in BEFORE]
        cluster("stop")
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        refused = [deploy(feedbot.url, i) for i in DURING]
        time.sleep(max(outage_ends - time.monotonic(), 0))  # checks come due meanwhile
        assert feedbot.proc.poll() is None, "feedbot serve died with the database"
        cluster("start")
        wait_accepting()
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
