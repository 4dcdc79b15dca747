"""Every HTTP endpoint of a built runtime, under a real uvicorn, on SQLite and PostgreSQL.

Deploy sources sign or authenticate the way the real senders do; Slack requests are signed the
way Slack signs them; messages go to the fake Slack Web API on loopback.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select, text

from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.slack.app import HELP
from feedbot.store.models import Delivery, Release
from feedbot.web.app import create_app
from tests.factories import DEPLOYED, sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers import AppServer

SECRET = "generic-secret"
GITHUB_SECRET = "gh-secret"
GITLAB_TOKEN = "gl-token"
ARGOCD_TOKEN = "argo-token"
SLACK_SECRET = "slack-signing-secret"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"


def make_settings(database_url: str, slack_api: FakeSlackAPI, **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "database_url": database_url,
        "webhooks": {
            "secret": SECRET,
            "github_secret": GITHUB_SECRET,
            "gitlab_token": GITLAB_TOKEN,
            "argocd_token": ARGOCD_TOKEN,
        },
        "slack": {
            "bot_token": "xoxb-test",
            "signing_secret": SLACK_SECRET,
            "api_url": slack_api.base_url,
        },
        "checks": {"after": ["1h"]},
        **extra,
    }
    return settings_from_mapping(raw, {})


RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def make_runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[RuntimeFactory]:
    """Build runtimes on the test's database; every engine is disposed afterwards."""
    built: list[Runtime] = []

    def make(**extra: Any) -> Runtime:
        settings = make_settings(fresh_database_url, slack_api, **extra)
        runtime = build_runtime(settings, clock=FixedClock(DEPLOYED))
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.engine.dispose()


@pytest.fixture
def runtime(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def releases(runtime: Runtime) -> list[Release]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Release).order_by(Release.id)))


def deliveries(runtime: Runtime, kind: str = "parent") -> list[Delivery]:
    with runtime.sessions() as session:
        stmt = select(Delivery).where(Delivery.kind == kind).order_by(Delivery.id)
        return list(session.scalars(stmt))


def post_generic(client: httpx.Client, doc: dict[str, Any]) -> httpx.Response:
    body = json.dumps(doc).encode()
    return client.post(
        "/webhooks/deploy",
        content=body,
        headers={"X-Feedbot-Signature": sign(body, SECRET), "Content-Type": "application/json"},
    )


# --- health ----------------------------------------------------------------------------------


def test_readyz_is_503_while_the_database_is_down_and_healthz_stays_200(
    slack_api: FakeSlackAPI,
) -> None:
    settings = make_settings("postgresql+psycopg://postgres@127.0.0.1:1/nothing", slack_api)
    # Nothing listens on port 1: building the runtime must not need the database.
    runtime = build_runtime(settings, clock=FixedClock(DEPLOYED))
    try:
        with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
            ready = c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "database unavailable"}
            assert c.get("/healthz").status_code == 200
    finally:
        runtime.engine.dispose()


def test_readyz_is_200_with_a_database(client: httpx.Client) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}


# --- GitHub ----------------------------------------------------------------------------------


def github_user(login: str, kind: str = "User") -> dict[str, Any]:
    return {
        "login": login,
        "id": 21031067,
        "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "url": f"https://api.github.com/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": kind,
        "site_admin": False,
    }


def deployment_status(state: str = "success") -> dict[str, Any]:
    """Shaped after the deployment_status example in GitHub's webhook events documentation."""
    deployment_url = "https://api.github.com/repos/acme/vault-service/deployments/145988746"
    return {
        "action": "created",
        "deployment_status": {
            "url": f"{deployment_url}/statuses/534747693",
            "id": 534747693,
            "state": state,
            "creator": github_user("github-actions[bot]", "Bot"),
            "description": "",
            "environment": "production",
            "target_url": "https://github.com/acme/vault-service/actions/runs/991",
            "created_at": "2026-11-24T09:59:58Z",
            "updated_at": "2026-11-24T10:00:00Z",
            "deployment_url": deployment_url,
        },
        "deployment": {
            "url": deployment_url,
            "id": 145988746,
            "sha": SHA,
            "ref": "main",
            "task": "deploy",
            "payload": json.dumps({"version": "1.4.2", "title": "Cache vault appraisals"}),
            "original_environment": "production",
            "environment": "production",
            "description": "Deploy from GitHub Actions",
            "creator": github_user("bill"),
            "created_at": "2026-11-24T09:58:00Z",
            "updated_at": "2026-11-24T10:00:00Z",
        },
        "repository": {
            "id": 186853002,
            "name": "vault-service",
            "full_name": "acme/vault-service",
            "private": True,
            "owner": github_user("acme", "Organization"),
            "default_branch": "main",
        },
        "sender": github_user("github-actions[bot]", "Bot"),
    }


