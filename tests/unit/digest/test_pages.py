"""The pages' HTML from a real report (the vault demo's 2.0.0 check): what each part shows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from feedbot.digest import pages

REPORT = Path(__file__).parent.parent.parent / "data" / "vault-2.0.0-report.json"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return json.loads(REPORT.read_text())


def facts(**over: Any) -> pages.ReleaseFacts:
    base: dict[str, Any] = {
        "release_id": 2,
        "service": "vault-service",
        "version": "2.0.0",
        "environment": "production",
        "deployed_at": NOW - timedelta(hours=1),
        "features": ("sealed-deposits",),
    }
    return pages.ReleaseFacts(**{**base, **over})


def test_the_release_page_holds_every_group_the_evidence_and_the_traces(
    report: dict[str, Any],
) -> None:
    html = pages.release_page(
        facts(),
        report,
        checks=[
            pages.CheckRow("+15m", NOW, "done"),
            pages.CheckRow("+1h", NOW, "failed", error="x"),
        ],
        charts=[pages.Chart("GET /a: 1 → 2", b"\x89PNG\r\n\x1a\nrest")],
        ui_url="https://jaeger.example/trace/{trace_id}?x=1",
        now=NOW,
    )
    rows = re.findall(r"<tr(?: class=\"changed\")?><td class=\"name\">", html)
    assert len(rows) == len(report["groups"])  # every group, not only the changed ones
    assert html.count('class="card finding"') == len(report["findings"])
    assert "one-sided Mann-Whitney (asymptotic) + Hodges-Lehmann ratio" in html
    assert "2.91× – 3.28× (95%)" in html  # the CI of the route's regression
    traces = {str(t) for f in report["findings"] for t in f.get("example_trace_ids", [])}
    assert traces
    for trace in traces:
        assert f'href="https://jaeger.example/trace/{trace}?x=1"' in html
    assert 'src="data:image/png;base64,iVBORw0KGgpyZXN0"' in html
    assert '<li class="failed">' in html
    # Backticked names in the story are code; everything else is escaped.
    assert "<code>POST /vaults/{vault_id}/items</code> is 3.1× slower" in html


def test_text_from_a_report_cannot_inject_markup(report: dict[str, Any]) -> None:
    hostile = json.loads(json.dumps(report))
    hostile["groups"][0]["span"] = "<script>alert(1)</script>"
    for finding in hostile["findings"]:
        finding["message"] = "<img src=x onerror=alert(1)>"
    html = pages.release_page(facts(title="<b>pr</b>"), hostile, now=NOW)
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>pr</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_meeting_asks_about_open_alarms_and_groups_by_feature(
    report: dict[str, Any],
) -> None:
    released = [
        pages.PageRelease(facts(), report, link="https://fb/releases/2?t=1"),
        pages.PageRelease(facts(release_id=3, version="2.0.1", features=()), None),
    ]
    html = pages.meeting_page(
        pages.Meeting(NOW - timedelta(days=14), NOW, "biweekly", "https://meet.example/x"),
        released,
        now=NOW,
    )
    assert "Feedback meeting, every other week" in html
    assert 'href="https://meet.example/x"' in html
    assert "Was this expected?" in html
    assert "Is this code live yet?" in html  # recount_galleons never ran
    assert '<article class="card"><h3>sealed-deposits</h3>' in html
    assert html.index("vault-service 2.0.0") < html.index("vault-service 2.0.1")
    lines = pages.agenda_lines(released)
    assert lines[0].startswith("regressed · vault-service 2.0.0 (sealed-deposits): ")
    assert lines[1].startswith("not checked yet · vault-service 2.0.1")
    assert any(line.startswith("❓ vault-service 2.0.0: Was this expected?") for line in lines)


def test_the_service_page_draws_its_releases_over_time(report: dict[str, Any]) -> None:
    quiet = {"verdict": "neutral", "findings": [], "groups": []}
    released = [
        pages.PageRelease(
            facts(release_id=i, version=f"2.0.{i}", deployed_at=NOW - timedelta(days=9 - i)), r
        )
        for i, r in enumerate([quiet, report, None])
    ][::-1]
    html = pages.service_page("vault-service", released, now=NOW, meeting_link=None)
    dots = re.findall(r'<circle cx="([\d.]+)" cy="20" r="7" fill="(#\w+)"', html)
    # Newest first in the list, left to right in time on the strip: first deploy at the left.
    assert [colour for _, colour in sorted(dots, key=lambda d: float(d[0]))] == [
        "#7a8ca3",
        "#c0392b",
        "#c8c8c8",
    ]
    xs = sorted(float(x) for x, _ in dots)
    assert xs == [12.0, 300.0, 588.0]  # evenly spaced deploys, evenly spaced dots
    assert html.index("vault-service 2.0.2") < html.index("vault-service 2.0.0")
