"""Three ``feedbot serve`` replicas on one PostgreSQL database share the work exactly once.

Two hundred releases with four checks each are registered through all three replicas. While
checks run, one replica is frozen at a moment it holds claimed checks, killed with SIGKILL, and
replaced by a new process (a pod restarting). Every check must end ``done``, be recorded by
exactly one replica (the orphaned ones by another replica once their lease ran out), and every
message must reach Slack exactly once.

Who recorded a check is read from the store (a done check keeps the ``claimed_by`` of the replica
whose lease-guarded commit recorded it) and checked against the replicas' "done by" log lines, which
show any second recording. The log line follows the commit, so the killed replica's last recorded
check may have no line: SIGKILL can land between the two.

The schedule is compressed (checks 1-7 s after the deploy, a 200 ms tick, a 3 s lease); the
wall time is bound by CPU (about 25 ms per check and 10 ms per message on one core), not by the
schedule.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func, make_url, select, text
from sqlalchemy.orm import Session

from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Check, Delivery
from tests.conftest import truncate_all
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.processes import Feedbot

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "replica-secret"
RELEASES = 200
AFTER = ["1s", "3s", "5s", "7s"]
CHECKS = RELEASES * len(AFTER)
#: A parent message, then a reply and a status update per check.
MESSAGES = RELEASES * (1 + 2 * len(AFTER))
DONE_BY = re.compile(r"check (\d+) of release \d+ done by (\S+)")


def register(url: str, i: int) -> int:
    body = json.dumps(
        {
            "service": f"svc-{i}",
            "version": "1.0.0",
            "commit": f"c{i}",
            "author": {"slack": f"U{i:03d}"},
        }
    ).encode()
    answer = httpx.post(
        f"{url}/webhooks/deploy",
        content=body,
        timeout=60,
        headers={"X-Feedbot-Signature": sign(body, SECRET)},
    )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["release_id"])


Sessions = Callable[[], Session]


def finished(sessions: Sessions) -> tuple[int, int, int, int]:
    """Checks done, messages sent and queued, and Home tab publications still to go (those are
    delivered at least once, so they are not counted among the messages)."""
    messages, home = Delivery.kind != "home", Delivery.kind == "home"
    with sessions() as s:
        done = s.scalar(select(func.count()).where(Check.state == "done"))
        sent = s.scalar(select(func.count()).where(messages, Delivery.state == "sent"))
        total = s.scalar(select(func.count()).where(messages))
        homes = s.scalar(select(func.count()).where(home, Delivery.state != "sent"))
    return int(done or 0), int(sent or 0), int(total or 0), int(homes or 0)


def running_of(sessions: Sessions, pid: int) -> set[int]:
    """Checks claimed by the replica with process id ``pid`` and still running."""
    with sessions() as s:
        rows = s.scalars(
            select(Check.id).where(Check.state == "running", Check.claimed_by.like(f"%:{pid}:%"))
        )
        return set(rows)


def start_replica(config: Path, log: Path, postgres_url: str, name: str) -> Feedbot:
    """A ``feedbot serve`` whose PostgreSQL sessions carry ``name`` as their application name."""
    named = make_url(postgres_url).update_query_dict({"application_name": name})
    url = named.render_as_string(hide_password=False)
    return Feedbot(config, log, environ={**os.environ, "FEEDBOT_DATABASE_URL": url})


def sessions_of(sessions: Sessions, name: str) -> int:
    """Server sessions this test's database has for the replica called ``name``."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = :name"
    )
    with sessions() as s:
        return int(s.scalar(query, {"name": name}) or 0)


def kill_while_holding_checks(replica: Feedbot, name: str, sessions: Sessions) -> set[int]:
    """SIGKILL ``replica`` at a moment it holds running checks; returns the checks it left.

    The process is frozen (SIGSTOP) before the store is read, so it claims and sends nothing
    more. A COMMIT it sent just before may still be in flight, though, so the checks it left
    running are read only once the server has closed all of its sessions: from then on nothing
    it sent can still be committed.
    """
    pid = replica.proc.pid
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replica.proc.send_signal(signal.SIGSTOP)
        if running_of(sessions, pid):
            replica.proc.send_signal(signal.SIGKILL)
            replica.wait_killed()
            while sessions_of(sessions, name):
                assert time.monotonic() < deadline, "the killed replica's sessions stay open"
                time.sleep(0.05)
            return running_of(sessions, pid)
        replica.proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the replica never held a running check")


