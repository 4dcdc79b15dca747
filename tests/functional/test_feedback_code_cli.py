"""``feedbot feedback <function | file | route>`` in a terminal, from a database that real SDK
spans reached through the real check pipeline; and the issue's feature that matches nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feedbot.store.db import make_engine, make_sessions, migrate
from tests.functional.test_cli import feedbot, write_config
from tests.unit.checks.test_code_history import _run, _setup

FEATURES = {"appraisal": {"service": "vault-service", "spans": ["POST /vaults/*/appraise"]}}


def _checked(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
        sessions = make_sessions(engine)
        _setup(sessions, errors=6)
        _run(sessions, timedelta(minutes=15))
    finally:
        engine.dispose()


def test_feedback_about_code_in_a_terminal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    _checked(url)
    done = feedbot("feedback", "Appraiser.appraise", "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Appraiser.appraise — function")
    assert "of serving in production" in done.stdout and "GET /vaults/{id}" in done.stdout
    route = feedbot("feedback", "GET", "/vaults/{id}", "--database-url", url)
    assert route.returncode == 0 and "operation `GET /vaults/{id}`" in route.stdout
    missing = feedbot("feedback", "Appraiser.apprise", "--database-url", url)
    assert missing.returncode == 1
    assert "I don't know `Appraiser.apprise`" in missing.stdout
    assert "vault.appraisal.Appraiser.appraise" in missing.stdout


def test_a_feature_that_matches_nothing_carries_no_verdict(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    _checked(url)
    config = write_config(tmp_path / "feedbot.yaml", {"database_url": url, "features": FEATURES})
    done = feedbot("feedback", "appraisal", "--config", str(config))
    assert done.returncode == 1, done.stderr
    assert "`appraisal` matches nothing" in done.stdout
    assert "regressed" not in done.stdout and "0 spans" not in done.stdout
