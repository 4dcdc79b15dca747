"""The App Home through a real server and the fake Slack: published on ``app_home_opened`` (a
signed event), republished through the outbox when a check of the person's release finishes,
and its Mute button."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from feedbot.analysis.report import to_json
from feedbot.checks.pipeline import Finished
from feedbot.checks.recorder import CheckRecorder
from feedbot.checks.register import register_release
from feedbot.clock import FixedClock
from feedbot.config import Settings, settings_from_mapping
from feedbot.digest import story
from feedbot.digest.blocks import escape
from feedbot.runtime import Runtime, build_runtime
from feedbot.store.models import Check, Delivery, Mute
from feedbot.web.app import create_app
from tests.factories import DEPLOYED, event
from tests.fakes.slack_api import FakeSlackAPI
from tests.functional.test_slack_feedback import SECRET, signed
from tests.servers import AppServer
from tests.unit.analysis.test_report import CONTEXT, _analysis

AUTHOR, OWNER = "U123", "U0OWNER"


@pytest.fixture
def settings(fresh_database_url: str, slack_api: FakeSlackAPI) -> Settings:
    return settings_from_mapping(
        {
            "database_url": fresh_database_url,
            "slack": {
                "bot_token": "xoxb-t",
                "signing_secret": SECRET,
                "api_url": slack_api.base_url,
            },
            "services": {"vault-service": {"channel": "#vault", "owners": [OWNER, "#ops"]}},
            "checks": {"after": ["15m", "1h"]},
        },
        {},
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DEPLOYED)


@pytest.fixture
def runtime(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    rt = build_runtime(settings, clock=clock)
    with rt.sessions() as session:
        register_release(session, event(), settings=settings, now=DEPLOYED)
        session.commit()
    yield rt
    rt.engine.dispose()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def finish_checks(runtime: Runtime, settings: Settings, clock: FixedClock, count: int) -> None:
    """Record the first ``count`` checks of the release done, as the runner would."""
    report = to_json(_analysis(), CONTEXT)
    recorder = CheckRecorder(settings=settings, clock=clock, worker=runtime.worker)
    with runtime.sessions() as session:
        checks = session.scalars(select(Check).order_by(Check.offset_seconds)).all()[:count]
        for check in checks:
            check.state, check.claimed_by = "running", runtime.worker
            check.lease_until = clock.now() + timedelta(minutes=5)
            session.commit()
            done = Finished(analysis=_analysis(), report=report, text="regressed")
            assert recorder.finish(session, check, done) == "done"


def open_home(client: httpx.Client, user: str, tab: str = "home") -> httpx.Response:
    body = json.dumps(
        {
            "token": "unused",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": f"Ev{user}{tab}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": "D1",
                "tab": tab,
                "event_ts": "1.1",
            },  # fmt: skip
        }
    ).encode()
    headers = {**signed(body), "Content-Type": "application/json"}
    return client.post("/slack/events", content=body, headers=headers)


def wait_publish(slack_api: FakeSlackAPI, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(slack_api.calls_to("views.publish")) < count:
        assert time.monotonic() < deadline, "views.publish was not called"
        time.sleep(0.02)
    return slack_api.calls_to("views.publish")


def test_opening_the_home_tab_publishes_the_person_s_releases(
    client: httpx.Client, slack_api: FakeSlackAPI, runtime: Runtime, settings: Settings,
    clock: FixedClock,
) -> None:  # fmt: skip
    finish_checks(runtime, settings, clock, 1)
    answer = open_home(client, AUTHOR)
    assert answer.status_code == 200
    [call] = wait_publish(slack_api, 1)
    assert call["user_id"] == AUTHOR
    view = slack_api.home_view(AUTHOR)
    assert view is not None and view["type"] == "home"  # the fake checked it (≤ 100 blocks)
    body = json.dumps(view, ensure_ascii=False)
    headline = story.tell(to_json(_analysis(), CONTEXT)).headline
    assert "*vault-service 1.4.2* → production" in body and escape(headline) in body
    assert "1 open finding" in body
    [mute] = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
              if e["action_id"] == "feedbot_mute"]  # fmt: skip
    assert mute["value"] == "vault-service|24h"


def test_the_messages_tab_and_forged_events_publish_nothing(
    client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    assert open_home(client, AUTHOR, tab="messages").status_code == 200
    body = b'{"type":"event_callback","event":{"type":"app_home_opened","user":"U123"}}'
    forged = client.post("/slack/events", content=body, headers=signed(body, "wrong"))
    assert forged.status_code == 401
    time.sleep(0.5)
    assert slack_api.calls_to("views.publish") == []


def test_a_finished_check_republishes_author_and_owner_once_despite_429(
    slack_api: FakeSlackAPI, runtime: Runtime, settings: Settings, clock: FixedClock
) -> None:
    finish_checks(runtime, settings, clock, 2)  # two checks: two rows per person
    with runtime.sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.kind == "home")).all()
        assert sorted(r.recipient for r in rows) == [OWNER, OWNER, AUTHOR, AUTHOR]  # not #ops
    # Slack rate-limits views.publish beyond the client's own retries: the row waits.
    slack_api.fail_next("views.publish", status=429, retry_after=0, times=4)
    runtime.sender.send_due()
    assert slack_api.home_view(OWNER) is None
    clock.advance(timedelta(minutes=5))
    runtime.sender.send_due()
    published = [c["user_id"] for c in slack_api.calls_to("views.publish")]
    # The owner's newest row: four refused tries, then (after its backoff) published; the
    # author's newest row published at once; the older rows of each made no call at all.
    assert published == [OWNER] * 4 + [AUTHOR, OWNER]
    for user in (AUTHOR, OWNER):
        view = slack_api.home_view(user)
        assert view is not None and "vault-service" in json.dumps(view)
    owner_view = json.dumps(slack_api.home_view(OWNER), ensure_ascii=False)
    assert "Services you own" in owner_view and "1.4.2 · 🔴 regressed" in owner_view
    with runtime.sessions() as session:
        states = session.scalars(select(Delivery.state).where(Delivery.kind == "home")).all()
        assert set(states) == {"sent"}
        # The thread's messages went out as before.
        assert {"parent", "reply", "status"} <= set(session.scalars(select(Delivery.kind)).all())


def test_mute_pressed_in_the_home_tab_is_recorded_and_republished(
    client: httpx.Client, slack_api: FakeSlackAPI, runtime: Runtime
) -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": AUTHOR},
        "api_app_id": "A1",
        "team": {"id": "T1"},
        "container": {"type": "view", "view_id": "V1"},
        "view": {"id": "V1", "type": "home", "blocks": []},
        "trigger_id": "1.2",
        "actions": [{"type": "button", "block_id": "b", "action_ts": "1",
                     "action_id": "feedbot_mute", "value": "vault-service|24h"}],
    }  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert client.post("/slack/events", content=body, headers=signed(body)).status_code == 200
    [call] = wait_publish(slack_api, 1)
    assert call["user_id"] == AUTHOR
    assert "🔕 vault-service is muted until Nov 25 10:00 UTC" in json.dumps(
        slack_api.home_view(AUTHOR), ensure_ascii=False
    )
    with runtime.sessions() as session:
        [mute] = session.scalars(select(Mute)).all()
        assert (mute.service, mute.user_id) == ("vault-service", AUTHOR)
