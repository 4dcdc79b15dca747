"""The ``/feedback`` answer from a stored report: traffic, callers, latency, findings, history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from feedbot.digest import answers
from feedbot.digest.answers import View, callers_text
from tests.unit.digest.test_blocks import validate

DEPLOYED = datetime(2026, 11, 24, 10, tzinfo=UTC)


def side(count: int, callers: list[tuple[str, int]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"count": count, "errors": 0, "p50_ms": 5.0, "p95_ms": 9.0}
    out["p99_ms"] = 12.0
    if callers is not None:
        out["callers"] = [{"span": span, "count": n} for span, n in callers]
    return out


def report(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "service": "vault-service",
        "version": "1.4.2",
        "baseline_version": "1.4.1",
        "environment": "production",
        "window": {"candidate": None, "baseline": None},
        "verdict": "neutral",
        "groups": groups,
        "findings": [],
    }


def test_the_answer_says_who_calls_each_group() -> None:
    doc = report(
        [
            {
                "span": "SELECT vaults",
                "kind": "CLIENT",
                "baseline": side(700, [("GET /vaults/{id}", 700)]),
                "candidate": side(852, [("GET /vaults/{id}", 812), ("(remote)", 40)]),
            },
            {
                "span": "GET /<vaults>",
                "kind": "SERVER",
                "baseline": side(30, [("(root)", 30), ("<!here>", 1)]),
                "candidate": None,
            },
        ]
    )
    out = answers.feedback(View(1, "production", DEPLOYED, doc), feature_name=None, feature=None)
    validate(out.blocks)
    body = json.dumps(out.blocks, ensure_ascii=False)
    assert "*Traffic, callers and latency*" in body
    assert "`SELECT vaults`: 700 → 852 spans" in body
    assert "called by GET /vaults/{id} (812), (remote) (40)" in body  # the new version's
    assert "called by (root) (30), &lt;!here&gt; (1) (baseline)" in body  # gone: the baseline's
    assert "<!here>" not in body


def test_reports_stored_before_callers_were_recorded_answer_without_them() -> None:
    old = {"span": "GET /a", "kind": "SERVER", "baseline": side(3, None), "candidate": side(4, [])}
    assert callers_text(old) == ""
    out = answers.feedback(
        View(1, "production", DEPLOYED, report([old])), feature_name=None, feature=None
    )
    validate(out.blocks)
    assert "called by" not in json.dumps(out.blocks)


def test_a_superseded_release_in_the_history_says_so_instead_of_not_checked_yet() -> None:
    view = View(
        release_id=2,
        environment="production",
        deployed_at=DEPLOYED,
        report=report([]),
        history=(
            answers.Past("1.4.2", DEPLOYED, "neutral"),
            answers.Past("1.4.1", DEPLOYED, None, superseded=True),
            answers.Past("1.4.0", DEPLOYED, "regressed", superseded=True),
            answers.Past("1.3.9", DEPLOYED, None),
        ),
    )
    out = answers.feedback(view, feature_name=None, feature=None)
    history = out.blocks[-1]["text"]["text"]
    assert "1.4.1 · Nov 24 · ⏭ superseded before its checks ran" in history
    assert "1.4.0 · Nov 24 · 🔴 regressed (superseded before its last check)" in history
    assert "1.3.9 · Nov 24 · not checked yet" in history


def test_traffic_is_compared_as_a_rate_not_as_counts_over_windows_of_different_lengths() -> None:
    doc = report([{"span": "GET /vaults", "kind": "SERVER", "baseline": side(1440, None),
                   "candidate": side(60, None)}])  # fmt: skip
    doc["window"] = {
        "baseline": {"start": "2026-11-23T10:00:00+00:00", "end": "2026-11-24T10:00:00+00:00"},
        "candidate": {"start": "2026-11-24T10:00:00+00:00", "end": "2026-11-24T10:01:00+00:00"},
    }
    text = answers.groups_text(doc)
    # A report stored before serving times were kept: over the windows, and it says so.
    older = "(rates over the whole query windows: report stored before serving times)"
    assert f"`GET /vaults`: 1.0 → 60 spans/min {older}" in text  # 1,440 a day is 1 a minute
    assert "(n = 1440 → 60)" in text  # the samples behind the percentiles stay counts
    doc["groups"][0]["baseline"] = side(60, None)
    assert f"`GET /vaults`: 2.5 → 3,600 spans/h {older}" in answers.groups_text(doc)


def _served(baseline: tuple[str, str] | None, candidate: tuple[str, str]) -> dict[str, Any]:
    """A report's ``window`` (a day of baseline, ten minutes since the deploy) and ``observed``."""

    def span(pair: tuple[str, str] | None) -> dict[str, str] | None:
        return (
            {"start": f"2026-11-{pair[0]}+00:00", "end": f"2026-11-{pair[1]}+00:00"}
            if pair
            else None
        )

    return {
        "window": {
            "baseline": span(("23T10:00:00", "24T10:10:00")),
            "candidate": span(("24T10:00:00", "24T10:10:00")),
        },
        "observed": {"baseline": span(baseline), "candidate": span(candidate)},
    }


