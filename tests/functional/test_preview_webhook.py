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
from opentelemetry.trace import SpanKind, set_span_in_context
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
from tests.fakes.sdk_spans import ns, protobuf, sdk_spans
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


LEDGER_BASE = "def post(entry):\n    return entry\n"
LEDGER_HEAD = "def post(entry):\n    return entry.rounded()\n"


def _ledger_spans(start: datetime) -> bytes:
    """The ledger service's own spans: ``ledger.books.post`` ran 12 times."""

    def build(tracer: Any) -> None:
        for i in range(12):
            at = ns(start + timedelta(minutes=i))
            server = tracer.start_span(
                "POST /entries", kind=SpanKind.SERVER, start_time=at,
                attributes={"http.route": "/entries", "http.request.method": "POST"},
            )  # fmt: skip
            tracer.start_span(
                "post", context=set_span_in_context(server), start_time=at + 1_000_000,
                attributes={"code.function.name": "ledger.books.post",
                            "code.file.path": "/srv/app/ledger/books.py"},
            ).end(end_time=at + 3_000_000)  # fmt: skip
            server.end(end_time=at + 6_000_000)

    resource = {"service.name": "ledger-api", "deployment.environment.name": "production"}
    return protobuf(sdk_spans({**resource, "service.version": "2.0.0"}, build))


def test_a_monorepo_pull_request_gets_a_section_per_mapped_service(
    fresh_database_url: str, slack_api: FakeSlackAPI, tmp_path: Path
) -> None:
    """``github.services`` maps acme/vault's files to two services; a file neither claims is
    left out and counted. One comment and one DM, each with a section per service."""
    repo = tmp_path / "mono"
    for folder in ("vault", "ledger", "docs"):
        (repo / folder).mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "bill@acme.example")
    _git(repo, "config", "user.name", "Bill")
    (repo / "vault" / "appraisal.py").write_text(BASE)
    (repo / "ledger" / "books.py").write_text(LEDGER_BASE)
    (repo / "docs" / "notes.md").write_text("notes\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    base = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "vault" / "appraisal.py").write_text(HEAD_WITHOUT_UNUSED)
    (repo / "ledger" / "books.py").write_text(LEDGER_HEAD)
    (repo / "docs" / "notes.md").write_text("more notes\n")
    _git(repo, "commit", "-qam", "price and rounding")
    head = _git(repo, "rev-parse", "HEAD").strip()
    services = [
        {"service": "vault", "paths": ["vault/*.py"]},
        {"service": "ledger-api", "paths": ["ledger"]},
    ]
    with FakeGitHub(TOKEN) as gh:
        gh.add_pull(REPO, 17, _git(repo, "diff", "--no-color", f"{base}...{head}").encode())
        for ref in (base, head):
            for path in ("vault/appraisal.py", "ledger/books.py", "docs/notes.md"):
                gh.add_file(REPO, ref, path, _git(repo, "show", f"{ref}:{path}").encode())
        runtime = _runtime(fresh_database_url, slack_api, gh, token=TOKEN,
                           services={REPO: services})  # fmt: skip
        EmbeddedBackend(runtime.sessions).ingest(
            _ledger_spans(NOW - timedelta(hours=4)), "application/x-protobuf", None
        )
        try:
            with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
                answer = post(c, pull_request("opened", head, base))
                assert answer.status_code == 202, answer.text
                _wait_for(lambda: len(gh.comments(REPO, 17)) == 1)
                time.sleep(0.2)
            runtime.sender.send_due()
            comments = gh.comments(REPO, 17)
            dms = slack_api.messages_in(slack_api.dm_channel("U0BILL"))
            with runtime.sessions() as session:
                rows = session.scalars(select(Preview).order_by(Preview.service)).all()
        finally:
            runtime.engine.dispose()
    assert len(comments) == 1
    body = comments[0]["body"]
    assert body.startswith(MARKER)
    vault, ledger = body.index("#### vault\n"), body.index("#### ledger-api\n")
    assert vault < ledger  # in github.services' order
    assert "`vault.appraisal.Appraiser.appraise` | 4.3 |" in body[vault:ledger]
    assert "`ledger.books.post` | 1.7 |" in body[ledger:]
    assert "Preview of acme/vault#17 in ledger-api (production)" in body[ledger:]
    assert "1 changed file matches no service's paths" in body and "`docs/notes.md`" in body
    assert "ledger.books" not in body[vault:ledger] and "vault.appraisal" not in body[ledger:]
    assert len(dms) == 1
    text = dms[0]["text"]
    assert "in vault (production)" in text and "in ledger-api (production)" in text
    assert "ledger.books.post: 12 calls" in text and "docs/notes.md" in text
    assert [(r.service, r.pull_request, r.comment_id) for r in rows] == [
        ("ledger-api", 17, comments[0]["id"]),
        ("vault", 17, comments[0]["id"]),
    ]
    assert [f["function"] for f in rows[0].functions] == ["ledger.books.post"]
