"""The ``feedbot`` command as a user runs it: real ``python -m feedbot`` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from feedbot.checks.register import register_release
from feedbot.config import settings_from_mapping
from feedbot.releases.event import Author
from feedbot.store.db import make_engine, make_sessions, migrate
from feedbot.store.models import Delivery
from tests.factories import event, sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.socket_mode import FakeSocketModeServer

REPO = Path(__file__).resolve().parents[2]
TABLES = {"releases", "changes", "checks", "deliveries", "spans", "alembic_version"}


def feedbot(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m feedbot ARGS`` to completion, capturing its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "feedbot", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def alembic_head() -> str:
    config = Config()
    config.set_main_option("script_location", "feedbot.store:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feedbot.db'}"


# --- check-config ----------------------------------------------------------------------------


def test_check_config_accepts_the_example_config() -> None:
    done = feedbot("check-config", str(REPO / "config.example.yaml"))
    assert done.returncode == 0, done.stderr
    assert "config.example.yaml: ok" in done.stdout
    assert "1 services, 1 features" in done.stdout


def test_check_config_lists_every_problem_once_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "\n".join(
            [
                "slak:",
                "  channel: '#x'",
                "slack:",
                "  bot_token: xoxb-1",
                "traces:",
                "  backend: tempo",
                "checks:",
                "  after: [15m, soon]",
                "  max_attempts: lots",
            ]
        ),
        encoding="utf-8",
    )
    done = feedbot("check-config", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert sorted(done.stderr.splitlines()) == sorted(
        [
            "slak: unknown key (did you mean 'slack'?)",
            "checks.after[1]: 'soon' is not a duration like 20s, 15m, 1h or 1d",
            "checks.max_attempts: expected an integer, got a string",
            "slack.signing_secret: is required when slack.bot_token is set "
            "(set SLACK_SIGNING_SECRET, or SLACK_APP_TOKEN for Socket Mode)",
            "traces.url: is required for traces.backend 'tempo'",
        ]
    )


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = feedbot("check-config", str(missing))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{missing}: cannot read the file (No such file or directory)"
    ]


def test_check_config_on_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("checks:\n  after: [15m\nslack: {}\n", encoding="utf-8")
    done = feedbot("check-config", str(path))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{path}: not valid YAML at line ")


# --- migrate ---------------------------------------------------------------------------------


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path, sqlite_file: str) -> None:
    config = write_config(tmp_path / "feedbot.yaml", {"database_url": sqlite_file})
    first = feedbot("migrate", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "is up to date" in first.stdout

    engine = make_engine(sqlite_file)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert [v for (v,) in versions] == [alembic_head()]
    finally:
        engine.dispose()

    second = feedbot("migrate", "--config", str(config))
    assert second.returncode == 0, second.stderr
    assert "Running upgrade" not in second.stderr


def test_migrating_a_store_with_duplicate_spans_keeps_the_first_copy(sqlite_file: str) -> None:
    # A store filled before 0005 holds an exporter's retries twice; the upgrade keeps one each.
    config = Config()
    config.set_main_option("script_location", "feedbot.store:migrations")
    config.set_main_option("sqlalchemy.url", sqlite_file)
    command.upgrade(config, "0004")
    engine = make_engine(sqlite_file)
    row = (
        "INSERT INTO spans (trace_id, span_id, service, name, kind, start_ns, duration_ns, "
        "is_error, attributes, events, received_at) VALUES "
        "(:trace, :span, 'svc', :name, 'SERVER', 0, 1000, 0, '{}', '[]', '2026-12-07')"
    )
    copies = [
        ("t1", "s1", "first"),
        ("t1", "s1", "retry"),
        ("t1", "s2", "other"),
        ("t2", "s1", "x"),
    ]
    try:
        with engine.begin() as connection:
            for trace, span, name in copies:
                connection.execute(text(row), {"trace": trace, "span": span, "name": name})
        command.upgrade(config, "head")
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT trace_id, span_id, name FROM spans")).all()
        assert sorted(kept) == [("t1", "s1", "first"), ("t1", "s2", "other"), ("t2", "s1", "x")]
    finally:
        engine.dispose()


# --- serve -----------------------------------------------------------------------------------


class Serve:
    """A ``feedbot serve`` process; output goes to files so a chatty log never blocks it."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.stdout_path, self.stderr_path = tmp_path / "serve.out", tmp_path / "serve.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "feedbot", "serve", *args],
                env={**os.environ, **env},
                stdout=out,
                stderr=err,
                start_new_session=True,  # a group of its own, ended with its children
            )

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited early: {self.stderr()}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not answer /healthz: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:  # not reaped, so the group id is still its own
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def serve_processes() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for process in started:
        process.kill()


