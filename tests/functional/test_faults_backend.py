"""A trace backend that is slow or answers garbage, under a real ``feedbot serve``.

The backend is a real Jaeger query API on loopback (:class:`tests.fakes.trace_servers.FakeJaeger`)
told to misbehave. A backend slower than ``traces.timeout`` fails the check's try; the check is
tried again after its backoff and ends ``done`` once the backend recovers, with one reply and no
failure note. A backend that only ever answers garbage fails the check for good after
``checks.max_attempts`` tries, and the owner gets one clear note saying so.
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
from feedbot.store.models import Check
from tests.conftest import truncate_all
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.trace_servers import FakeJaeger
from tests.processes import Feedbot

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "faults-secret"
TRACES = "/api/v3/traces"


@pytest.fixture
def jaeger() -> Iterator[FakeJaeger]:
    with FakeJaeger() as fake:
        yield fake


@pytest.fixture
def feedbot(
    tmp_path: Path, postgres_url: str, slack_api: FakeSlackAPI, jaeger: FakeJaeger
) -> Iterator[Feedbot]:
    conf = {
        "database_url": postgres_url,
        "webhooks": {"secret": SECRET},
        "slack": {"bot_token": "xoxb-f", "signing_secret": "s", "api_url": slack_api.base_url},
        "traces": {"backend": "jaeger", "url": jaeger.base_url, "timeout": "300ms"},
        "checks": {"after": ["1s"], "tick": "200ms", "retry_backoff": "1s", "max_attempts": 3},
    }
    config = tmp_path / "feedbot.yaml"
    config.write_text(yaml.safe_dump(conf))
    process = Feedbot(config, tmp_path / "feedbot.log")
    try:
        yield process
    finally:
        process.stop()
        truncate_all(postgres_url)


def deploy(url: str) -> None:
    body = json.dumps({"service": "vault", "version": "2.0", "author": {"slack": "U1"}}).encode()
    headers = {"X-Feedbot-Signature": sign(body, SECRET)}
    assert httpx.post(f"{url}/webhooks/deploy", content=body, headers=headers).status_code == 202


def wait_check(postgres_url: str, state: str, timeout: float = 60) -> Check:
    engine = make_engine(postgres_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with make_sessions(engine)() as session:
                check = session.scalars(select(Check)).one()
            if check.state == state:
                return check
            assert time.monotonic() < deadline, (check.state, check.attempts, check.last_error)
            time.sleep(0.2)
    finally:
        engine.dispose()


def replies(slack_api: FakeSlackAPI) -> list[str]:
    """Texts of the thread replies sent (the parent is the only top-level message)."""
    return [p["text"] for p in slack_api.calls_to("chat.postMessage") if p.get("thread_ts")]


def wait_replies(slack_api: FakeSlackAPI, count: int) -> list[str]:
    deadline = time.monotonic() + 30
    while len(replies(slack_api)) < count:
        assert time.monotonic() < deadline, replies(slack_api)
        time.sleep(0.1)
    time.sleep(1)  # a few more ticks: nothing else may arrive
    return replies(slack_api)


def test_a_backend_slower_than_the_timeout_is_retried_until_it_answers(
    feedbot: Feedbot, jaeger: FakeJaeger, slack_api: FakeSlackAPI, postgres_url: str
) -> None:
    # Four slow answers: every attempt of the adapter's first call times out.
    jaeger.fail_next(TRACES, delay=1.0, status=200, times=4)
    deploy(feedbot.url)
    check = wait_check(postgres_url, "done")
    assert check.attempts == 1 and "timed out" in (check.last_error or "").lower()
    assert feedbot.proc.poll() is None
    [reply] = wait_replies(slack_api, 1)
    assert "+1s check of vault 2.0" in reply and "failed" not in reply


def test_a_backend_answering_garbage_fails_the_check_with_one_note_to_the_owner(
    feedbot: Feedbot, jaeger: FakeJaeger, slack_api: FakeSlackAPI, postgres_url: str
) -> None:
    jaeger.fail_next(TRACES, body=b"<html>proxy error</html>", status=200, times=1000)
    deploy(feedbot.url)
    check = wait_check(postgres_url, "failed")
    assert check.attempts == 3
    assert feedbot.proc.poll() is None
    [note] = wait_replies(slack_api, 1)
    assert "failed after 3 tries" in note and "jaeger" in note.lower()
