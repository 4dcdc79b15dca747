"""``kill -9`` at every step of a release's life loses nothing and sends nothing twice.

Each test starts a real ``feedbot serve`` process on PostgreSQL with a failpoint armed (the
process SIGKILLs itself at that step), waits for it to die, starts a second process, and checks
what the fake Slack Web API received.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Check, Delivery
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.processes import Feedbot

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "crash-secret"


@pytest.fixture
def config(tmp_path: Path, postgres_url: str, slack_api: FakeSlackAPI) -> Iterator[Path]:
    path = tmp_path / "feedbot.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": postgres_url,
                "webhooks": {"secret": SECRET},
                "slack": {
                    "bot_token": "xoxb-crash",
                    "signing_secret": "s",
                    "api_url": slack_api.base_url,
                },
                "checks": {
                    "after": ["1s", "2s"],
                    "tick": "200ms",
                    "lease": "2s",
                    "retry_backoff": "1s",
                },
            }
        )
    )
    yield path
    from tests.conftest import truncate_all

    truncate_all(postgres_url)


def post_deploy(url: str, version: str = "2.0.0") -> httpx.Response:
    body = json.dumps(
        {
            "service": "vault",
            "version": version,
            "commit": f"sha-{version}",
            "author": {"slack": "U1"},
        }
    ).encode()
    return httpx.post(
        f"{url}/webhooks/deploy",
        content=body,
        timeout=10,
        headers={"X-Feedbot-Signature": sign(body, SECRET)},
    )


def wait_all_done(database_url: str, timeout: float = 40) -> None:
    engine = make_engine(database_url)
    sessions = make_sessions(engine)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with sessions() as s:
                checks = s.scalars(select(Check.state)).all()
                deliveries = s.scalars(select(Delivery.state)).all()
            if checks and set(checks) == {"done"} and deliveries and set(deliveries) == {"sent"}:
                return
            time.sleep(0.2)
        raise AssertionError(f"not finished: checks {checks}, deliveries {deliveries}")
    finally:
        engine.dispose()


def assert_exactly_once(slack_api: FakeSlackAPI) -> None:
    posts = slack_api.calls_to("chat.postMessage")
    keys = [p["metadata"]["event_payload"]["key"] for p in posts]
    assert sorted(keys) == sorted(set(keys)), f"sent twice: {keys}"
    stored = list(slack_api.messages_in(slack_api.dm_channel("U1")))
    stored_keys = [m["metadata"]["event_payload"]["key"] for m in stored]
    assert len(stored_keys) == len(set(stored_keys)) == 3  # parent + one reply per check


@pytest.mark.parametrize(
    "failpoint",
    [
        "check-claimed",
        "check-before-commit",
        "check-committed",
        "delivery-claimed",
        "delivery-sent",  # the parent reached Slack, its ts was never recorded
        "delivery-sent:2",  # the same for the first thread reply
        "delivery-sent:3",
    ],
)
def test_kill_9_loses_nothing_and_sends_nothing_twice(
    failpoint: str, config: Path, tmp_path: Path, postgres_url: str, slack_api: FakeSlackAPI
) -> None:
    first = Feedbot(config, tmp_path / "a.log", failpoints=failpoint)
    try:
        assert post_deploy(first.url).status_code == 202
        first.wait_killed()
    finally:
        first.stop()
    second = Feedbot(config, tmp_path / "b.log")
    try:
        wait_all_done(postgres_url)
    finally:
        second.stop()
    assert_exactly_once(slack_api)


def test_kill_9_before_the_release_is_committed_loses_nothing(
    config: Path, tmp_path: Path, postgres_url: str, slack_api: FakeSlackAPI
) -> None:
    first = Feedbot(config, tmp_path / "a.log", failpoints="register-before-commit")
    try:
        with pytest.raises(httpx.TransportError):
            post_deploy(first.url)  # the sender sees no answer and retries, as CI does
        first.wait_killed()
    finally:
        first.stop()
    second = Feedbot(config, tmp_path / "b.log")
    try:
        answer = post_deploy(second.url)
        assert answer.status_code == 202 and answer.json()["created"] is True
        assert post_deploy(second.url).json()["created"] is False
        wait_all_done(postgres_url)
    finally:
        second.stop()
    assert_exactly_once(slack_api)
