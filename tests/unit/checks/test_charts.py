"""Charts of changed routes: drawn by the runner, queued after the reply, new ones only."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from feedbot.checks import charts
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.store.models import Check
from tests.factories import DEPLOYED
from tests.unit.checks.test_check_replies import NEW, SyntheticBackend, conf, rows, setup

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_regressed_route_gets_one_chart_after_its_reply(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    setup(db_sessions).run_due()
    first_reply, second_reply = [r for r in rows(db_session, "reply") if r.check_id]
    [chart] = rows(db_session, "chart")  # both looks say the same: drawn once
    assert chart.check_id == first_reply.check_id
    assert first_reply.id < chart.id < second_reply.id  # the outbox sends in this order
    assert chart.release_id == NEW[-1] and chart.recipient == first_reply.recipient
    assert chart.file_data is not None and chart.file_data.startswith(PNG)
    assert chart.file_name == chart.key.replace(":", "-") + ".png"
    assert chart.file_title == "GET /r1: 1.4.1 → 1.4.2"
    assert chart.text.startswith("Request times of GET /r1: 1.4.1: ")
    checks = sorted(
        db_session.query(Check).filter(Check.release_id == NEW[-1]),
        key=lambda c: c.offset_seconds,
    )
    # The regression is confirmed at the first look already; the second says nothing new.
    assert [c.result["charts"] for c in checks if c.result] == [
        ["GET /r1|latency_regression@confirmed"],
        [],
    ]


def test_charts_switched_off_draw_nothing(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    setup(db_sessions)
    on = conf()
    CheckRunner(
        sessions=db_sessions,
        backend=SyntheticBackend(),  # type: ignore[arg-type]
        settings=replace(on, slack=replace(on.slack, charts=False)),
        clock=FixedClock(DEPLOYED + timedelta(hours=2)),
        worker="w1",
    ).run_due()
    assert rows(db_session, "chart") == []
    assert [r for r in rows(db_session, "reply") if r.check_id]


def test_at_most_two_routes_those_the_reply_tells_in_its_order() -> None:
    from feedbot.analysis.compare import Analysis
    from feedbot.analysis.findings import Effect, Finding, GroupComparison

    def group(span: str, kind: str = "SERVER") -> GroupComparison:
        return GroupComparison(span, kind, None, None, "tested")

    def finding(kind: str, span: str, ratio: float, state: str = "confirmed") -> Finding:
        regressed = kind != "latency_improvement"
        return Finding(
            kind=kind,  # type: ignore[arg-type]
            severity="high" if regressed else "low",
            message="",
            span=span,
            change=Effect(ratio),
            state=state,  # type: ignore[arg-type]
            counts_toward="regressed" if regressed else "improved",
        )

    analysis = Analysis(
        verdict="regressed",
        groups=(group("GET /a"), group("GET /b"), group("GET /c"), group("SELECT x", "CLIENT")),
        findings=(
            finding("latency_improvement", "GET /a", 0.5),
            finding("latency_regression", "GET /b", 1.2, "suspected"),
            finding("latency_regression", "GET /c", 1.1),
            finding("error_rate_increase", "GET /c", 3.0),
            finding("latency_regression", "SELECT x", 9.0),
        ),
        summary=(),
    )
    # Only the routes the reply's chapters are told at, in the reply's order; no CLIENT span.
    told = ["GET /x", "SELECT x", "GET /c", "GET /b", "GET /a"]
    chosen = charts.wanted(analysis, charted=(), told=told)
    assert [(w.span, w.errors) for w in chosen] == [("GET /c", True), ("GET /b", False)]
    assert chosen[0].ident == "GET /c|error_rate_increase@confirmed,latency_regression@confirmed"
    again = charts.wanted(analysis, charted={chosen[0].ident}, told=told)
    assert [w.span for w in again] == ["GET /b", "GET /a"]
    # Charted while confirmed; now only suspected (or the other way round): drawn again.
    changed = charts.wanted(analysis, charted={"GET /b|latency_regression@confirmed"}, told=told)
    assert "GET /b" in [w.span for w in changed]
    told = charts.wanted(analysis, charted=(), told=["GET /x", "GET /a", "GET /b", "GET /c"])
    assert [w.span for w in told] == ["GET /a", "GET /b"]
    assert [w.span for w in charts.wanted(analysis, charted=(), told=["GET /b"])] == ["GET /b"]
    assert charts.wanted(analysis, charted=(), told=[]) == []
