"""GitHub ``pull_request`` webhooks end to end: real uvicorn, a real git diff served by the
loopback GitHub, real SDK spans in the embedded store, the DM on the loopback Slack."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.preview_text import MARKER
from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.store.models import Delivery, Preview
from feedbot.web.app import create_app
from tests.factories import sign
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlackAPI
from tests.functional.test_preview_cli import BASE, HEAD, _spans
from tests.servers import AppServer

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TOKEN = "ghs_" + "Qw3" * 12
SECRET = "gh-webhook-secret"
REPO = "acme/vault"
HEAD_WITHOUT_UNUSED = HEAD.split("\n\n\n")[0] + "\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def github(tmp_path: Path) -> Iterator[tuple[FakeGitHub, str, str]]:
    """The loopback GitHub holding pull request 17: a real git diff, the files where it starts
    (the fork point) and at its head. The base branch moved on after the fork, so the event's
    base is not where the diff starts; GitHub's compare says where it does."""
    repo = tmp_path / "checkout"
    (repo / "vault").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "bill@acme.example")
    _git(repo, "config", "user.name", "Bill")
    (repo / "vault" / "appraisal.py").write_text(BASE)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    fork = _git(repo, "rev-parse", "HEAD").strip()
    _git(repo, "checkout", "-qb", "price")
    (repo / "vault" / "appraisal.py").write_text(HEAD_WITHOUT_UNUSED)
    _git(repo, "commit", "-qam", "double the price, drop unused")
    head = _git(repo, "rev-parse", "HEAD").strip()
    _git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("vault\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "main moves on")
    base = _git(repo, "rev-parse", "HEAD").strip()
    with FakeGitHub(TOKEN) as gh:
        gh.add_pull(REPO, 17, _git(repo, "diff", "--no-color", f"{base}...{head}").encode())
        gh.add_merge_base(REPO, base, head, fork)
        gh.add_file(REPO, fork, "vault/appraisal.py", BASE.encode())
        gh.add_file(REPO, head, "vault/appraisal.py", HEAD_WITHOUT_UNUSED.encode())
        yield gh, base, head


def _runtime(url: str, slack: FakeSlackAPI, gh: FakeGitHub, **github: Any) -> Runtime:
    raw = {
        "database_url": url,
        "webhooks": {"github_secret": SECRET},
        "slack": {"bot_token": "xoxb-t", "signing_secret": "s", "api_url": slack.base_url},
        "github": {"api_url": gh.base_url, **github},
        "people": [{"github": "bill", "slack": "U0BILL"}],
    }
    runtime = build_runtime(settings_from_mapping(raw, {}), clock=FixedClock(NOW))
    backend = EmbeddedBackend(runtime.sessions)
    backend.ingest(_spans(NOW - timedelta(hours=5)), "application/x-protobuf", None)
    return runtime


def pull_request(action: str, head: str, base: str, **pull: Any) -> dict[str, Any]:
    user = {"login": "bill", "id": 1, "type": "User"}
    return {
        "action": action,
        "number": 17,
        "pull_request": {
            "number": 17,
            "html_url": f"https://github.com/{REPO}/pull/17",
            "state": "open",
            "head": {"ref": "price", "sha": head},
            "base": {"ref": "main", "sha": base},
            "user": user,
            **pull,
        },
        "repository": {"full_name": REPO, "name": "vault"},
        "sender": user,
    }


def post(client: httpx.Client, doc: dict[str, Any], secret: str = SECRET) -> httpx.Response:
    body = json.dumps(doc).encode()
    return client.post(
        "/webhooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, secret),
            "Content-Type": "application/json",
        },
    )


def _wait_for(predicate: Any) -> None:
    deadline = time.monotonic() + 15
    while not predicate():
        assert time.monotonic() < deadline, "the preview did not finish"
        time.sleep(0.05)


def test_a_pull_request_gets_one_comment_kept_current_and_one_dm(
    fresh_database_url: str, slack_api: FakeSlackAPI, github: tuple[FakeGitHub, str, str]
) -> None:
    gh, base, head = github
    runtime = _runtime(fresh_database_url, slack_api, gh, token=TOKEN)
    try:
        with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
            for action in ("opened", "synchronize"):  # a redelivered head: same comment, DM
                answer = post(c, pull_request(action, head, base))
                assert answer.status_code == 202, answer.text
                assert answer.json() == {"preview": "queued", "pull_request": 17, "head": head}
                n = 1 if action == "opened" else 2
                _wait_for(lambda n=n: sum(r.method == "GET" and "comments" in r.path
                                         for r in gh.requests) >= n)  # fmt: skip
            _wait_for(lambda: len(gh.comments(REPO, 17)) == 1)
            time.sleep(0.2)
        runtime.sender.send_due()
        comments = gh.comments(REPO, 17)
        dms = slack_api.messages_in(slack_api.dm_channel("U0BILL"))
        with runtime.sessions() as session:
            row = session.scalars(select(Preview)).one()
            queued = session.scalars(select(Delivery).where(Delivery.kind == "preview")).all()
    finally:
        runtime.engine.dispose()
    assert len(comments) == 1 and comments[0]["body"].startswith(MARKER)
    body = comments[0]["body"]
    assert "`vault.appraisal.Appraiser.appraise` | 4.3 |" in body
    # Deleted by the pull request: found only because the old side was read at the fork point.
    assert "`vault.appraisal.unused`" in body and "never ran" not in body  # unknown, not never
    assert any("/compare/" in r.path for r in gh.requests)
    assert [r.method for r in gh.requests].count("POST") == 1
    assert len(queued) == 1 and len(dms) == 1 and "acme/vault#17" in dms[0]["text"]
    assert (row.pull_request, row.commit, row.comment_id) == (17, head, comments[0]["id"])


def test_other_actions_bad_payloads_and_no_token(
    fresh_database_url: str, slack_api: FakeSlackAPI, github: tuple[FakeGitHub, str, str]
) -> None:
    gh, base, head = github
    runtime = _runtime(fresh_database_url, slack_api, gh)  # no github.token
    try:
        with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
            closed = post(c, pull_request("closed", head, base))
            no_token = post(c, pull_request("opened", head, base))
            unsigned = post(c, pull_request("opened", head, base), secret="wrong")
            bad = pull_request("opened", "not-a-sha", base)
            del bad["repository"]
            broken = post(c, bad)
            bad_number = post(c, {**pull_request("reopened", head, base), "number": "17"})
    finally:
        runtime.engine.dispose()
    assert closed.status_code == 202 and "ignored" in closed.json()
    assert no_token.status_code == 202 and "github.token" in no_token.json()["ignored"]
    assert unsigned.status_code == 401 and "X-Hub-Signature-256" in unsigned.json()["error"]
    assert broken.status_code == 422
    assert "pull_request.head.sha: expected a full commit SHA" in broken.json()["error"]
    assert "repository: is required" in broken.json()["error"]
    assert (
        bad_number.status_code == 422
        and "number: expected a positive integer" in (bad_number.json()["error"])
    )
    assert gh.requests == []
