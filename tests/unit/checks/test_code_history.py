"""The code history: real SDK spans with ``code.*`` attributes, through the check runner, into
the store, and read back as ``/feedback`` reads it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks.register import register_release
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.releases.event import Change
from feedbot.store import history
from feedbot.store.models import CodeHistory, CodeKey
from tests.factories import DEPLOYED, event, settings

SERVICE = "vault-service"
FUNCTION = "vault.appraisal.Appraiser.appraise"


def code_spans(
    version: str,
    start: datetime,
    n: int,
    *,
    errors: int = 0,
    environment: str = "production",
    old_semconv: bool = False,
) -> bytes:
    """``n`` traces from the real SDK: ``GET /vaults/{id}`` → ``appraise`` (a @WithSpan-like
    INTERNAL span naming its function and file); the first ``errors`` raise KeyError."""
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

    from tests.fakes.sdk_spans import protobuf, recording

    resource = {
        "service.name": SERVICE,
        "service.version": version,
        "service.instance.id": f"{version}-a",
        "deployment.environment.name": environment,
    }
    code = (
        {"code.namespace": "vault.appraisal.Appraiser", "code.function": "appraise",
         "code.filepath": "vault/appraisal.py"}
        if old_semconv
        else {"code.function.name": FUNCTION, "code.file.path": "vault/appraisal.py"}
    )  # fmt: skip
    with recording(resource) as (tracer, spans):
        for i in range(n):
            begin = int(start.timestamp() * 1e9) + i * 2_000_000_000
            route = tracer.start_span("GET /vaults/{id}", kind=SpanKind.SERVER, start_time=begin,
                                      attributes={"http.route": "/vaults/{id}",
                                                  "http.request.method": "GET"})  # fmt: skip
            child = tracer.start_span("appraise", context=set_span_in_context(route),
                                      start_time=begin + 1_000_000, attributes=code)  # fmt: skip
            if i < errors:
                child.record_exception(KeyError("vault"), timestamp=begin + 2_000_000)
                child.set_status(Status(StatusCode.ERROR))
            child.end(end_time=begin + 1_000_000 + (8 + i % 5) * 1_000_000)
            route.end(end_time=begin + 20_000_000)
    return protobuf(spans)


def _run(sessions: sessionmaker[Session], at: timedelta) -> None:
    conf = settings(checks={"after": ["15m", "1h"]})
    backend = EmbeddedBackend(sessions)
    CheckRunner(sessions=sessions, backend=backend, settings=conf,
                clock=FixedClock(DEPLOYED + at), worker="w1").run_due()  # fmt: skip


def _setup(sessions: sessionmaker[Session], *, errors: int = 0, old: bool = False) -> int:
    conf = settings(checks={"after": ["15m", "1h"]})
    with sessions() as session:
        register_release(session, event(version="1.4.1", commit="a",
                                        deployed_at=DEPLOYED - timedelta(days=1)),
                         settings=conf, now=DEPLOYED - timedelta(days=1))  # fmt: skip
        new = register_release(session, event(version="1.4.2", commit="b"), settings=conf,
                               now=DEPLOYED).release_id  # fmt: skip
    backend = EmbeddedBackend(sessions)
    old_body = code_spans("1.4.1", DEPLOYED - timedelta(hours=2), 60, old_semconv=old)
    backend.ingest(old_body, "application/x-protobuf", None)
    body = code_spans("1.4.2", DEPLOYED + timedelta(minutes=1), 120, errors=errors, old_semconv=old)
    backend.ingest(body, "application/x-protobuf", None)
    return new


def test_each_check_keeps_operation_function_and_file_and_replaces_its_release_row(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    release_id = _setup(db_sessions, errors=12)
    _run(db_sessions, timedelta(minutes=15))
    _run(db_sessions, timedelta(hours=1))
    keys = {(k.kind, k.name) for k in db_session.scalars(select(CodeKey))}
    assert {
        ("operation", "GET /vaults/{id}"),
        ("operation", "appraise"),
        ("function", FUNCTION),
        ("file", "vault/appraisal.py"),
    } <= keys
    rows = db_session.scalars(select(CodeHistory).where(CodeHistory.release_id == release_id)).all()
    # One row per key for the release: the 1 h check replaced the 15 min one.
    assert len(rows) == len({r.key_id for r in rows})
    assert {r.at for r in rows} == {DEPLOYED + timedelta(hours=1)}
    (fn,) = [
        r
        for r in rows
        if db_session.get(CodeKey, r.key_id).name == FUNCTION  # type: ignore[union-attr]
    ]
    assert fn.calls == 120 and fn.errors == 12
    assert fn.callers == [["GET /vaults/{id}", 120]]
    assert fn.exceptions == [["KeyError", 12]]
    assert 8 <= (fn.p50_ms or 0) <= 12 and (fn.p95_ms or 0) >= (fn.p50_ms or 0)
    assert fn.environment == "production" and fn.version == "1.4.2"


def test_old_semantic_conventions_name_the_same_function(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    _setup(db_sessions, old=True)
    _run(db_sessions, timedelta(minutes=15))
    names = {k.name for k in db_session.scalars(select(CodeKey).where(CodeKey.kind == "function"))}
    assert names == {FUNCTION}


def test_what_someone_types_resolves_to_keys(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    _setup(db_sessions)
    _run(db_sessions, timedelta(minutes=15))
    for typed, kind in (
        ("appraise", "function"),
        ("Appraiser.appraise", "function"),
        (FUNCTION.upper(), "function"),
        ("appraisal.py", "file"),
        ("vault/appraisal.py", "file"),
        ("/vaults/{id}", "operation"),
        ("GET /vaults/{id}", "operation"),
    ):
        found = history.find(db_session, typed)
        assert kind in {k.kind for k in found}, typed
    assert history.find(db_session, "praise") == []
    assert history.find(db_session, "Other.appraise") == []
    assert FUNCTION in history.closest(db_session, "vault.appraisal.Appraiser.apprise")


def test_the_summary_answers_from_the_history(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    _setup(db_sessions, errors=6)
    _run(db_sessions, timedelta(minutes=15))
    keys = [k for k in history.find(db_session, "appraise") if k.kind == "function"]
    summary = history.summarise(db_session, "appraise", keys, now=DEPLOYED + timedelta(hours=1))
    assert summary.calls == 120
    assert summary.error_rate == 6 / 120
    assert summary.callers == (("GET /vaults/{id}", 120),)
    assert [e[:2] for e in summary.exceptions] == [("KeyError", 6)]
    # 120 calls over the ~4 minutes the version was seen serving: about 43,000 a day.
    ((day, per_day),) = summary.per_day
    assert day == DEPLOYED.date() and 40_000 < per_day < 46_000
    assert [(e.environment, e.calls > 0) for e in summary.environments] == [("production", True)]
    # The factory's release changed vault.appraisal.appraise in vault/appraisal.py.
    assert [t.version for t in summary.touched] == ["1.4.2", "1.4.1"]


def test_retention_forgets_old_rows(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    _setup(db_sessions)
    _run(db_sessions, timedelta(minutes=15))
    assert db_session.scalar(select(func.count()).select_from(CodeHistory))
    gone = history.prune(db_session, DEPLOYED + timedelta(days=1))
    assert gone > 0
    assert db_session.scalar(select(func.count()).select_from(CodeHistory)) == 0
    assert db_session.scalar(select(func.count()).select_from(CodeKey)) == 0


# --- /feedback about code ------------------------------------------------------------------


def _feedback(sessions: sessionmaker[Session], text: str, **raw: object) -> tuple[str, bool]:
    from feedbot.digest.plain import blocks_text
    from feedbot.slack.feedback import FeedbackService, parse

    conf = settings(checks={"after": ["15m", "1h"]}, **raw)
    service = FeedbackService(
        sessions=sessions, settings=conf, clock=FixedClock(DEPLOYED + timedelta(hours=2))
    )
    rendered, known = service.reply(parse(text))
    for raw in rendered.blocks:  # what Slack would accept
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
    assert len(rendered.blocks) <= 50
    return blocks_text(rendered.blocks, rendered.text), known


def test_feedback_about_a_function_answers_the_talks_questions(
    db_sessions: sessionmaker[Session],
) -> None:
    conf = settings(checks={"after": ["15m", "1h"]})
    _setup(db_sessions, errors=6)
    with db_sessions() as session:  # the same version in staging, where no span reached it
        register_release(session, event(version="1.4.2", commit="b", environment="staging"),
                         settings=conf, now=DEPLOYED)  # fmt: skip
    _run(db_sessions, timedelta(minutes=15))
    out, known = _feedback(db_sessions, "Appraiser.appraise")
    assert known
    assert "function `vault.appraisal.Appraiser.appraise` (vault-service)" in out
    # 15 minutes after the deploy: what was counted, then the rate it makes, never a bare
    # "calls a day" extrapolated from minutes
    assert "120 calls in 4 min of serving in production" in out
    assert "a day at that rate" in out and "no trend yet" in out
    assert "GET /vaults/{id} (120 spans)" in out  # who calls it
    assert "errors 5.00%" in out and "120 calls in production" in out  # baseline
    assert "`KeyError` (6," in out
    assert "staging: ❌ never ran there" in out
    assert "Runs in production but never in staging" in out
    # The releases that changed its file (their diff names the function without its class).
    assert "• vault-service 1.4.2 · Nov 24 · production · ✅ looks fine" in out
    assert "• vault-service 1.4.1 · Nov 23 · production · not checked yet" in out
    assert "regressed" not in out.split("Releases that changed it")[0]  # a history, no verdict


def test_feedback_about_a_route_and_a_file(db_sessions: sessionmaker[Session]) -> None:
    _setup(db_sessions)
    _run(db_sessions, timedelta(minutes=15))
    route, known = _feedback(db_sessions, "GET /vaults/{id} --share")
    assert known and "operation `GET /vaults/{id}`" in route
    assert "another service" not in route and "entry point" in route  # root spans
    path, known = _feedback(db_sessions, "appraisal.py")
    assert known and "file `vault/appraisal.py`" in path and "120 calls in production" in path


def test_an_unknown_name_gets_the_closest_names_and_no_verdict(
    db_sessions: sessionmaker[Session],
) -> None:
    _setup(db_sessions)
    _run(db_sessions, timedelta(minutes=15))
    out, known = _feedback(db_sessions, "vault.appraisal.Appraiser.apprise")
    assert not known
    assert "I don't know" in out and "`vault.appraisal.Appraiser.appraise`" in out
    assert not any(word in out for word in ("regressed", "looks fine", "improved"))


def test_a_feature_matching_no_span_says_so_without_a_verdict(
    db_sessions: sessionmaker[Session],
) -> None:
    _setup(db_sessions, errors=60)  # enough errors for the service's own verdict to be red
    _run(db_sessions, timedelta(minutes=15))
    features = {"appraisal": {"service": SERVICE, "spans": ["GET /vault/*/appraise"]}}
    out, known = _feedback(db_sessions, "appraisal", features=features)
    assert not known
    assert "`appraisal` matches nothing" in out and "`GET /vaults/{id}`" in out
    assert not any(word in out for word in ("regressed", "looks fine", "improved", "0 spans"))
    features = {"appraisal": {"service": SERVICE, "spans": ["GET /vaults/*"]}}
    out, known = _feedback(db_sessions, "appraisal", features=features)
    assert known and "appraisal (vault-service) — newest checked release 1.4.2" in out


# --- the weekly digest's code view ----------------------------------------------------------


def test_the_weekly_digest_shows_unreached_hottest_and_production_only_code(
    db_sessions: sessionmaker[Session],
) -> None:
    from feedbot.checks.digests import WeeklyDigests
    from feedbot.digest.plain import blocks_text
    from feedbot.releases.event import Change

    conf = settings(
        checks={"after": ["15m", "1h"]}, slack={"weekly_digest": {"channel": "#feedback"}}
    )
    changes = (
        Change(file="vault/appraisal.py", functions=(FUNCTION, "vault.appraisal.Appraiser.unused")),
    )
    with db_sessions() as session:
        register_release(session, event(version="1.4.1", commit="a", changes=changes,
                                        deployed_at=DEPLOYED - timedelta(days=1)),
                         settings=conf, now=DEPLOYED - timedelta(days=1))  # fmt: skip
        register_release(session, event(version="1.4.2", commit="b", changes=changes),
                         settings=conf, now=DEPLOYED)  # fmt: skip
        register_release(session, event(version="1.4.2", commit="b", environment="staging"),
                         settings=conf, now=DEPLOYED)  # fmt: skip
    backend = EmbeddedBackend(db_sessions)
    body = code_spans("1.4.2", DEPLOYED + timedelta(minutes=1), 120)
    backend.ingest(body, "application/x-protobuf", None)
    _run(db_sessions, timedelta(minutes=15))
    digests = WeeklyDigests(sessions=db_sessions, settings=conf, clock=FixedClock(DEPLOYED))
    (message,) = digests.build(DEPLOYED + timedelta(days=2))["#feedback"]
    out = blocks_text(message.blocks, message.text)
    unreached = out.split("Code never reached since it shipped")[1].split("\n\n")[0]
    assert "`vault.appraisal.Appraiser.unused` (shipped Nov 24)" in unreached
    assert FUNCTION not in unreached
    hottest = out.split("Hottest changed functions")[1].split("\n\n")[0]
    assert f"`{FUNCTION}`" in hottest and "calls a day" in hottest
    only = out.split("Runs in production, in no test environment")[1]
    assert f"vault-service: `{FUNCTION}`" in only and "never in staging" in only


def test_no_code_view_without_code_attributes(db_sessions: sessionmaker[Session]) -> None:
    """A service whose spans never name a function has no "never reached" guesses."""
    from feedbot.checks.digests import WeeklyDigests
    from feedbot.digest.plain import blocks_text
    from tests.factories import otlp_spans

    conf = settings(
        checks={"after": ["15m", "1h"]}, slack={"weekly_digest": {"channel": "#feedback"}}
    )
    with db_sessions() as session:
        register_release(session, event(), settings=conf, now=DEPLOYED)
    body = otlp_spans(service=SERVICE, version="1.4.2", start=DEPLOYED + timedelta(minutes=1),
                      spans=[("/vaults", 10.0, False)] * 30)  # fmt: skip
    EmbeddedBackend(db_sessions).ingest(body, "application/x-protobuf", None)
    _run(db_sessions, timedelta(minutes=15))
    digests = WeeklyDigests(sessions=db_sessions, settings=conf, clock=FixedClock(DEPLOYED))
    (message,) = digests.build(DEPLOYED + timedelta(days=2))["#feedback"]
    out = blocks_text(message.blocks, message.text)
    assert "Code never reached since it shipped" not in out
    assert "Hottest changed functions" not in out


def test_the_checks_findings_are_kept_as_insights_of_their_keys(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    from feedbot.store import queries

    release_id = _setup(db_sessions, errors=60)
    _run(db_sessions, timedelta(minutes=15))
    (check,) = [c for c in queries.release_checks(db_session, release_id) if c.state == "done"]
    said = {
        (str(f["span"]), str(f["kind"]))
        for f in check.result["report"]["findings"]  # type: ignore[index]
        if f.get("span")
    }
    assert said, "errors on 60 of 120 spans must make the check say something"
    keys = {k.id: k.name for k in db_session.scalars(select(CodeKey))}
    rows = db_session.scalars(select(CodeHistory).where(CodeHistory.release_id == release_id))
    kept = {(keys[r.key_id], kind) for r in rows for kind in r.insights}
    assert said <= kept
    span, kind = sorted(said)[0]
    found = [k for k in history.find(db_session, span) if k.kind == "operation"]
    summary = history.summarise(db_session, span, found, now=DEPLOYED + timedelta(hours=1))
    assert (kind, 1) in [(k, n) for k, n, _ in summary.insights]


class _Unasked:
    """A trace store the preview must not need: the history holds every changed function."""

    name = "unasked"

    def collect(self, query: object) -> object:
        raise AssertionError(f"the trace store was asked: {query}")

    def versions(self, *args: object) -> dict[str, int]:
        raise AssertionError("the trace store was asked for versions")

    def close(self) -> None:
        pass


def test_the_preview_reads_a_function_the_history_holds_instead_of_the_trace_store(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    from feedbot.checks import preview

    _setup(db_sessions, errors=12)
    _run(db_sessions, timedelta(hours=1))
    [row] = [
        r
        for r in db_session.scalars(select(CodeHistory))
        if db_session.get(CodeKey, r.key_id).name == FUNCTION  # type: ignore[union-attr]
    ]
    conf = settings(github={"preview_window": "7d"})
    # The diff qualifies the method with its file's module path: the same function.
    change = Change(file="vault/appraisal.py", functions=("appraisal.Appraiser.appraise",))
    request = preview.PreviewRequest(service=SERVICE, changes=(change,), commit="c" * 40)
    now = DEPLOYED + timedelta(hours=2)

    built = preview.build(_Unasked(), request, conf, now=now, sessions=db_sessions)  # type: ignore[arg-type]

    [found] = built.footprints
    per_day = 120 * 86_400 / row.seconds
    assert found.per_day == pytest.approx(per_day)
    assert found.calls == round(per_day * 7)
    assert (found.p50_ms, found.p95_ms) == (row.p50_ms, row.p95_ms)
    assert found.error_rate == pytest.approx(12 / 120)
    assert [kind for kind, _ in found.exceptions] == ["KeyError"]
    assert found.routes == ("GET /vaults/{id}",)
    # Outside the window the history has nothing to say, and the trace store is asked.
    with pytest.raises(AssertionError, match="trace store was asked"):
        preview.build(_Unasked(), request, conf, now=now + timedelta(days=8), sessions=db_sessions)  # type: ignore[arg-type]
