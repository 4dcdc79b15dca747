"""The command line reads like one tool: every command and every option says what it does."""

from __future__ import annotations

import argparse
import importlib

import pytest

from feedbot.commands import COMMANDS, _parser, main


def test_help_lists_every_command_with_one_plain_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for name, (_, line) in COMMANDS.items():
        assert name in out.split() and line in out
        assert "``" not in line and ":func:" not in line and len(line) <= 80


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_every_command_has_help(name: str) -> None:
    module = importlib.import_module(f"feedbot.commands.{COMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"feedbot {name}")
    module.add_arguments(parser)
    silent = [
        action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert silent == []


def test_only_the_chosen_command_is_built() -> None:
    parser = _parser("tick")
    assert parser.parse_args(["tick"]).run.__module__ == "feedbot.commands.tick"
    with pytest.raises(SystemExit):
        parser.parse_args(["tick", "--no-such-option"])


def test_no_command_and_an_unknown_command_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2


def test_digest_needs_no_flag_for_its_only_mode() -> None:
    args = _parser("digest").parse_args(["digest", "--dry-run"])
    assert args.dry_run and args.run.__module__ == "feedbot.commands.digest"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("::", False)],
)
def test_serve_warns_of_an_open_span_ingest_beyond_loopback(
    host: str, loopback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from feedbot.commands.serve import warn_unprotected
    from feedbot.config import settings_from_mapping

    open_ingest = settings_from_mapping({"webhooks": {"secret": "s3cret-webhook"}}, {})
    with caplog.at_level("WARNING", logger="feedbot"):
        warn_unprotected(open_ingest, host)
    warned = [r.getMessage() for r in caplog.records if "traces.ingest_token" in r.getMessage()]
    assert bool(warned) is not loopback
    caplog.clear()
    closed = settings_from_mapping(
        {"webhooks": {"secret": "s3cret-webhook"}}, {"FEEDBOT_INGEST_TOKEN": "a-token-1234"}
    )
    with caplog.at_level("WARNING", logger="feedbot"):
        warn_unprotected(closed, host)
    assert not caplog.records
