"""The ``github`` section: the preview's token (validated, or GITHUB_TOKEN), API and window."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from feedbot.config import load_settings, settings_from_mapping
from feedbot.errors import ConfigError
from feedbot.logs import secrets_of

TOKEN = "github_pat_" + "11ABCDEFG0" * 6


def test_defaults_have_no_token() -> None:
    github = settings_from_mapping({}, {}).github
    assert github.token is None and github.api_url == "https://api.github.com"
    assert github.preview_window == timedelta(days=7)


def test_token_from_the_file_or_github_token_which_wins() -> None:
    from_file = settings_from_mapping({"github": {"token": TOKEN}}, {})
    from_env = settings_from_mapping(
        {"github": {"token": "ghp_" + "x" * 36}}, {"GITHUB_TOKEN": TOKEN}
    )
    assert from_file.github.token == TOKEN and from_env.github.token == TOKEN
    assert TOKEN in secrets_of(from_env)  # masked in every log line


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"token": "hunter2"}, "github.token: expected a GitHub token"),
        ({"token": "ghp_has spaces in it and more than thirty chars"}, "github.token: expected"),
        ({"api_url": "api.github.com"}, "github.api_url: 'api.github.com' is not an http(s) URL"),
        ({"preview_window": "5m"}, "github.preview_window: must be between 1h and 90d"),
        ({"preview_window": "soon"}, "github.preview_window: "),
        ({"tokn": TOKEN}, "github.tokn: unknown key (did you mean 'token'?)"),
    ],
)
def test_each_problem_names_its_key(raw: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"github": raw}, {})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_bad_github_token_in_the_environment_is_named_by_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({}, {"GITHUB_TOKEN": "not a token"})
    assert caught.value.problems[0].startswith("github.token: expected a GitHub token")


def test_the_example_config_reads_with_and_without_a_token() -> None:
    example = Path(__file__).parents[2] / "config.example.yaml"
    assert load_settings(example, {}).github.token is None
    assert load_settings(example, {"GITHUB_TOKEN": TOKEN}).github.token == TOKEN
