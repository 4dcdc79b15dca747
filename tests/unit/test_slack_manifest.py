"""The Slack app manifest asks for what feedbot uses, and points at feedbot's one Slack URL."""

from __future__ import annotations

from pathlib import Path

import yaml

from feedbot.notify.slack import __doc__ as notifier_doc

MANIFEST = Path(__file__).parents[2] / "slack" / "manifest.yaml"


def test_manifest_declares_the_command_buttons_and_scopes() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/feedback" and command["should_escape"] is False
    assert command["url"].endswith("/slack/events")
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] and interactivity["request_url"] == command["url"]
    assert manifest["settings"]["socket_mode_enabled"] is False
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "im:write", "users:read.email", "im:history"} <= scopes
    for scope in ("chat:write", "im:write", "users:read.email", "im:history"):
        assert scope in (notifier_doc or "")  # the notifier documents why it needs each