def test_a_baseline_that_served_seconds_of_its_day_shows_a_count_not_a_rate() -> None:
    # The demo's shape: 1.0.0 served five seconds before 1.1.0 replaced it.
    doc = report([{"span": "GET /vaults", "kind": "SERVER", "baseline": side(17, None),
                   "candidate": side(20_190, None)},
                  {"span": "goblin_seal", "kind": "INTERNAL", "baseline": None,
                   "candidate": side(3, None)}])  # fmt: skip
    doc.update(_served(("24T09:59:54.5", "24T09:59:59.5"), ("24T10:00:00", "24T10:10:00")))

    text = answers.groups_text(doc)

    # Not 17 over 24 h 10 min (0.7 a minute), nor a "rate" of 204 a minute from five seconds.
    assert "`GET /vaults`: 17 spans in 5 s → 2,019 spans/min · " in text
    doc["observed"]["candidate"]["end"] = "2026-11-24T10:00:20+00:00"
    assert "`goblin_seal`: none → 3 spans in 20 s · " in answers.groups_text(doc)
    assert "query windows" not in text


def test_rates_divide_by_the_time_each_version_served() -> None:
    # 1.0.0 served the last two hours of the day; 1.1.0 its ten minutes: the same load.
    doc = report([{"span": "GET /vaults", "kind": "SERVER", "baseline": side(1_200, None),
                   "candidate": side(100, None)},
                  {"span": "GET /gone", "kind": "SERVER", "baseline": side(1, None),
                   "candidate": None}])  # fmt: skip
    doc.update(_served(("24T08:00:00", "24T10:00:00"), ("24T10:00:00", "24T10:10:00")))

    text = answers.groups_text(doc)

    assert "`GET /vaults`: 10 → 10 spans/min · " in text  # over the whole day: 0.8 → 10
    assert "`GET /gone`: 0.5 → 0.0 spans/h · " in text  # one in two hours
    doc["observed"]["candidate"] = {"start": "2026-11-24T10:00:00+00:00",
                                    "end": "2026-11-24T10:00:00.4+00:00"}  # fmt: skip
    assert "`GET /vaults`: 10 spans/min → 100 spans in under 1 s · " in answers.groups_text(doc)


def test_a_sqlite_file_group_is_shown_by_its_file_name_and_routes_as_they_are() -> None:
    base = side(5, [("GET /static/app.js", 5)])
    group = {"span": "SELECT /tmp/tmpab12/vault.db", "kind": "CLIENT", "baseline": base}
    doc = report([{**group, "candidate": side(5, None)}])
    text = answers.groups_text(doc)
    assert "`SELECT vault.db`" in text and "/tmp/" not in text
    assert answers.display_name("GET /static/app.js") == "GET /static/app.js"
    assert answers.display_name("INSERT /srv/data/app.sqlite3") == "INSERT app.sqlite3"
    assert answers.display_name("vault.deposits.deposit") == "vault.deposits.deposit"
