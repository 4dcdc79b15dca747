"""The ``github`` section: the preview's token (validated, or GITHUB_TOKEN), API and window."""

from __future__ import annotations

import subprocess
import sys
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


# --- github.services: repository → services ----------------------------------------------------

MONOREPO = [
    {"service": "billing", "paths": ["services/billing", "libs/money/*.py"]},
    {"service": "search", "paths": ["services/search/**/*.go", "**/search_*.proto"]},
]


def test_services_map_a_repository_to_one_name_or_to_path_globs() -> None:
    github = settings_from_mapping(
        {"github": {"services": {"acme/vault": "vault-service", "acme/mono": MONOREPO}}}, {}
    ).github
    (vault,) = github.services["acme/vault"]
    billing, search = github.services["acme/mono"]
    assert (vault.service, vault.paths) == ("vault-service", ())
    assert billing.paths == ("services/billing", "libs/money/*.py")
    # A glob naming a directory covers everything under it; * stays within one directory.
    assert billing.owns("services/billing/api/app.py") and billing.owns("libs/money/cents.py")
    assert not billing.owns("services/billing2/app.py")
    assert not billing.owns("libs/money/sub/cents.py")
    # ** crosses directories, also none.
    assert search.owns("services/search/index.go") and search.owns("services/search/a/b/x.go")
    assert search.owns("proto/v1/search_api.proto") and search.owns("search_api.proto")
    assert not search.owns("services/search/README.md")


def test_a_repository_without_an_entry_deploys_its_name() -> None:
    from feedbot.config import repo_services

    services = settings_from_mapping({"github": {"services": {"Acme/Vault": "vs"}}}, {})
    assert [e.service for e in repo_services("acme/vault", services.github.services)] == ["vs"]
    assert [e.service for e in repo_services("acme/other", services.github.services)] == ["other"]


@pytest.mark.parametrize(
    ("services", "problem"),
    [
        (["acme/vault"], "github.services: expected a mapping of owner/name, got a list"),
        ({"vault": "vault"}, "github.services.vault: expected a repository as owner/name"),
        ({"acme/vault": 3}, "github.services.acme/vault: expected a service name or a list"),
        (
            {"acme/vault": []},
            "github.services.acme/vault: expected a service name or a list of "
            "{service, paths}, got an empty list",
        ),  # fmt: skip
        ({"acme/m": ["billing"]}, "github.services.acme/m[0]: expected a mapping, got a string"),
        ({"acme/m": [{"paths": ["a/**"]}]}, "github.services.acme/m[0].service: is required"),
        ({"acme/m": [{"service": "b"}]}, "github.services.acme/m[0].paths: is required"),
        ({"acme/m": [{"service": "b", "paths": []}]}, "github.services.acme/m[0].paths: needs"),
        ({"acme/m": [{"service": "b", "paths": [""]}]}, "github.services.acme/m[0].paths[0]: "),
        (
            {"acme/m": [{"service": "b", "paths": ["s/[ab]/*"]}]},
            "github.services.acme/m[0].paths[0]: 's/[ab]/*': only *, ** and ?",
        ),  # fmt: skip
        (
            {"acme/m": [{"service": "b", "paths": ["x"]}, {"service": "b", "paths": ["y"]}]},
            "github.services.acme/m[1].service: 'b' is listed twice",
        ),  # fmt: skip
        (
            {"acme/m": [{"service": "b", "path": ["x"]}]},
            "github.services.acme/m[0].path: unknown key (did you mean 'paths'?)",
        ),  # fmt: skip
    ],
)
def test_each_services_problem_names_its_key(services: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"github": {"services": services}}, {})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_check_config_exits_2_naming_the_services_entry(tmp_path: Path) -> None:
    path = tmp_path / "feedbot.yaml"
    path.write_text("github:\n  services:\n    acme/mono:\n      - service: billing\n")
    done = subprocess.run(
        [sys.executable, "-m", "feedbot", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "github.services.acme/mono[0].paths: is required (globs like services/billing/**)"
    )
