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