def test_serve_answers_and_stops_cleanly_on_sigterm(
    tmp_path: Path, sqlite_file: str, serve_processes: list[Serve]
) -> None:
    port = free_port()
    raw = {"database_url": sqlite_file, "server": {"port": port}, "checks": {"after": ["1h"]}}
    config = write_config(tmp_path / "feedbot.yaml", raw)
    engine = make_engine(sqlite_file)
    try:
        migrate(engine)
        now = datetime.now(UTC)
        with make_sessions(engine)() as session:
            deploy = event(deployed_at=now)
            register_release(session, deploy, settings=settings_from_mapping(raw, {}), now=now)
    finally:
        engine.dispose()

    # The config comes from FEEDBOT_CONFIG, not --config.
    serve = Serve(tmp_path, [], {"FEEDBOT_CONFIG": str(config)})
    serve_processes.append(serve)
    url = f"http://127.0.0.1:{port}"
    serve.wait_ready(url)

    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.status_code == 200
    assert 'feedbot_checks{state="pending"} 1' in metrics.text
    assert "feedbot_releases 1" in metrics.text

    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=15) == 0, serve.stderr()
    assert "Traceback" not in serve.stderr()
    assert not listening(port)


def test_serve_on_loopback_without_a_secret_prints_one_that_signs_deploys(
    tmp_path: Path, sqlite_file: str, serve_processes: list[Serve]
) -> None:
    port = free_port()
    raw = {"database_url": sqlite_file, "server": {"port": port}}
    serve = Serve(tmp_path, ["--config", str(write_config(tmp_path / "f.yaml", raw))], {})
    serve_processes.append(serve)
    url = f"http://127.0.0.1:{port}"
    serve.wait_ready(url)
    (secret,) = re.findall(r"FEEDBOT_WEBHOOK_SECRET=(\S+) feedbot notify-deploy", serve.stderr())
    assert f"--url {url} " in serve.stderr() and f"{url}/v1/traces" in serve.stderr()

    body = json.dumps({"service": "cart", "version": "1.0.0"}).encode()
    unsigned = httpx.post(f"{url}/webhooks/deploy", content=body)
    signed = httpx.post(
        f"{url}/webhooks/deploy", content=body, headers={"X-Feedbot-Signature": sign(body, secret)}
    )
    assert unsigned.status_code == 401
    assert signed.status_code == 202 and signed.json()["created"] is True
    # A second run makes a new secret: one printed in a log is worth nothing after a restart.
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=15) == 0


def test_serve_beyond_loopback_makes_up_no_secret(
    tmp_path: Path, sqlite_file: str, serve_processes: list[Serve]
) -> None:
    port = free_port()
    raw = {"database_url": sqlite_file, "server": {"port": port, "host": "0.0.0.0"}}
    serve = Serve(tmp_path, ["--config", str(write_config(tmp_path / "f.yaml", raw))], {})
    serve_processes.append(serve)
    serve.wait_ready(f"http://127.0.0.1:{port}")
    assert "FEEDBOT_WEBHOOK_SECRET=" not in serve.stderr()
    assert "webhooks.secret is not set: POST /webhooks/deploy refuses every request" in (
        serve.stderr()
    )
    body = b'{"service": "cart", "version": "1.0.0"}'
    assert httpx.post(f"http://127.0.0.1:{port}/webhooks/deploy", content=body).status_code in (
        401,
        503,
    )


def test_serve_refuses_a_config_with_problems(tmp_path: Path, sqlite_file: str) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "feedbot.yaml",
        {"database_url": sqlite_file, "server": {"port": port}, "traces": {"backend": "tempo"}},
    )
    done = feedbot("serve", "--config", str(config), timeout=30)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["traces.url: is required for traces.backend 'tempo'"]
    assert not listening(port)
    assert not (tmp_path / "feedbot.db").exists()


# --- tick ------------------------------------------------------------------------------------


