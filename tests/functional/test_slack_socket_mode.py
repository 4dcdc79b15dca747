"""``/feedback`` and the buttons over Socket Mode, against a loopback server speaking its protocol.

The same scenarios as test_slack_feedback.py (over HTTP), plus what only Socket Mode has: hello,
acknowledgements carrying the answer, Slack's ``disconnect`` and a connection that drops in the
middle of a command, with two replicas sharing one database.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from feedbot.checks.register import register_release
from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.errors import ConfigError
from feedbot.runtime import Runtime, build_runtime
from feedbot.slack.listeners import HELP
from feedbot.slack.socket_mode import SocketMode, socket_mode
from feedbot.store.models import Check, Mute, WebhookDelivery
from tests.factories import DEPLOYED, event
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.unit.analysis.test_report import SERVED, _analysis

APP_TOKEN = "xapp-1-A0FEEDBOT-1-socket"


@pytest.fixture
def slack(slack_api: FakeSlackAPI, socket_mode_server: FakeSocketModeServer) -> FakeSlackAPI:
    slack_api.socket_mode = socket_mode_server
    slack_api.app_token = APP_TOKEN
    return slack_api


@pytest.fixture
def runtime(fresh_database_url: str, slack: FakeSlackAPI) -> Iterator[Runtime]:
    from feedbot.analysis.report import to_json

    settings = settings_from_mapping(
        {
            "database_url": fresh_database_url,
            # No signing secret: nothing reaches feedbot over HTTP from Slack.
            "slack": {"bot_token": "xoxb-t", "app_token": APP_TOKEN, "api_url": slack.base_url},
            "services": {"vault-service": {"channel": "#vault"}, "ledger": {}},
            "checks": {"after": ["15m"]},
        },
        {},
    )
    rt = build_runtime(settings, clock=FixedClock(DEPLOYED))
    with rt.sessions() as session:
        release_id = register_release(session, event(), settings=settings, now=DEPLOYED).release_id
        check = session.scalars(select(Check).where(Check.release_id == release_id)).one()
        check.state, check.result = "done", {"report": to_json(_analysis(), SERVED)}
        session.commit()
    yield rt
    rt.engine.dispose()


@pytest.fixture
def replicas(runtime: Runtime) -> Iterator[list[SocketMode]]:
    """Started Socket Mode connections of feedbot replicas sharing ``runtime``'s database."""
    started: list[SocketMode] = []
    yield started
    for connection in started:
        connection.close()


def connect(runtime: Runtime, replicas: list[SocketMode], server: FakeSocketModeServer) -> None:
    """One more replica: its own bolt Apps and connection, the shared store."""
    before = len(server.open_links())
    connection = socket_mode(
        settings=runtime.settings, sessions=runtime.sessions, clock=runtime.clock
    )
    connection.start()
    replicas.append(connection)
    server.wait_open(before + 1)


def slash(slack: FakeSlackAPI, text: str, trigger: str) -> dict[str, Any]:
    return {
        "command": "/feedback",
        "text": text,
        "user_id": "U123",
        "team_id": "T1",
        "channel_id": "C0VAULT",
        "api_app_id": "A1",
        "response_url": slack.response_url(trigger),
        "trigger_id": trigger,
    }


def button(slack: FakeSlackAPI, action: dict[str, Any], trigger: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U9"},
        "api_app_id": "A1",
        "team": {"id": "T1"},
        "container": {"type": "message"},
        "trigger_id": trigger,
        "response_url": slack.response_url(trigger),
        "actions": [{"type": "button", "block_id": "b", "action_ts": "1", **action}],
    }


def answers_to(slack: FakeSlackAPI, trigger: str) -> list[dict[str, Any]]:
    return [r for r in slack.responses if r["_path"] == f"/response/{trigger}"]


