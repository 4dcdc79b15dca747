"""Three ``feedbot serve`` replicas on one PostgreSQL database share the work exactly once.

Releases are registered through all three; one replica is killed with SIGKILL while checks are
running. Every check must end ``done``, be recorded by exactly one replica, and every message
must reach Slack exactly once.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Check, Delivery
from tests.conftest import truncate_all
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.processes import Feedbot

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "replica-secret"
RELEASES = 30


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
        timeout=30,
        headers={"X-Feedbot-Signature": sign(body, SECRET)},
    )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["release_id"])


def finished(sessions: object) -> tuple[int, int, int]:
    with sessions() as s:  # type: ignore[operator]
        done = s.scalar(select(func.count()).where(Check.state == "done"))
        sent = s.scalar(select(func.count()).where(Delivery.state == "sent"))
        total = s.scalar(select(func.count()).select_from(Delivery))
    return int(done), int(sent), int(total)


def test_three_replicas_one_killed_every_check_once_every_message_once(
    tmp_path: Path, postgres_url: str, slack_api: FakeSlackAPI
) -> None:
    config = tmp_path / "feedbot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": postgres_url,
                "webhooks": {"secret": SECRET},
                "slack": {
                    "bot_token": "xoxb-r",
                    "signing_secret": "s",
                    "api_url": slack_api.base_url,
                },
                "checks": {"after": ["2s", "4s"], "tick": "200ms", "lease": "3s"},
            }
        )
    )
    logs = [tmp_path / f"replica-{n}.log" for n in range(3)]
    replicas = [Feedbot(config, log) for log in logs]
    engine = make_engine(postgres_url)
    sessions = make_sessions(engine)
    try:
        with ThreadPoolExecutor(6) as pool:
            ids = list(pool.map(lambda i: register(replicas[i % 3].url, i), range(RELEASES)))
        assert len(set(ids)) == RELEASES
        time.sleep(2.5)  # the first checks are running now
        replicas[1].proc.send_signal(signal.SIGKILL)
        assert replicas[1].proc.wait(10) == -signal.SIGKILL
        deadline = time.monotonic() + 90
        while finished(sessions) != (2 * RELEASES, 5 * RELEASES, 5 * RELEASES):
            assert time.monotonic() < deadline, f"not finished: {finished(sessions)}"
            time.sleep(0.3)
    finally:
        for replica in replicas:
            replica.stop()
        engine.dispose()
        truncate_all(postgres_url)

    ran = Counter(
        int(m.group(1))
        for log in logs
        for m in re.finditer(r"check (\d+) of release \d+ done by", log.read_text())
    )
    assert len(ran) == 2 * RELEASES and set(ran.values()) == {1}
    assert sum(1 for log in logs[::2] if "done by" in log.read_text()) == 2  # both survivors ran

    keys = [p["metadata"]["event_payload"]["key"] for p in slack_api.calls_to("chat.postMessage")]
    assert len(keys) == 3 * RELEASES and len(set(keys)) == len(keys)
    for i in range(RELEASES):
        stored = slack_api.messages_in(slack_api.dm_channel(f"U{i:03d}"))
        assert len(stored) == 3
