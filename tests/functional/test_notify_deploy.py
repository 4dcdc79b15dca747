"""notify-deploy end to end: a real git checkout in, a signed POST to a loopback server out."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from feedbot.clock import FixedClock
from feedbot.commands import notify_deploy
from feedbot.releases.sources.generic import parse_document

SECRET = "s3cr3t-for-tests"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class DeployServer:
    """A loopback HTTP server that records each request and answers from a script."""

    answers: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append(Received(self.path, headers, body))
                status, answer = server.answers.pop(0) if server.answers else (202, {})
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler


@pytest.fixture
def server() -> Iterator[DeployServer]:
    deploy = DeployServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), deploy.handler())
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    deploy.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield deploy
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=Bill", "-c", "user.email=bill@acme.example"]
    command += ["-c", "commit.gpgsign=false", "-C", str(repo), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(textwrap.dedent(text))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Checkout:
    path: Path
    first: str
    second: str


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Checkout:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    repo = tmp_path / "vault"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/vault.git")
    v1 = """\
        def appraise(item):
            return item * 2


        def retired():
            return None
        """
    first = commit(repo, {"vault/appraisal.py": v1, "README.md": "vault\n"}, "Start")
    v2 = """\
        def appraise(item):
            cached = item * 2
            return cached
        """
    second = commit(repo, {"vault/appraisal.py": v2}, "Cache vault appraisals")
    return Checkout(repo, first, second)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="feedbot notify-deploy")
    notify_deploy.add_arguments(parser)
    return parser.parse_args(["--service", "vault-service", "--version", "1.4.2", *argv])


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str


def notify(args: argparse.Namespace, http: httpx.Client | None = None) -> Outcome:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = notify_deploy.run(
        args,
        http=http,
        stdout=stdout,
        stderr=stderr,
        clock=FixedClock(NOW),
        sleep=lambda seconds: None,
    )
    return Outcome(status, stdout.getvalue(), stderr.getvalue())


def test_posts_a_signed_generic_document_describing_the_range(
    server: DeployServer, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    server.answers = [(202, {"release_id": 7, "created": True, "checks": 4})]
    args = parse(
        "--since", checkout.first, "--url", server.url + "/", "--repo", str(checkout.path),
        "--feature", "appraisal", "--author-slack", "U123",
        "--pr-url", "https://github.com/acme/vault/pull/42",
    )  # fmt: skip
    outcome = notify(args)
    assert outcome == Outcome(0, "registered as release 7; 4 checks planned\n", "")
    (request,) = server.requests
    assert request.path == "/webhooks/deploy"
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-feedbot-signature"] == f"sha256={expected}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-feedbot-delivery"]
    assert json.loads(request.body) == {
        "service": "vault-service",
        "version": "1.4.2",
        "environment": "production",
        "commit": checkout.second,
        "previous_commit": checkout.first,
        "repository": "acme/vault",
        "author": {"email": "bill@acme.example", "name": "Bill", "slack": "U123"},
        "title": "Cache vault appraisals",
        "url": "https://github.com/acme/vault/pull/42",
        "features": ["appraisal"],
        "changes": [
            {
                "file": "vault/appraisal.py",
                "functions": ["vault.appraisal.appraise", "vault.appraisal.retired"],
                "lines": [[2, 3]],
            }
        ],
        "deployed_at": "2026-11-24T10:00:00Z",
    }
    # What the server side makes of it: the generic source accepts every field.
    event = parse_document(json.loads(request.body))
    assert event.changes[0].functions == ("vault.appraisal.appraise", "vault.appraisal.retired")


def test_url_from_the_environment_and_since_defaults_to_the_parent(
    server: DeployServer, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("FEEDBOT_URL", server.url)
    server.answers = [(202, {"release_id": 7, "created": False, "checks": 0})]
    with httpx.Client() as http:
        outcome = notify(parse("--repo", str(checkout.path)), http)
        assert not http.is_closed
    assert outcome.status == 0
    assert outcome.stdout == "already registered as release 7; 0 checks planned\n"
    assert "no --since given; describing HEAD~1..HEAD" in outcome.stderr
    assert json.loads(server.requests[0].body)["previous_commit"] == checkout.first


def test_docstring_only_changes_are_left_out_and_span_openers_sent_as_traced(
    server: DeployServer, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    rates = """\
        def rate(kind):
            \"\"\"The rate of one kind.\"\"\"
            return 2
        """
    since = commit(checkout.path, {"vault/rates.py": rates}, "Rates")
    traced = """\
        from opentelemetry import trace

        tracer = trace.get_tracer(__name__)


        def appraise(item):
            with tracer.start_as_current_span("vault.appraise"):
                return _weigh(item)


        def _weigh(item):
            # The goblin scales.
            return item * 3
        """
    docs = rates.replace("The rate of one kind.", "The rate of one kind, in galleons.")
    commit(checkout.path, {"vault/rates.py": docs, "vault/appraisal.py": traced}, "Trace it")
    args = parse("--since", since, "--url", server.url, "--repo", str(checkout.path))
    assert notify(args).status == 0
    document = json.loads(server.requests[0].body)
    assert document["changes"] == [
        {
            "file": "vault/appraisal.py",
            "functions": ["vault.appraisal.appraise", "vault.appraisal._weigh"],
            "lines": [[1, 5], [7, 13]],
            "traced": ["vault.appraisal.appraise"],
        }
    ]
    (change,) = parse_document(document).changes  # the server accepts it as sent
    assert change.traced == ("vault.appraisal.appraise",)


def test_dry_run_prints_the_document_and_sends_nothing(
    server: DeployServer, checkout: Checkout
) -> None:
    args = parse(
        "--since", checkout.first, "--url", server.url, "--repo", str(checkout.path), "--dry-run"
    )
    outcome = notify(args)
    assert outcome.status == 0
    assert server.requests == []
    document, _, tail = outcome.stdout.rpartition("}\n")
    assert json.loads(document + "}")["changes"][0]["file"] == "vault/appraisal.py"
    assert "would POST" in tail and f"{server.url}/webhooks/deploy; nothing sent" in tail
    assert "FEEDBOT_WEBHOOK_SECRET is not set" in tail


def test_a_5xx_is_tried_again_with_the_same_delivery_id(
    server: DeployServer, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    server.answers = [(500, {"error": "boom"}), (202, {"release_id": 8, "created": True})]
    outcome = notify(
        parse("--since", checkout.first, "--url", server.url, "--repo", str(checkout.path))
    )
    assert outcome.status == 0 and outcome.stdout == "registered as release 8\n"
    assert "try 1/3 failed (500 boom); again in 1s" in outcome.stderr
    first, second = server.requests
    assert first.body == second.body
    assert first.headers["x-feedbot-delivery"] == second.headers["x-feedbot-delivery"]


def test_gives_up_after_three_5xx_answers(
    server: DeployServer, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    server.answers = [(503, {"status": "database unavailable"})] * 3
    outcome = notify(
        parse("--since", checkout.first, "--url", server.url, "--repo", str(checkout.path))
    )
    assert outcome.status == 1 and len(server.requests) == 3
    assert "answered 503" in outcome.stderr


def test_a_4xx_prints_the_servers_error_and_returns_1(
    server: DeployServer, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    server.answers = [(422, {"error": "url: expected an http(s) URL"})]
    args = parse("--url", server.url, "--repo", str(checkout.path), "--pr-url", "ftp://x")
    outcome = notify(args)
    assert outcome.status == 1 and len(server.requests) == 1
    assert (
        f"{server.url}/webhooks/deploy answered 422: url: expected an http(s) URL" in outcome.stderr
    )


def test_connection_errors_are_tried_three_times_then_return_1(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}"
    outcome = notify(parse("--url", url, "--repo", str(checkout.path)))
    assert outcome.status == 1
    assert outcome.stderr.count("ConnectError") == 2
    assert "no answer after 3 tries" in outcome.stderr


def test_missing_secret_url_or_commit_exit_2_naming_the_fix(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = notify(parse("--repo", str(checkout.path)))
    assert outcome.status == 2
    assert "pass --url or set FEEDBOT_URL" in outcome.stderr
    assert "FEEDBOT_WEBHOOK_SECRET is not set" in outcome.stderr
    monkeypatch.setenv("FEEDBOT_WEBHOOK_SECRET", SECRET)
    outcome = notify(
        parse("--url", "http://127.0.0.1:9", "--since", "f" * 40, "--repo", str(checkout.path))
    )
    assert outcome.status == 2 and f"'{'f' * 40}': not a commit" in outcome.stderr
