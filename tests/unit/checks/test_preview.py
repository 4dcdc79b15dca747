"""The pull-request preview: footprints from real SDK spans in the embedded store, DM, row."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from feedbot.analysis.footprint import footprints
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks import preview
from feedbot.checks import preview_text as render
from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.releases.event import Author, Change
from feedbot.releases.github_api import GitHubClient
from feedbot.store.models import Delivery, Preview, Release
from tests.factories import event, settings
from tests.fakes.github_api import FakeGitHub
from tests.fakes.sdk_spans import T0, ns, protobuf, sdk_spans

NOW = T0 + timedelta(days=1)
APPRAISE = "vault.appraisal.Appraiser.appraise"
CHANGES = (
    Change(file="vault/appraisal.py", functions=(APPRAISE,), lines=((10, 20),)),
    Change(
        file="vault/ledger.py",
        functions=("vault.ledger.Ledger.post", "vault.ledger.Ledger.close"),
        lines=((5, 30),),
        traced=("vault.ledger.Ledger.close",),
    ),
    Change(file="vault/util.py", functions=("vault.util.fmt",), lines=((1, 3),)),
    Change(file="README.md", lines=((1, 9),)),  # no span points into it: left out
)


def _vault(tracer: Any, t0: datetime = T0) -> None:
    """40 GET /orders/{id} → appraise (every 4th raises), 6 POST /deposits → Ledger.post."""
    for i in range(40):
        start = ns(t0 + timedelta(minutes=i))
        server = tracer.start_span(
            "GET /orders/{id}",
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={"http.route": "/orders/{id}", "http.request.method": "GET"},
        )
        span = tracer.start_span(
            "appraise",
            context=set_span_in_context(server),
            start_time=start + 1_000_000,
            attributes={"code.function.name": APPRAISE, "code.file.path": "vault/appraisal.py"},
        )
        if i % 4 == 3:
            span.record_exception(KeyError("no price"), timestamp=start + 2_000_000)
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + 1_000_000 + (i + 1) * 1_000_000)  # 1..40 ms
        server.end(end_time=start + 50_000_000)
    for i in range(6):
        start = ns(t0 + timedelta(hours=2, minutes=i))
        server = tracer.start_span(
            "POST /deposits",
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={"http.route": "/deposits", "http.request.method": "POST"},
        )
        tracer.start_span(
            "ledger post",
            context=set_span_in_context(server),
            start_time=start + 1_000_000,
            attributes={
                "code.namespace": "vault.ledger.Ledger",
                "code.function": "post",
                "code.filepath": "vault/ledger.py",
            },
        ).end(end_time=start + 3_000_000)
        server.end(end_time=start + 5_000_000)


@pytest.fixture
def backend(db_sessions: sessionmaker[Session]) -> EmbeddedBackend:
    store = EmbeddedBackend(db_sessions)
    resource = {
        "service.name": "vault",
        "service.version": "2.0.0",
        "deployment.environment.name": "production",
    }
    store.ingest(protobuf(sdk_spans(resource, _vault)), "application/x-protobuf", None)
    return store


def request(**over: Any) -> preview.PreviewRequest:
    values: dict[str, Any] = {
        "service": "vault",
        "changes": CHANGES,
        "commit": "a" * 40,
        "repository": "acme/vault",
        "pull_request": 17,
        "author": Author(github="bill"),
    }
    values.update(over)
    return preview.PreviewRequest(**values)


CONF = {"people": [{"github": "bill", "slack": "U0BILL"}], "github": {"preview_window": "7d"}}


def test_each_changed_function_gets_its_production_footprint(backend: EmbeddedBackend) -> None:
    result = preview.build(backend, request(), settings(**CONF), now=NOW)
    by_name = {f.name: f for f in result.footprints}
    appraise = by_name[APPRAISE]
    assert appraise.usage == "used" and appraise.calls == 40
    assert appraise.per_day == pytest.approx(40 / 7)
    assert appraise.p50_ms == pytest.approx(20.5, abs=0.01)
    assert appraise.p95_ms == pytest.approx(38.05, abs=0.01)
    assert appraise.error_rate == pytest.approx(10 / 40)
    assert appraise.exceptions == (("KeyError", 10),)
    assert appraise.routes == ("GET /orders/{id}",)
    assert any(w.startswith("raises KeyError 1.4/day") for w in appraise.watch)
    assert "fails 25.0% of its calls now" in appraise.watch
    post = by_name["vault.ledger.Ledger.post"]  # the old convention: namespace + function
    assert (post.calls, post.routes, post.error_rate) == (6, ("POST /deposits",), 0.0)
    close = by_name["vault.ledger.Ledger.close"]  # opens a span of its own, never seen
    assert close.usage == "never" and close.calls == 0
    assert close.watch[0].startswith("never ran in production in 7 days")
    assert by_name["vault.util.fmt"].usage == "unknown"  # no span would name it
    assert "README.md" not in by_name and len(result.footprints) == 4


def test_a_hot_path_is_said_so(backend: EmbeddedBackend) -> None:
    # The 40 calls of the first 40 minutes, in a one-hour window: 960 a day.
    data = preview.gather(
        backend, "vault", "production", end=T0 + timedelta(minutes=40), window=timedelta(hours=1)
    )
    cold, hot = (
        footprints(CHANGES[:1], data, window=timedelta(hours=1), hot_per_day=limit)[0]
        for limit in (1000, 900)
    )
    assert (cold.usage, hot.usage) == ("used", "hot")
    assert hot.watch[0] == "hot path: 960 calls/day; a regression here reaches many requests"
    assert not any(w.startswith("hot path") for w in cold.watch)


def test_nothing_in_the_window_means_never_or_unknown(backend: EmbeddedBackend) -> None:
    result = preview.build(backend, request(), settings(**CONF), now=NOW + timedelta(days=30))
    assert [f.usage for f in result.footprints] == ["unknown", "unknown", "never", "unknown"]


def test_the_dm_is_queued_once_and_the_previewed_functions_kept(
    backend: EmbeddedBackend, db_session: Session
) -> None:
    conf = settings(**CONF)
    built = preview.build(backend, request(), conf, now=NOW)
    first = preview.record(db_session, request(), built, conf, now=NOW)
    again = preview.record(db_session, request(), built, conf, now=NOW + timedelta(minutes=1))
    db_session.commit()
    assert first is not None and again is not None and first.id == again.id
    rows = db_session.scalars(select(Delivery).where(Delivery.kind == "preview")).all()
    assert [(d.recipient, d.key) for d in rows] == [("U0BILL", f"preview:acme/vault#17:{'a' * 40}")]
    assert "acme/vault#17" in rows[0].text and APPRAISE in rows[0].text
    kept = db_session.scalars(select(Preview)).one()
    assert (kept.pull_request, kept.repository) == (17, "acme/vault")
    assert [f["function"] for f in kept.functions][:2] == [APPRAISE, "vault.ledger.Ledger.post"]
    assert kept.functions[0]["calls"] == 40


def test_the_comment_carries_the_marker_and_a_row_per_function(backend: EmbeddedBackend) -> None:
    built = preview.build(backend, request(), settings(**CONF), now=NOW)
    body = render.markdown(built)
    assert body.startswith(render.MARKER)
    rows = [line for line in body.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 4 and "| 🔥 |" not in body
    assert "| `vault.ledger.Ledger.close` | 0 |" in body


def test_the_deploys_check_says_how_the_previewed_functions_did(
    backend: EmbeddedBackend, db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    conf = settings(**CONF, checks={"after": ["1h"]})
    built = preview.build(
        backend, request(url="https://github.com/acme/vault/pull/17"), conf, now=NOW
    )
    preview.record(
        db_session, request(url="https://github.com/acme/vault/pull/17"), built, conf, now=NOW
    )
    db_session.commit()
    deployed = NOW + timedelta(hours=1)
    resource = {
        "service.name": "vault",
        "service.version": "2.1.0",
        "deployment.environment.name": "production",
    }
    spans = sdk_spans(resource, lambda tracer: _vault(tracer, deployed + timedelta(seconds=5)))
    backend.ingest(protobuf(spans), "application/x-protobuf", None)
    release = event(
        service="vault", version="2.1.0", commit="b" * 40, deployed_at=deployed, changes=CHANGES
    )
    with db_sessions() as session:
        register_release(session, release, settings=conf, now=deployed)
        session.commit()
    clock = FixedClock(deployed + timedelta(hours=1))
    runner = CheckRunner(
        sessions=db_sessions, backend=backend, settings=conf, clock=clock, worker="w"
    )
    assert runner.run_due() == 1
    reply = db_session.scalars(select(Delivery).where(Delivery.kind == "reply")).one()
    assert "Previewed in <https://github.com/acme/vault/pull/17|PR #17>:" in reply.text
    # Before: 40 calls in 7 days; now: the 40 calls of the first hour after the deploy.
    assert (
        f"• `{APPRAISE}`: before 5.7/day, p95 38 ms, errors 25.0% → now ran 40 times (960/day)"
        in reply.text
    )
    assert "• `vault.ledger.Ledger.close`: before never seen → now" in reply.text
    section = [b for b in reply.blocks if "Previewed in" in str(b)]
    assert len(section) == 1 and reply.blocks[-1]["type"] == "actions"


def test_a_preview_made_after_the_deploy_is_not_its_preview(
    backend: EmbeddedBackend, db_session: Session
) -> None:
    conf = settings(**CONF)
    built = preview.build(backend, request(), conf, now=NOW)
    preview.record(db_session, request(), built, conf, now=NOW)
    db_session.commit()
    release = event(service="vault", deployed_at=NOW - timedelta(minutes=1), changes=CHANGES)
    with db_session.begin_nested():
        reg = register_release(db_session, release, settings=conf, now=NOW)
    row = db_session.get(Release, reg.release_id)
    assert preview.after_deploy(db_session, row, (), timedelta(hours=1)) is None
    row.deployed_at = NOW + timedelta(minutes=1)
    assert "PR #17" in (preview.after_deploy(db_session, row, (), timedelta(hours=1)) or "")


def test_the_preview_goes_to_its_author_only(backend: EmbeddedBackend, db_session: Session) -> None:
    conf = settings(**CONF, services={"vault": {"channel": "#vault", "owners": ["U0OWNER"]}})
    built = preview.build(backend, request(), conf, now=NOW)
    stranger = request(author=Author(github="someone-else"), commit="c" * 40)
    by_mail = request(author=Author(github="x", email="x@acme.example"), commit="d" * 40)
    assert preview.record(db_session, stranger, built, conf, now=NOW) is None
    mailed = preview.record(db_session, by_mail, built, conf, now=NOW)
    assert mailed is not None and mailed.recipient == "email:x@acme.example|"
    assert preview.record(db_session, request(), built, conf, now=NOW, notify=False) is None
    assert len(db_session.scalars(select(Preview)).all()) == 3  # kept even without a DM


def test_routes_are_the_entry_points_above_the_function_however_deep(
    db_sessions: sessionmaker[Session],
) -> None:
    """GET /a → service → repository → appraise (3 traces), and a consumer → appraise (2)."""

    def build(tracer: Any) -> None:
        for i in range(5):
            start = ns(T0 + timedelta(minutes=i))
            if i < 3:
                top = tracer.start_span("GET /a", kind=SpanKind.SERVER, start_time=start,
                                        attributes={"http.route": "/a",
                                                    "http.request.method": "GET"})  # fmt: skip
                parents = [top]
                for name in ("service", "repository"):
                    parents.append(tracer.start_span(name, context=set_span_in_context(
                        parents[-1]), start_time=start))  # fmt: skip
            else:
                top = tracer.start_span("orders process", kind=SpanKind.CONSUMER, start_time=start)
                parents = [top]
            tracer.start_span(
                "appraise",
                context=set_span_in_context(parents[-1]),
                start_time=start,
                attributes={"code.function.name": APPRAISE},
            ).end(end_time=start + 1_000_000)
            for span in reversed(parents):
                span.end(end_time=start + 2_000_000)

    store = EmbeddedBackend(db_sessions)
    resource = {"service.name": "deep", "service.version": "1", "deployment.environment": "prod"}
    store.ingest(protobuf(sdk_spans(resource, build)), "application/x-protobuf", None)
    data = preview.gather(store, "deep", "prod", end=NOW, window=timedelta(days=7))
    [found] = footprints(CHANGES[:1], data, window=timedelta(days=7))
    assert found.calls == 5
    assert found.routes == ("GET /a", "orders process")
    assert "runs under GET /a, orders process" in found.watch


def test_a_change_without_functions_stays_quiet_until_a_comment_exists(
    backend: EmbeddedBackend, db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    token = "ghp_" + "k" * 36
    docs = (Change(file="docs/intro.md", lines=((1, 4),)),)
    conf = settings(**CONF)
    with FakeGitHub(token) as gh:
        client = GitHubClient(token, base_url=gh.base_url)

        def run(changes: tuple[Change, ...], commit: str) -> preview.Outcome:
            return preview.run(
                sessions=db_sessions,
                backend=backend,
                settings=conf,
                request=request(changes=changes, commit=commit),
                now=NOW,
                github=client,
            )

        quiet = run(docs, "1" * 40)
        assert quiet.comment is None and quiet.delivery_id is None and gh.requests == []
        assert run(CHANGES, "2" * 40).comment is not None
        updated = run(docs, "3" * 40)  # the code changes were dropped from the pull request
        bodies = [c["body"] for c in gh.comments("acme/vault", 17)]
    assert updated.comment is not None and updated.comment.action == "updated"
    assert updated.delivery_id is None
    assert len(bodies) == 1 and "No changed function feedbot can read" in bodies[0]