def recorders(sessions: Sessions) -> dict[int, str]:
    """The replica that recorded each done check (its lease-guarded commit set ``claimed_by``)."""
    with sessions() as s:
        rows = s.execute(select(Check.id, Check.claimed_by).where(Check.state == "done"))
        return {check: str(worker) for check, worker in rows}


def wait_finished(sessions: Sessions, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while finished(sessions) != (CHECKS, MESSAGES, MESSAGES, 0):
        assert time.monotonic() < deadline, f"not finished: {finished(sessions)}"
        time.sleep(0.5)


def write_config(path: Path, postgres_url: str, slack_api: FakeSlackAPI) -> None:
    slack = {"bot_token": "xoxb-r", "signing_secret": "s", "api_url": slack_api.base_url}
    checks = {"after": AFTER, "tick": "200ms", "lease": "3s"}
    conf = {
        "database_url": postgres_url,
        "webhooks": {"secret": SECRET},
        "slack": slack,
        "checks": checks,
    }
    path.write_text(yaml.safe_dump(conf))


def test_three_replicas_one_killed_and_replaced_every_check_once_every_message_once(
    tmp_path: Path, postgres_url: str, slack_api: FakeSlackAPI
) -> None:
    config = tmp_path / "feedbot.yaml"
    write_config(config, postgres_url, slack_api)
    logs = [tmp_path / f"replica-{n}.log" for n in range(4)]
    names = [f"feedbot-replica-{n}" for n in range(4)]
    replicas = [start_replica(config, logs[n], postgres_url, names[n]) for n in range(3)]
    engine = make_engine(postgres_url)
    sessions = make_sessions(engine)
    try:
        with ThreadPoolExecutor(12) as pool:
            ids = list(pool.map(lambda i: register(replicas[i % 3].url, i), range(RELEASES)))
        assert len(set(ids)) == RELEASES
        while finished(sessions)[0] < CHECKS // 4:
            time.sleep(0.1)
        orphans = kill_while_holding_checks(replicas[1], names[1], sessions)
        replicas.append(
            start_replica(config, logs[3], postgres_url, names[3])
        )  # the replacement pod
        wait_finished(sessions, timeout=180)
        with sessions() as s:
            homes = s.scalars(select(Delivery.state).where(Delivery.kind == "home")).all()
        assert len(homes) == CHECKS and set(homes) == {"sent"}  # one queued per check
        recorded = recorders(sessions)
    finally:
        for replica in replicas:
            replica.stop()
        engine.dispose()
        truncate_all(postgres_url)

    runs = [(int(m[1]), m[2]) for log in logs for m in DONE_BY.finditer(log.read_text())]
    ran = Counter(check for check, _ in runs)
    assert len(recorded) == CHECKS
    assert set(ran.values()) == {1}, [c for c, n in ran.items() if n > 1]  # none recorded twice
    assert all(recorded[check] == worker for check, worker in runs)  # by the one the store names
    killed = f":{replicas[1].proc.pid}:"
    unlogged = {check: recorded[check] for check in recorded.keys() - ran.keys()}
    # Only the killed replica's last commit can lack its line (SIGKILL between the two).
    assert len(unlogged) <= 1 and all(killed in w for w in unlogged.values()), unlogged
    assert all(killed not in recorded[check] for check in orphans)  # taken over by others
    for log in (logs[0], logs[2], logs[3]):  # the survivors and the replacement all worked
        assert DONE_BY.search(log.read_text()), log.name

    keys = [p["metadata"]["event_payload"]["key"] for p in slack_api.calls_to("chat.postMessage")]
    assert len(keys) == RELEASES * (1 + len(AFTER)) and len(set(keys)) == len(keys)
    for i in range(RELEASES):
        stored = slack_api.messages_in(slack_api.dm_channel(f"U{i:03d}"))
        assert len(stored) == 1 + len(AFTER)
        parent = next(m for m in stored if "thread_ts" not in m or m["thread_ts"] == m["ts"])
        assert f"all {len(AFTER)} checks ran" in parent["text"], parent["text"]
        assert slack_api.home_view(f"U{i:03d}") is not None  # each author's Home tab
