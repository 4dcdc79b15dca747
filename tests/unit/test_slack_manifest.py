"""The Slack app manifest asks for what feedbot uses, and points at feedbot's one Slack URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from feedbot.notify.slack import __doc__ as notifier_doc

MANIFEST = Path(__file__).parents[2] / "slack" / "manifest.yaml"
SOCKET_MODE = MANIFEST.with_name("manifest-socket-mode.yaml")


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
    assert "files:write" in scopes  # charts are uploaded into the thread
    for scope in ("chat:write", "files:write", "im:write", "users:read.email", "im:history"):
        assert scope in (notifier_doc or "")  # the notifier documents why it needs each


def test_the_socket_mode_manifest_is_the_same_app_without_urls() -> None:
    http, socket = (yaml.safe_load(path.read_text()) for path in (MANIFEST, SOCKET_MODE))
    assert socket["settings"]["socket_mode_enabled"] is True
    assert "url" not in socket["features"]["slash_commands"][0]
    assert "request_url" not in socket["settings"]["interactivity"]
    assert socket["settings"]["interactivity"]["is_enabled"] is True
    # The same command and scopes either way: one of the two must not fall behind.
    [command] = socket["features"]["slash_commands"]
    assert {**command, "url": http["features"]["slash_commands"][0]["url"]} == (
        http["features"]["slash_commands"][0]
    )
    assert socket["oauth_config"] == http["oauth_config"]
    # The same events and App Home too; only HTTP mode has a request URL for them.
    assert "request_url" not in socket["settings"]["event_subscriptions"]
    assert {**socket["settings"]["event_subscriptions"], "request_url": command_url(http)} == (
        http["settings"]["event_subscriptions"]
    )
    assert socket["features"]["app_home"] == http["features"]["app_home"]


def command_url(manifest: dict[str, Any]) -> str:
    return str(manifest["features"]["slash_commands"][0]["url"])


def test_the_home_tab_is_enabled_and_published_when_opened() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True  # the DM threads
    events = manifest["settings"]["event_subscriptions"]
    assert events["bot_events"] == ["app_home_opened"]
    assert events["request_url"] == command_url(manifest)