def post_github(
    client: httpx.Client, doc: dict[str, Any], delivery: str, secret: str = GITHUB_SECRET
) -> httpx.Response:
    body = json.dumps(doc).encode()
    return client.post(
        "/webhooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body, secret),
            "User-Agent": "GitHub-Hookshot/044aadd",
            "Content-Type": "application/json",
        },
    )


def test_github_deployment_status_registers_once_per_delivery(
    client: httpx.Client, runtime: Runtime
) -> None:
    delivery = str(uuid.uuid4())
    first = post_github(client, deployment_status(), delivery)
    assert first.status_code == 202, first.text
    assert first.json()["created"] is True
    release_id = first.json()["release_id"]
    assert isinstance(release_id, int)

    again = post_github(client, deployment_status(), delivery)
    assert again.status_code == 202, again.text
    assert again.json()["release_id"] == release_id
    assert again.json()["created"] is False

    [release] = releases(runtime)
    assert release.id == release_id
    assert (release.service, release.version, release.environment) == (
        "vault-service",
        "1.4.2",
        "production",
    )
    assert release.commit == SHA
    assert release.author_github == "bill"
    assert release.source == "github"


def test_github_pending_state_is_ignored(client: httpx.Client, runtime: Runtime) -> None:
    answer = post_github(client, deployment_status("pending"), str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    assert "ignored" in answer.json()
    assert releases(runtime) == []


def test_github_bad_signature_is_401(client: httpx.Client, runtime: Runtime) -> None:
    answer = post_github(client, deployment_status(), str(uuid.uuid4()), secret="not-it")
    assert answer.status_code == 401
    assert "X-Hub-Signature-256" in answer.json()["error"]
    assert releases(runtime) == []


# --- GitLab and Argo CD ----------------------------------------------------------------------


def gitlab_deployment() -> dict[str, Any]:
    """Shaped after the "Deployment events" example in GitLab's webhook events documentation."""
    project = "http://gitlab.acme.example/acme/vault-service"
    return {
        "object_kind": "deployment",
        "status": "success",
        "status_changed_at": "2026-11-24 11:00:00 +0100",
        "deployment_id": 15,
        "deployable_id": 796,
        "deployable_url": f"{project}/-/jobs/796",
        "environment": "production",
        "environment_tier": "production",
        "environment_slug": "production",
        "environment_external_url": "https://vault.acme.example",
        "project": {
            "id": 30,
            "name": "vault-service",
            "path": "vault-service",
            "web_url": project,
            "namespace": "acme",
            "path_with_namespace": "acme/vault-service",
            "default_branch": "main",
        },
        "short_sha": SHA[:8],
        "user": {
            "id": 1,
            "name": "Bill",
            "username": "bill",
            "email": "bill@acme.example",
        },
        "user_url": "http://gitlab.acme.example/bill",
        "commit_url": f"{project}/-/commit/{SHA}",
        "commit_title": "Cache vault appraisals",
        "ref": "main",
        "sha": SHA,
        "tag": False,
    }


@pytest.mark.parametrize(("token", "status"), [(GITLAB_TOKEN, 202), ("wrong", 401), (None, 401)])
def test_gitlab_deployment_hook(
    client: httpx.Client, runtime: Runtime, token: str | None, status: int
) -> None:
    headers = {"X-Gitlab-Event": "Deployment Hook", "Content-Type": "application/json"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    answer = client.post(
        "/webhooks/gitlab", content=json.dumps(gitlab_deployment()), headers=headers
    )
    assert answer.status_code == status, answer.text
    if status == 401:
        assert releases(runtime) == []
        return
    assert answer.json()["created"] is True
    [release] = releases(runtime)
    assert (release.service, release.version, release.author_gitlab) == (
        "vault-service",
        SHA[:8],
        "bill",
    )


def argocd_notification() -> dict[str, Any]:
    """The body the ``feedbot-deployed`` template in docs/argocd.md renders."""
    return {
        "app": "vault-service",
        "project": "default",
        "namespace": "vault",
        "revision": SHA,
        "images": ["ghcr.io/acme/sidecar:2.0", "ghcr.io/acme/vault-service:1.4.2"],
        "environment": "production",
        "service": None,
        "version": None,
        "url": "https://argocd.acme.example/applications/vault-service",
        "deployed_at": "2026-11-24T10:00:00Z",
    }


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(f"Bearer {ARGOCD_TOKEN}", 202), (None, 401), ("Bearer wrong", 401)],
)
def test_argocd_notification(
    client: httpx.Client, runtime: Runtime, authorization: str | None, status: int
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = json.dumps(argocd_notification())
    answer = client.post("/webhooks/argocd", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 401:
        assert releases(runtime) == []
        return
    [release] = releases(runtime)
    assert (release.service, release.version, release.commit) == ("vault-service", "1.4.2", SHA)
    assert release.source == "argocd"


# --- /slack/events ---------------------------------------------------------------------------


def slash_command(slack_api: FakeSlackAPI, text: str) -> bytes:
    """A slash command's form body, with the fields Slack sends."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0FAKE",
            "team_domain": "acme",
            "channel_id": "C0VAULT",
            "channel_name": "vault",
            "user_id": "U123",
            "user_name": "bill",
            "command": "/feedback",
            "text": text,
            "api_app_id": "A0FEEDBOT",
            "is_enterprise_install": "false",
            "response_url": slack_api.response_url(),
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
    ).encode()


def slack_headers(body: bytes, *, secret: str = SLACK_SECRET, age: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time()) - age)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


def test_feedback_help_slash_command(client: httpx.Client, slack_api: FakeSlackAPI) -> None:
    body = slash_command(slack_api, "help")
    answer = client.post("/slack/events", content=body, headers=slack_headers(body))
    assert answer.status_code == 200, answer.text
    # Bolt answers an ack with only text as a plain-text body; Slack shows it to the user.
    assert answer.text == HELP


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"secret": "forged"}, id="forged-signature"),
        pytest.param({"age": 600}, id="ten-minutes-old"),
    ],
)
def test_slack_requests_that_slack_did_not_sign_now_are_401(
    client: httpx.Client, slack_api: FakeSlackAPI, headers: dict[str, Any]
) -> None:
    body = slash_command(slack_api, "help")
    answer = client.post("/slack/events", content=body, headers=slack_headers(body, **headers))
    assert answer.status_code == 401
    assert HELP not in answer.text


# --- the lazy owner lookup -------------------------------------------------------------------


def deploy(service: str = "vault-service", **author: str) -> dict[str, Any]:
    return {
        "service": service,
        "version": "1.4.2",
        "commit": SHA,
        "author": author or {"name": "Bill", "slack": "U123"},
        "title": "Cache vault appraisals",
    }


@pytest.mark.parametrize(
    ("email", "lands_in"),
    [("ann@acme.example", "D777"), ("nobody@acme.example", "#vault")],
)
def test_author_known_only_by_email_is_looked_up_when_sending(
    make_runtime: RuntimeFactory, slack_api: FakeSlackAPI, email: str, lands_in: str
) -> None:
    slack_api.add_user("ann@acme.example", "U777")
    runtime = make_runtime(services={"vault-service": {"channel": "#vault"}})
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
        answer = post_generic(c, deploy(email=email, name="Ann"))
    assert answer.status_code == 202, answer.text
    assert slack_api.calls_to("users.lookupByEmail") == []  # not while answering the webhook

    runtime.tick()

    assert [c["email"] for c in slack_api.calls_to("users.lookupByEmail")] == [email]
    [message] = slack_api.messages_in(lands_in)
    assert "vault-service 1.4.2 → production, shipped by Ann" in message["text"]
    [parent] = deliveries(runtime)
    assert parent.state == "sent"
    assert parent.ts == message["ts"]
    other = "#vault" if lands_in == "D777" else "D777"
    assert slack_api.messages_in(other) == []


# --- Slack failures through the outbox -------------------------------------------------------


def test_slack_errors_and_a_lost_answer_still_post_the_parent_exactly_once(
    runtime: Runtime, client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    slack_api.fail_next("chat.postMessage", status=500, times=2)
    slack_api.lose_answer_next("chat.postMessage")
    assert post_generic(client, deploy()).status_code == 202

    runtime.tick()  # 500, then (after looking) 500 again: left pending with a backoff
    [parent] = deliveries(runtime)
    assert parent.state == "pending"
    assert parent.last_error is not None and "HTTP 500" in parent.last_error
    assert slack_api.messages_in("U123") == []
    posts = len(slack_api.calls_to("chat.postMessage"))
    assert posts == 2

    runtime.tick()  # the backoff has not passed: nothing is tried
    assert len(slack_api.calls_to("chat.postMessage")) == posts

    clock.advance(timedelta(minutes=1))
    runtime.tick()  # stored, answer lost; the notifier finds it instead of posting again

    [message] = slack_api.messages_in("U123")
    assert message["metadata"]["event_payload"]["key"] == parent.key
    assert len(slack_api.calls_to("chat.postMessage")) == posts + 1
    [parent] = deliveries(runtime)
    assert parent.state == "sent"
    assert (parent.channel, parent.ts) == (slack_api.dm_channel("U123"), message["ts"])

    runtime.tick()  # a sent delivery is done with
    assert len(slack_api.calls_to("chat.postMessage")) == posts + 1


def test_channel_not_found_fails_one_delivery_and_blocks_no_other(
    runtime: Runtime, client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    slack_api.fail_next("chat.postMessage", error="channel_not_found")
    assert post_generic(client, deploy("vault-service")).status_code == 202
    assert post_generic(client, deploy("ledger-service", slack="U456")).status_code == 202

    runtime.tick()

    failed, sent = deliveries(runtime)
    assert failed.state == "failed"
    assert failed.last_error is not None and "channel_not_found" in failed.last_error
    assert failed.attempts == 1
    assert sent.state == "sent"
    [message] = slack_api.messages_in("U456")
    assert sent.ts == message["ts"]
    assert slack_api.messages_in("U123") == []
    assert len(slack_api.calls_to("chat.postMessage")) == 2

    runtime.tick()  # a failed delivery is not retried
    assert len(slack_api.calls_to("chat.postMessage")) == 2


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"service": "vault", "version": "1", "title": "a\u0000b"}, "title"),
        ({"service": "vault", "version": "1", "author": {"name": "\ud800"}}, "author.name"),
        (
            {"service": "vault", "version": "1", "changes": [{"functions": ["f\u0000"]}]},
            "changes[0].functions[0]",
        ),
    ],
)
def test_signed_text_no_database_can_store_is_a_422_not_a_500(
    fresh_database_url: str, document: dict[str, object], field: str
) -> None:
    settings = settings_from_mapping(
        {"database_url": fresh_database_url, "webhooks": {"secret": "s"}}, {}
    )
    runtime = build_runtime(settings)
    try:
        body = json.dumps(document).encode()  # ensure_ascii keeps the lone surrogate as \ud800
        with AppServer(create_app(runtime)) as server:
            answer = httpx.post(
                f"{server.url}/webhooks/deploy",
                content=body,
                headers={"X-Feedbot-Signature": sign(body, "s")},
            )
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"].startswith(f"{field}: expected text without NUL")
    finally:
        runtime.engine.dispose()


def test_spans_older_than_the_retention_are_pruned_by_the_ticker(fresh_database_url: str) -> None:
    from datetime import UTC, datetime

    from feedbot.spans.model import SpanQuery
    from tests.factories import otlp_spans

    settings = settings_from_mapping(
        {"database_url": fresh_database_url, "traces": {"retention": "7d"}}, {}
    )
    now = datetime.now(UTC)
    clock = FixedClock(now)
    runtime = build_runtime(settings, clock=clock)
    try:
        body = otlp_spans(service="vault", version="1", start=now, spans=[("/v", 5.0, False)] * 3)
        with AppServer(create_app(runtime)) as server:
            answer = httpx.post(
                f"{server.url}/v1/traces",
                content=body,
                headers={"Content-Type": "application/x-protobuf"},
            )
        assert answer.status_code == 200
        query = SpanQuery(service="vault", version="1", start=now, end=now + timedelta(hours=1))
        assert runtime.prune_spans() == 0  # received just now: kept
        clock.advance(timedelta(days=7, minutes=11))
        runtime.tick()
        assert runtime.backend.collect(query).groups == []
        assert runtime.prune_spans() == 0  # pruned at most every 10 minutes
    finally:
        runtime.engine.dispose()


def test_the_embedded_store_keeps_at_most_max_spans_dropping_the_oldest(
    fresh_database_url: str,
) -> None:
    from datetime import UTC, datetime

    from feedbot.spans.model import SpanQuery
    from tests.factories import otlp_spans

    settings = settings_from_mapping(
        {"database_url": fresh_database_url, "traces": {"max_spans": 1000}}, {}
    )
    now = datetime.now(UTC)
    runtime = build_runtime(settings, clock=FixedClock(now))
    try:
        with AppServer(create_app(runtime)) as server:
            for version, count in (("old", 600), ("new", 700)):
                body = otlp_spans(
                    service="vault", version=version, start=now, spans=[("/v", 5.0, False)] * count
                )
                answer = httpx.post(
                    f"{server.url}/v1/traces",
                    content=body,
                    headers={"Content-Type": "application/x-protobuf"},
                )
                assert answer.status_code == 200
        assert runtime.prune_spans() == 300  # 1,300 stored, 1,000 kept

        def stored(version: str) -> int:
            query = SpanQuery(
                service="vault", version=version, start=now, end=now + timedelta(hours=2)
            )
            return sum(g.count for g in runtime.backend.collect(query).groups)

        assert (stored("old"), stored("new")) == (300, 700)  # the oldest went first
    finally:
        runtime.engine.dispose()


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/webhooks/deploy", "webhooks.secret"),
        ("/webhooks/github", "webhooks.github_secret"),
        ("/webhooks/gitlab", "webhooks.gitlab_token"),
        ("/webhooks/argocd", "webhooks.argocd_token"),
    ],
)
def test_a_source_without_its_secret_names_the_key_that_exists(
    fresh_database_url: str, path: str, key: str
) -> None:
    settings = settings_from_mapping({"database_url": fresh_database_url}, {})
    runtime = build_runtime(settings, clock=FixedClock(DEPLOYED))
    try:
        with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as c:
            answer = c.post(path, content=b"{}", headers={"Content-Type": "application/json"})
    finally:
        runtime.engine.dispose()
    assert answer.status_code == 401
    assert answer.json()["error"].startswith(f"{key} is not configured")
    section, _, name = key.partition(".")
    assert name in {f.name for f in dataclasses.fields(getattr(settings, section))}


@pytest.mark.parametrize(
    ("deployed_at", "says"),
    [
        ("2100-01-01T00:00:00Z", "is in the future"),
        ("1970-01-01T00:00:00Z", "more than 7 days ago"),
        (
            "9999-12-31T23:59:59-05:00",
            "deployed_at: 9999-12-31T23:59:59-05:00 is past the calendar's edge",
        ),
        (
            "0001-01-01T00:00:00+01:00",
            "deployed_at: 0001-01-01T00:00:00+01:00 is past the calendar's edge",
        ),
    ],
)
def test_a_deploy_dated_off_the_calendar_or_the_clock_is_refused_and_not_registered(
    client: httpx.Client, runtime: Runtime, deployed_at: str, says: str
) -> None:
    doc = {"service": "vault-service", "version": "9.9.9", "deployed_at": deployed_at}
    answer = post_generic(client, doc)
    assert answer.status_code == 422
    assert says in answer.json()["error"]
    assert releases(runtime) == []


def test_a_release_nobody_owns_says_so_and_slack_is_never_sent_a_fake_channel(
    runtime: Runtime, client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    answer = post_generic(client, deploy(name="Ann"))  # no Slack id, no e-mail, no owners
    assert answer.status_code == 202, answer.text
    warning = answer.json()["warning"]
    assert "nobody will be told about vault-service 1.4.2" in warning
    assert "services.vault-service.owners" in warning

    runtime.tick()

    assert slack_api.calls_to("chat.postMessage") == []
    [parent] = deliveries(runtime)
    assert parent.state == "failed"
    assert parent.last_error is not None and parent.last_error.startswith("nobody to send this to")


# --- acknowledgements while the store is slow -----------------------------------------------


def waiting_on_locks(engine: Any) -> int:
    """Queries of this database waiting for a lock (PostgreSQL)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


@pytest.mark.parametrize("fresh_database_url", ["postgresql"], indirect=True)
def test_a_slash_command_is_acknowledged_while_a_deploy_waits_on_a_locked_store(
    runtime: Runtime, slack_api: FakeSlackAPI
) -> None:
    # A registration that blocks (a locked table; on a busy store, a slow one) must not hold
    # the server: registered on the event loop, it held every other request, Slack's included.
    with (
        AppServer(create_app(runtime)) as server,
        httpx.Client(base_url=server.url, timeout=30) as deploys,
        httpx.Client(base_url=server.url, timeout=10) as slack,
        runtime.engine.connect() as locker,
        ThreadPoolExecutor(1) as background,
    ):
        locker.execute(text("LOCK TABLE releases IN ACCESS EXCLUSIVE MODE"))
        pending = background.submit(post_generic, deploys, deploy())
        deadline = time.monotonic() + 10
        while not waiting_on_locks(runtime.engine):
            assert time.monotonic() < deadline, "the deploy never reached the locked table"
            time.sleep(0.02)

        body = slash_command(slack_api, "help")
        answer = slack.post("/slack/events", content=body, headers=slack_headers(body))

        assert answer.status_code == 200, answer.text
        assert answer.text == HELP
        assert not pending.done()  # the deploy still waits for the lock
        locker.rollback()
        assert pending.result().status_code == 202
    assert [r.version for r in releases(runtime)] == ["1.4.2"]
