"""What identifies a Socket Mode request across redeliveries."""

from __future__ import annotations

from slack_sdk.socket_mode.request import SocketModeRequest

from feedbot.slack.socket_mode import ID_MAX, delivery_id


def request(type: str, envelope_id: str, payload: dict[str, object]) -> SocketModeRequest:
    return SocketModeRequest(type=type, envelope_id=envelope_id, payload=payload)


def test_a_redelivery_is_known_by_its_payload_whatever_its_envelope_id() -> None:
    command = {"command": "/feedback", "trigger_id": "1.2.3"}
    assert delivery_id(request("slash_commands", "e1", command)) == "slash_commands:1.2.3"
    assert delivery_id(request("slash_commands", "e2", command)) == "slash_commands:1.2.3"
    event = {"event_id": "Ev1", "event": {"type": "app_home_opened"}}
    assert delivery_id(request("events_api", "e3", event)) == "events_api:Ev1"


def test_without_a_payload_id_the_envelope_id_serves_and_ids_fit_the_column() -> None:
    assert delivery_id(request("interactive", "e4", {"type": "view_closed"})) == "interactive:e4"
    assert len(delivery_id(request("interactive", "e5", {"trigger_id": "x" * 500}))) == ID_MAX
