"""Where the tests find the upstream recorded data: one setting, ``FEEDBOT_FIXTURES``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, fixtures_path


def test_default_is_shared_fixtures_beside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEEDBOT_FIXTURES", raising=False)
    assert (REPO_ROOT / "pyproject.toml").is_file()
    assert fixtures_path() == REPO_ROOT.parent.resolve() / "shared" / "fixtures"


def test_an_empty_variable_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBOT_FIXTURES", "")
    assert fixtures_path() == REPO_ROOT.parent.resolve() / "shared" / "fixtures"


def test_the_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEEDBOT_FIXTURES", str(tmp_path))
    assert fixtures_path() == tmp_path.resolve()


def test_a_relative_variable_is_taken_from_the_repository_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEEDBOT_FIXTURES", "tests/data")
    assert fixtures_path() == REPO_ROOT / "tests" / "data"


def test_a_test_without_the_data_is_not_marked(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("upstream_data") is None


def test_the_fixture_marks_its_test(fixtures_dir: Path, request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("upstream_data") is not None
    assert (fixtures_dir / "otlp" / "trace.json").is_file()