def test_tick_runs_due_checks_and_prints_to_the_console(tmp_path: Path, sqlite_file: str) -> None:
    raw = {"database_url": sqlite_file, "checks": {"after": ["15m"]}}
    config = write_config(tmp_path / "feedbot.yaml", raw)
    engine = make_engine(sqlite_file)
    now = datetime.now(UTC)
    try:
        migrate(engine)
        with make_sessions(engine)() as session:
            deploy = event(author=Author(name="Bill"), deployed_at=now - timedelta(hours=2))
            register_release(session, deploy, settings=settings_from_mapping(raw, {}), now=now)
    finally:
        engine.dispose()

    done = feedbot("tick", "--config", str(config))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    parent = out.index("🚀 vault-service 1.4.2 → production, shipped by Bill")
    reply = out.index("🔎 +15m check of vault-service 1.4.2 → production")
    assert parent < reply
    assert out.count("=== feedbot -> console ===") == 2
    assert "(reply in thread console/console-1)" in out

    engine = make_engine(sqlite_file)
    try:
        with engine.connect() as connection:
            checks = connection.execute(text("SELECT state FROM checks")).scalars().all()
            deliveries = connection.execute(text("SELECT state FROM deliveries")).scalars().all()
    finally:
        engine.dispose()
    assert checks == ["done"]
    assert deliveries and set(deliveries) == {"sent"}

    again = feedbot("tick", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert "===" not in again.stdout


# --- feedback ------------------------------------------------------------------------------


def checked_release(database_url: str, raw: dict[str, Any]) -> None:
    """A registered release whose first check finished with the analysis tests' report."""
    from sqlalchemy import select

    from feedbot.analysis.report import to_json
    from feedbot.store.models import Check
    from tests.unit.analysis.test_report import SERVED, _analysis

    engine = make_engine(database_url)
    try:
        migrate(engine)
        with make_sessions(engine)() as session:
            settings = settings_from_mapping({**raw, "database_url": database_url}, {})
            now = datetime.now(UTC)
            release = register_release(session, event(), settings=settings, now=now).release_id
            check = session.scalars(select(Check).where(Check.release_id == release)).first()
            assert check is not None
            check.state, check.result = "done", {"report": to_json(_analysis(), SERVED)}
            session.commit()
    finally:
        engine.dispose()


def test_feedback_prints_the_slash_commands_answer_from_the_database(
    tmp_path: Path, sqlite_file: str
) -> None:
    checked_release(sqlite_file, {})
    done = feedbot("feedback", "vault-service", "--database-url", sqlite_file)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("vault-service — newest checked release 1.4.2 (production")
    assert "against 1.4.1" in out
    assert "Traffic, callers and latency (baseline → now)" in out  # bold markers are gone
    # 2,000 spans in the 2 h the baseline served (of its 4 h window), 2,000 in 2 h of the new
    # version: the same traffic (over the whole windows it would seem to have doubled)
    assert "`GET /r1`: 17 → 17 spans/min · p50/p95/p99 17.2/39.0/52.9 → 21.3/47.7/64.1 ms" in out
    assert "`GET /r1` is 2" in out and "% slower: 17 → 21 ms at the median" in out  # its story
    assert "KeyError" in out
    assert "1.4.2 · " in out and "🔴 regressed" in out
    assert "*" not in out.replace("* ", "") and "&lt;" not in out

    missing = feedbot("feedback", "vault-servce", "--database-url", sqlite_file)
    assert missing.returncode == 1  # no answer, as a script running it must be able to tell
    assert "I don't know `vault-servce`. Did you mean `vault-service`?" in missing.stdout

    helped = feedbot("feedback", "help", "--database-url", sqlite_file)
    assert helped.returncode == 0, helped.stderr
    assert "feedbot feedback <service>@<version>" in helped.stdout
    assert "/feedback" not in helped.stdout and "*" not in helped.stdout


def test_feedback_narrows_to_a_feature_from_the_config(tmp_path: Path, sqlite_file: str) -> None:
    raw = {
        "database_url": sqlite_file,
        "features": {"appraisal": {"service": "vault-service", "spans": ["GET /r1"]}},
    }
    checked_release(sqlite_file, raw)
    config = write_config(tmp_path / "feedbot.yaml", raw)
    done = feedbot("feedback", "appraisal", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("appraisal (vault-service) — newest checked release 1.4.2")
    assert "GET /r1" in done.stdout
    assert "GET /r0" not in done.stdout and "KeyError" not in done.stdout


def test_feedback_without_a_database_says_where_it_looked(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere.db"
    done = feedbot("feedback", "vault-service", "--database-url", f"sqlite:///{nowhere}")
    assert done.returncode == 2
    assert f"no feedbot database at {nowhere}" in done.stderr
    assert not nowhere.exists()  # looking did not create one


def test_sigterm_stops_serve_while_slack_is_unreachable_and_messages_are_queued(
    tmp_path: Path, sqlite_file: str, serve_processes: list[Serve]
) -> None:
    port, nowhere = free_port(), free_port()  # nothing listens on ``nowhere``: refused
    raw = {
        "database_url": sqlite_file,
        "server": {"port": port},
        "checks": {"after": ["1h"], "tick": "1s"},
        "slack": {
            "bot_token": "xoxb-test",
            "signing_secret": "s",
            "api_url": f"http://127.0.0.1:{nowhere}/api/",
        },
    }
    config = write_config(tmp_path / "feedbot.yaml", raw)
    engine = make_engine(sqlite_file)
    try:
        migrate(engine)
        now = datetime.now(UTC)
        with make_sessions(engine)() as session:
            for i in range(20):  # 20 release announcements queued for Slack
                deploy = event(deployed_at=now, version=f"1.0.{i}", commit=f"{i:040x}")
                register_release(session, deploy, settings=settings_from_mapping(raw, {}), now=now)
    finally:
        engine.dispose()
    serve = Serve(tmp_path, ["--config", str(config)], {})
    serve_processes.append(serve)
    serve.wait_ready(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while "failed (attempt 1)" not in serve.stderr():  # the tick is busy retrying Slack
        assert time.monotonic() < deadline, serve.stderr()
        time.sleep(0.2)

    serve.proc.send_signal(signal.SIGTERM)
    # One message's retries at most (a few seconds), not the whole queue's (minutes).
    assert serve.proc.wait(timeout=30) == 0, serve.stderr()
    engine = make_engine(sqlite_file)
    try:
        with make_sessions(engine)() as session:
            states = Counter(d.state for d in session.scalars(select(Delivery)))
    finally:
        engine.dispose()
    assert states["pending"] >= 15 and states["sent"] == 0  # left due for the next start


def test_serve_in_socket_mode_answers_over_the_socket_and_closes_it_on_sigterm(
    tmp_path: Path,
    sqlite_file: str,
    serve_processes: list[Serve],
    slack_api: FakeSlackAPI,
    socket_mode_server: FakeSocketModeServer,
) -> None:
    slack_api.socket_mode, slack_api.app_token = socket_mode_server, "xapp-1-serve"
    port = free_port()
    raw = {
        "database_url": sqlite_file,
        "server": {"port": port},
        "slack": {"api_url": slack_api.base_url},  # no signing secret: nothing comes over HTTP
    }
    env = {"SLACK_BOT_TOKEN": "xoxb-serve", "SLACK_APP_TOKEN": "xapp-1-serve"}
    serve = Serve(tmp_path, ["--config", str(write_config(tmp_path / "f.yaml", raw))], env)
    serve_processes.append(serve)
    serve.wait_ready(f"http://127.0.0.1:{port}")
    socket_mode_server.wait_open(1)
    payload = {"command": "/feedback", "text": "help", "user_id": "U1", "trigger_id": "t-serve",
               "response_url": slack_api.response_url("serve")}  # fmt: skip
    sent = socket_mode_server.deliver("slash_commands", payload)
    socket_mode_server.wait_for(lambda: sent.acked, what="the ack from feedbot serve")
    assert "/feedback" in str((sent.ack_payload or {}).get("text"))
    assert httpx.post(f"http://127.0.0.1:{port}/slack/events").status_code == 404

    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=15) == 0, serve.stderr()
    assert "Traceback" not in serve.stderr()
    socket_mode_server.wait_for(lambda: not socket_mode_server.link(1).open, what="the close")
    assert socket_mode_server.link(1).close_code == 1000  # a close frame, not a dropped socket
    assert "xapp-1-serve" not in serve.stderr()


def test_serve_refuses_an_app_token_without_a_bot_token(tmp_path: Path, sqlite_file: str) -> None:
    config = write_config(tmp_path / "f.yaml", {"database_url": sqlite_file})
    done = feedbot("serve", "--config", str(config), env={"SLACK_APP_TOKEN": "xapp-1-x"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "slack.bot_token: is required when slack.app_token is set (set SLACK_BOT_TOKEN)"
    ]