def wait_answers(slack: FakeSlackAPI, trigger: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(answers_to(slack, trigger)) < count:
        assert time.monotonic() < deadline, f"no answer on response_url {trigger}"
        time.sleep(0.02)
    return answers_to(slack, trigger)


def test_hello_then_a_slash_command_is_acknowledged_and_answered(
    runtime: Runtime,
    replicas: list[SocketMode],
    slack: FakeSlackAPI,
    socket_mode_server: FakeSocketModeServer,
) -> None:
    connect(runtime, replicas, socket_mode_server)
    assert [call["_path"] for call in slack.responses] == []
    opened = slack.calls_to("apps.connections.open")
    assert len(opened) == 1  # the app-level token, not the bot token, asked for the URL

    sent = socket_mode_server.deliver("slash_commands", slash(slack, "vault-service", "t-1"))
    socket_mode_server.wait_for(lambda: sent.acked, what="the ack")
    assert sent.ack_payload is None  # an empty ack within 3 s: the answer follows on response_url
    [answer] = wait_answers(slack, "t-1")
    assert answer["response_type"] == "ephemeral"
    body = json.dumps(answer["blocks"], ensure_ascii=False)
    assert "newest checked release 1.4.2 (production" in body and "against 1.4.1" in body

    help_ = socket_mode_server.deliver("slash_commands", slash(slack, "help", "t-2"))
    socket_mode_server.wait_for(lambda: help_.acked, what="the help ack")
    assert help_.ack_payload == {"text": HELP}  # the answer travels in the acknowledgement
    time.sleep(0.3)
    assert answers_to(slack, "t-2") == []


def test_buttons_are_acknowledged_and_recorded(
    runtime: Runtime,
    replicas: list[SocketMode],
    slack: FakeSlackAPI,
    socket_mode_server: FakeSocketModeServer,
) -> None:
    connect(runtime, replicas, socket_mode_server)
    action = {"action_id": "feedbot_mute", "value": "vault-service|24h"}
    sent = socket_mode_server.deliver("interactive", button(slack, action, "b-1"))
    socket_mode_server.wait_for(lambda: sent.acked, what="the ack")
    [answer] = wait_answers(slack, "b-1")
    assert "Muted vault-service until Nov 25 10:00 UTC" in answer["text"]
    with runtime.sessions() as session:
        [mute] = session.scalars(select(Mute)).all()
        assert (mute.service, mute.user_id) == ("vault-service", "U9")


def test_slack_asks_for_a_new_connection_and_feedbot_moves_to_it(
    runtime: Runtime,
    replicas: list[SocketMode],
    slack: FakeSlackAPI,
    socket_mode_server: FakeSocketModeServer,
) -> None:
    connect(runtime, replicas, socket_mode_server)
    socket_mode_server.disconnect(1, "refresh_requested")
    # A fresh URL from apps.connections.open, a second connection, and the old one closed.
    socket_mode_server.wait_for(
        lambda: len(socket_mode_server._links) == 2 and not socket_mode_server._links[0].open,
        what="the move to a new connection",
    )
    # slack_sdk's client may ask for one URL more than it uses while it swaps connections.
    assert len(slack.calls_to("apps.connections.open")) >= 2
    assert socket_mode_server.link(1).close_code == 1000  # feedbot closed it, with a close frame
    sent = socket_mode_server.deliver("slash_commands", slash(slack, "ledger", "t-3"))
    assert sent.connection == 2
    socket_mode_server.wait_for(lambda: sent.acked, what="the ack on the new connection")
    wait_answers(slack, "t-3")


def test_a_connection_dropped_mid_command_loses_nothing_and_acts_once_across_replicas(
    runtime: Runtime,
    replicas: list[SocketMode],
    slack: FakeSlackAPI,
    socket_mode_server: FakeSocketModeServer,
) -> None:
    connect(runtime, replicas, socket_mode_server)  # replica A: connection 1
    connect(runtime, replicas, socket_mode_server)  # replica B: connection 2
    # Replica A gets the command and answers it, but its connection drops before the ack
    # reaches Slack: Slack delivers the envelope again, to replica B's connection.
    socket_mode_server.lose_next_ack()
    first = socket_mode_server.deliver("slash_commands", slash(slack, "vault-service", "t-4"), to=1)
    socket_mode_server.wait_for(
        lambda: any(
            e.acked for e in socket_mode_server._envelopes if e.envelope_id != first.envelope_id
        ),
        what="the redelivery to be acknowledged",
    )
    first, again = socket_mode_server.envelopes_for("trigger_id", "t-4")
    assert first.redelivered and not first.acked
    assert (again.connection, again.acked, again.envelope_id != first.envelope_id) == (
        2,
        True,
        True,
    )
    # Nothing lost: the asker got the answer. Nothing twice: exactly once, though both ran it.
    wait_answers(slack, "t-4")
    time.sleep(0.5)
    assert len(answers_to(slack, "t-4")) == 1
    # Replica A reconnects by itself.
    socket_mode_server.wait_open(2)

    # A button whose envelope is lost with its connection before feedbot saw it: delivered
    # again, recorded once.
    socket_mode_server.lose_next_ack()
    action = {"action_id": "feedbot_mute", "value": "ledger|1h"}
    socket_mode_server.deliver("interactive", button(slack, action, "b-2"), to=2)
    socket_mode_server.wait_for(
        lambda: any(
            e.acked for e in socket_mode_server._envelopes if e.payload.get("trigger_id") == "b-2"
        ),
        what="the button's ack",
    )
    wait_answers(slack, "b-2")
    time.sleep(0.5)
    assert len(answers_to(slack, "b-2")) == 1
    with runtime.sessions() as session:
        assert len(session.scalars(select(Mute).where(Mute.service == "ledger")).all()) == 1
        kept = session.scalars(select(WebhookDelivery.delivery_id)).all()
    assert sorted(kept) == ["interactive:b-2", "slash_commands:t-4"]


def test_a_token_slack_refuses_is_a_config_error(
    runtime: Runtime, slack: FakeSlackAPI, caplog: pytest.LogCaptureFixture
) -> None:
    slack.app_token = "xapp-the-other-one"
    connection = socket_mode(
        settings=runtime.settings, sessions=runtime.sessions, clock=runtime.clock
    )
    with pytest.raises(ConfigError) as raised:
        connection.start()
    connection.close()
    assert raised.value.problems == [
        "slack.app_token: Slack refused it in apps.connections.open (invalid_auth)"
    ]


def test_slack_out_of_reach_at_start_is_retried_in_the_background(
    runtime: Runtime,
    slack: FakeSlackAPI,
    socket_mode_server: FakeSocketModeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack.fail_next("apps.connections.open", status=503, times=2)
    connection = socket_mode(
        settings=runtime.settings, sessions=runtime.sessions, clock=runtime.clock
    )
    connection._retry_first = 0.05
    try:
        with caplog.at_level(logging.WARNING, "feedbot.slack.socket_mode"):
            connection.start()  # does not raise: webhooks and spans must not wait for Slack
            socket_mode_server.wait_open(1)
        assert "retrying" in caplog.text
        assert len(slack.calls_to("apps.connections.open")) == 3
    finally:
        connection.close()
