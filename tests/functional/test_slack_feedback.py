"""``/feedback`` and the buttons, through a real server, signed the way Slack signs them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from feedbot.analysis.compare import analyse
from feedbot.analysis.report import to_json
from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.checks.register import register_release
from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.policy import DetectionPolicy
from feedbot.runtime import Runtime, build_runtime
from feedbot.store.models import Acknowledgement, Check, Mute
from feedbot.web.app import create_app
from tests.factories import DEPLOYED, event
from tests.fakes.sdk_spans import json_line, query, release_spans
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers import AppServer
from tests.unit.analysis.test_report import CONTEXT, SERVED, _analysis

SECRET = "slack-signing-secret"


@pytest.fixture
def runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Runtime]:
    settings = settings_from_mapping(
        {
            "database_url": fresh_database_url,
            "slack": {
                "bot_token": "xoxb-t",
                "signing_secret": SECRET,
                "api_url": slack_api.base_url,
            },
            "services": {"vault-service": {"channel": "#vault"}, "ledger": {}},
            "features": {"appraisal": {"service": "vault-service", "spans": ["GET /r1"]}},
            "checks": {"after": ["15m"]},
        },
        {},
    )
    rt = build_runtime(settings, clock=FixedClock(DEPLOYED))
    report = to_json(_analysis(), SERVED)
    with rt.sessions() as session:
        release_id = register_release(session, event(), settings=settings, now=DEPLOYED).release_id
        check = session.scalars(select(Check).where(Check.release_id == release_id)).one()
        check.state, check.result = "done", {"report": report}
        session.commit()
    yield rt
    rt.engine.dispose()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
            timestamp=timestamp, body=body
        ),
    }


def command(client: httpx.Client, slack_api: FakeSlackAPI, text: str) -> dict[str, Any]:
    body = urlencode(
        {
            "command": "/feedback",
            "text": text,
            "user_id": "U123",
            "team_id": "T1",
            "channel_id": "C0VAULT",
            "api_app_id": "A1",
            "response_url": slack_api.response_url("cmd"),
            "trigger_id": "1.2.3",
        }
    ).encode()
    before = len(slack_api.responses)
    started = time.monotonic()
    answer = client.post("/slack/events", content=body, headers=signed(body))
    assert answer.status_code == 200 and time.monotonic() - started < 3
    assert answer.text == ""  # the ack is empty: the answer follows on response_url
    return wait_response(slack_api, before + 1)


def wait_response(slack_api: FakeSlackAPI, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while len(slack_api.responses) < count:
        assert time.monotonic() < deadline, "no answer on response_url"
        time.sleep(0.02)
    return slack_api.responses[count - 1]


def valid(blocks: list[dict[str, Any]]) -> str:
    for raw in blocks:
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
    assert len(blocks) <= 50
    return json.dumps(blocks, ensure_ascii=False)


def test_feedback_service_answers_ephemerally_from_stored_checks(
    client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    answer = command(client, slack_api, "vault-service")
    assert answer["response_type"] == "ephemeral"
    body = valid(answer["blocks"])
    assert "newest checked release 1.4.2 (production" in body and "against 1.4.1" in body
    assert "`GET /r1`: 17 → 17 spans/min · p50/p95/p99 17.2/39.0/52.9 → 21.3/47.7/64.1 ms" in body
    assert "`GET /r1` is 2" in body and "% slower: 17 → 21 ms at the median" in body  # its story
    assert "KeyError" in body
    assert "*Last releases*" in body and "1.4.2 · Nov 24 · 🔴 regressed" in body


def test_feedback_feature_narrows_to_its_spans_and_share_posts_in_channel(
    client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    answer = command(client, slack_api, "appraisal --share")
    assert answer["response_type"] == "in_channel"
    body = valid(answer["blocks"])
    assert "*appraisal (vault-service)*" in body and "GET /r1" in body
    assert "GET /r0" not in body and "KeyError" not in body  # other groups and findings


def test_feedback_says_who_calls_each_group_from_the_parents_of_sdk_spans(
    client: httpx.Client, slack_api: FakeSlackAPI, runtime: Runtime, tmp_path: Path
) -> None:
    """Spans from the OpenTelemetry SDK → a backend → the analysis → the stored report → Slack."""
    export = tmp_path / "traces.jsonl"
    lines = (json_line(release_spans("vault-service", v)) for v in ("1.4.1", "1.4.2"))
    export.write_text("\n".join(lines) + "\n")
    backend = OtlpFileBackend([str(export)])
    new, old = (backend.collect(query("vault-service", v)) for v in ("1.4.2", "1.4.1"))
    served = replace(CONTEXT, baseline_observed=old.observed, candidate_observed=new.observed)
    report = to_json(analyse(new, old, changes=(), policy=DetectionPolicy()), served)
    with runtime.sessions() as session:
        session.scalars(select(Check)).one().result = {"report": report}
        session.commit()
    body = valid(command(client, slack_api, "vault-service")["blocks"])
    # Both versions' spans lie within 35 s: counts and how long, too short a spell for a rate.
    line = "`SELECT * FROM items WHERE id = ?`: 18 spans in 35 s → 18 spans in 35 s · "
    assert line in body and "(n = 18 → 18)" in body

    assert "called by GET /orders/{id} (18)" in body  # a parent in the same trace and service
    assert "called by (remote) (2)" in body  # the consumer span's parent is in another service
    assert "called by (root) (6)" in body  # the requests themselves have no parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vault-servce", "I don't know `vault-servce`. Did you mean `vault-service`?"),
        ("nothing-like-it", "Services and features I know: `appraisal`, `ledger`, `vault-service`"),
        ("vault-service@9.9", "No finished check of `vault-service@9.9` yet"),
        ("ledger", "No finished check of `ledger` yet"),
    ],
)
def test_unknown_names_and_unchecked_services(
    client: httpx.Client, slack_api: FakeSlackAPI, text: str, expected: str
) -> None:
    answer = command(client, slack_api, text)
    assert expected in answer["text"]
    valid(answer["blocks"])


def press(
    client: httpx.Client, slack_api: FakeSlackAPI, action: dict[str, Any], secret: str = SECRET
) -> httpx.Response:
    payload = {
        "type": "block_actions",
        "user": {"id": "U9"},
        "api_app_id": "A1",
        "team": {"id": "T1"},
        "container": {"type": "message"},
        "trigger_id": "1.2",
        "response_url": slack_api.response_url("btn"),
        "actions": [{"type": "button", "block_id": "b", "action_ts": "1", **action}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return client.post("/slack/events", content=body, headers=signed(body, secret))


def test_expected_and_mute_buttons_are_acknowledged_and_recorded(
    client: httpx.Client, slack_api: FakeSlackAPI, runtime: Runtime
) -> None:
    with runtime.sessions() as session:
        release_id = session.scalars(select(Check.release_id)).one()
    key = "new_error_type|GET /r2|||KeyError|"
    value = f"{release_id}|{key}"
    assert press(client, slack_api, {"action_id": "feedbot_expected:1", "value": value}).text == ""
    assert "won't raise it again for vault-service 1.4.2" in wait_response(slack_api, 1)["text"]
    assert press(client, slack_api, {"action_id": "feedbot_mute", "value": "vault-service|24h"})
    assert "Muted vault-service until Nov 25 10:00 UTC" in wait_response(slack_api, 2)["text"]
    assert (
        press(client, slack_api, {"action_id": "feedbot_traces", "value": "ab"}).status_code == 200
    )
    with runtime.sessions() as session:
        [ack] = session.scalars(select(Acknowledgement)).all()
        assert (ack.release_id, ack.finding_key, ack.user_id) == (release_id, key, "U9")
        [mute] = session.scalars(select(Mute)).all()
        assert (mute.service, mute.user_id) == ("vault-service", "U9")
    # The acknowledged error type is gone from the /feedback answer too.
    answer = command(client, slack_api, "vault-service")
    assert "KeyError" not in json.dumps(answer["blocks"])


def test_a_story_s_expected_acknowledges_all_it_tells_and_details_show_the_evidence(
    client: httpx.Client, slack_api: FakeSlackAPI, runtime: Runtime
) -> None:
    with runtime.sessions() as session:
        check_id, release_id = session.execute(select(Check.id, Check.release_id)).one()
    keys = ["latency_regression|GET /r1||||", "new_error_type|GET /r2|||KeyError|"]
    value = f"{release_id}|" + "\n".join(keys)  # one story, two findings folded into it
    assert press(client, slack_api, {"action_id": "feedbot_expected:0", "value": value}).text == ""
    assert "is expected (and 1 related)" in wait_response(slack_api, 1)["text"]
    assert press(client, slack_api, {"action_id": "feedbot_details", "value": str(check_id)})
    details = wait_response(slack_api, 2)
    assert details["response_type"] == "ephemeral"
    body = valid(details["blocks"])
    assert "*Details* · +15m check of vault-service 1.4.2 → production" in body
    assert "Mann-Whitney" in body and "95% CI" in body  # the evidence behind the story
    with runtime.sessions() as session:
        stored = sorted(a.finding_key for a in session.scalars(select(Acknowledgement)))
    assert stored == sorted(keys)


def test_forged_button_presses_are_401_and_record_nothing(
    client: httpx.Client, slack_api: FakeSlackAPI, runtime: Runtime
) -> None:
    action = {"action_id": "feedbot_mute", "value": "vault-service|24h"}
    assert press(client, slack_api, action, secret="forged").status_code == 401
    with runtime.sessions() as session:
        assert session.scalars(select(Mute)).all() == []
