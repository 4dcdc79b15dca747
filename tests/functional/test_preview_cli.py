"""``feedbot preview`` end to end: a real git checkout, real SDK spans in the embedded store,
the comment on the loopback GitHub, the DM on the loopback Slack."""

from __future__ import annotations

import argparse
import io
import subprocess
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.trace import SpanKind, set_span_in_context

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.preview_text import MARKER
from feedbot.commands import preview as command
from feedbot.store import db
from tests.fakes.github_api import FakeGitHub
from tests.fakes.sdk_spans import ns, protobuf, sdk_spans
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "ghp_" + "Zx9" * 12
BASE = """\
class Appraiser:
    def appraise(self, item):
        return item.price


def unused():
    return 1
"""
HEAD = """\
class Appraiser:
    def appraise(self, item):
        return item.price * 2


def unused():
    return 2
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "vault"
    (repo / "vault").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "bill@acme.example")
    _git(repo, "config", "user.name", "Bill")
    _git(repo, "remote", "add", "origin", "git@github.com:acme/vault.git")
    (repo / "vault" / "appraisal.py").write_text(BASE)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "checkout", "-qb", "price")
    (repo / "vault" / "appraisal.py").write_text(textwrap.dedent(HEAD))
    _git(repo, "commit", "-qam", "double the price")
    # main moves on after the branch forked: its change is not this pull request's.
    _git(repo, "checkout", "-q", "main")
    (repo / "vault" / "other.py").write_text("def elsewhere():\n    return 3\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "elsewhere")
    _git(repo, "checkout", "-q", "price")
    return repo, "main"


def _spans(start: datetime) -> bytes:
    def build(tracer: Any) -> None:
        for i in range(30):
            at = ns(start + timedelta(minutes=i))
            server = tracer.start_span(
                "GET /items/{id}",
                kind=SpanKind.SERVER,
                start_time=at,
                attributes={"http.route": "/items/{id}", "http.request.method": "GET"},
            )
            tracer.start_span(
                "appraise",
                context=set_span_in_context(server),
                start_time=at + 1_000_000,
                attributes={
                    "code.function.name": "vault.appraisal.Appraiser.appraise",
                    "code.file.path": "/srv/app/vault/appraisal.py",
                },
            ).end(end_time=at + 5_000_000)
            server.end(end_time=at + 9_000_000)

    resource = {"service.name": "vault", "service.version": "3.1.0"}
    return protobuf(sdk_spans({**resource, "deployment.environment.name": "production"}, build))


def test_preview_prints_comments_once_and_dms_the_author(
    checkout: tuple[Path, str], tmp_path: Path
) -> None:
    repo, base = checkout
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    EmbeddedBackend(db.make_sessions(engine)).ingest(
        _spans(datetime.now(UTC) - timedelta(hours=3)), "application/x-protobuf", None
    )
    engine.dispose()
    with FakeGitHub(TOKEN) as github, FakeSlackAPI() as slack:
        config = tmp_path / "feedbot.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database_url": url,
                    "slack": {
                        "bot_token": "xoxb-test",
                        "signing_secret": "sign",
                        "api_url": slack.base_url,
                    },
                    "github": {"token": TOKEN, "api_url": github.base_url},
                    "people": [{"github": "bill", "slack": "U0BILL"}],
                }
            )
        )
        outs = []
        for _ in range(2):  # the second push of the same head: same comment, same DM
            args = argparse.Namespace(
                service="vault", since=base, until="HEAD", environment=None, repo=repo,
                repository=None, pr=17, author_github="bill", author_slack=None, notify=True,
                config=config,
            )  # fmt: skip
            out, err = io.StringIO(), io.StringIO()
            assert command.run(args, stdout=out, stderr=err) == 0, err.getvalue()
            outs.append(out.getvalue())
        comments = github.comments("acme/vault", 17)
        dms = slack.messages_in(slack.dm_channel("U0BILL"))
    printed = outs[0]
    assert "1 of 2 changed functions ran in production" in printed
    assert "vault.appraisal.Appraiser.appraise: 30 calls (4.3/day), p50 4.0 ms" in printed
    assert "runs under GET /items/{id}" in printed
    assert "elsewhere" not in printed  # diffed from the fork point, not from main's tip
    assert "pull-request comment created" in printed and "comment unchanged" in outs[1]
    assert len(comments) == 1 and comments[0]["body"].startswith(MARKER)
    assert "`vault.appraisal.unused`" in comments[0]["body"]
    assert len(dms) == 1 and "acme/vault#17" in dms[0]["text"]


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"pr": 0}, "--pr: expected a positive pull-request number"),
        ({"repository": "not a repo"}, "--repository: expected owner/name"),
        ({"since": "no-such-rev"}, "--since/--until/--repo: 'no-such-rev': not a commit"),
    ],
)
def test_usage_problems_exit_2_naming_the_option(
    checkout: tuple[Path, str], tmp_path: Path, over: dict[str, Any], problem: str
) -> None:
    repo, base = checkout
    config = tmp_path / "feedbot.yaml"
    config.write_text(yaml.safe_dump({"database_url": f"sqlite:///{tmp_path / 'f.db'}"}))
    values: dict[str, Any] = {
        "service": "vault", "since": base, "until": "HEAD", "environment": None, "repo": repo,
        "repository": None, "pr": None, "author_github": None, "author_slack": None,
        "notify": False, "config": config,
    }  # fmt: skip
    err = io.StringIO()
    assert command.run(argparse.Namespace(**{**values, **over}), stderr=err) == 2
    assert problem in err.getvalue()


def test_the_service_comes_from_github_services_unless_given(
    checkout: tuple[Path, str], tmp_path: Path
) -> None:
    """acme/vault (the origin remote) maps vault/ to ``vault`` and ledger/ to ``ledger``: the
    change touches vault only. Mapped to ledger alone, its one file is left out; ``--service``
    previews it as the given service whatever the mapping says."""
    repo, base = checkout
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    EmbeddedBackend(db.make_sessions(engine)).ingest(
        _spans(datetime.now(UTC) - timedelta(hours=3)), "application/x-protobuf", None
    )
    engine.dispose()
    both = [{"service": "vault", "paths": ["vault"]}, {"service": "ledger", "paths": ["ledger"]}]
    ledger_only = [{"service": "ledger", "paths": ["ledger/**"]}]

    def preview(services: Any, service: str | None) -> str:
        config = tmp_path / "feedbot.yaml"
        raw = {"database_url": url, "github": {"services": {"acme/vault": services}}}
        config.write_text(yaml.safe_dump(raw))
        args = argparse.Namespace(
            service=service, since=base, until="HEAD", environment=None, repo=repo,
            repository=None, pr=None, author_github=None, author_slack=None, notify=False,
            config=config,
        )  # fmt: skip
        out, err = io.StringIO(), io.StringIO()
        assert command.run(args, stdout=out, stderr=err) == 0, err.getvalue()
        return out.getvalue()

    mapped, left_out, given = (
        preview(both, None),
        preview(ledger_only, None),
        preview(ledger_only, "vault"),
    )
    assert "in vault (production)" in mapped and "ledger" not in mapped  # untouched: no section
    assert "vault.appraisal.Appraiser.appraise: 30 calls" in mapped
    assert "No changed file belongs to a service" in left_out
    assert "1 changed file matches no service's paths" in left_out
    assert "vault/appraisal.py" in left_out and "Appraiser" not in left_out
    assert "vault.appraisal.Appraiser.appraise: 30 calls" in given and "left out" not in given
