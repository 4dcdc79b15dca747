"""A later check's reply: what is new, changed or gone since the reply before it."""

from __future__ import annotations

import copy
from typing import Any

from feedbot.analysis.report import to_json
from feedbot.digest import delta
from feedbot.digest.blocks import ReplyOptions, check_reply, finding_key
from tests.unit.analysis.test_report import CONTEXT, _analysis
from tests.unit.digest.test_blocks import validate


def finding(kind: str, span: str, state: str = "confirmed") -> dict[str, Any]:
    return {
        "kind": kind,
        "severity": "high",
        "state": state,
        "message": f"{span} {kind}",
        "span": span,
    }


def test_findings_are_sorted_into_new_changed_still_there_and_gone() -> None:
    before = [
        finding("latency_regression", "GET /a", "suspected"),
        finding("latency_regression", "GET /b"),
        finding("low_traffic", "GET /c"),
        finding("bottleneck", "GET /acked"),
    ]
    now = [
        finding("latency_regression", "GET /a"),
        finding("latency_regression", "GET /b"),
        finding("error_rate_increase", "GET /d", "suspected"),
    ]
    out = delta.compare(before, now, acknowledged={finding_key(before[3])})
    assert [f["span"] for f in out.new] == ["GET /d"]
    assert [f["span"] for f in out.changed] == ["GET /a"]
    assert out.was == {finding_key(now[0]): "suspected"}
    assert [f["span"] for f in out.same] == ["GET /b"]
    assert [delta.gone_text(f) for f in out.gone] == ["enough traffic now on GET /c"]
    assert [f["span"] for f in out.fresh] == ["GET /a", "GET /d"]  # report order
    assert delta.gone_lines(out) == ["enough traffic now on GET /c"]
    assert delta.summary(out) == "1 new, 1 changed, 1 went away, 1 still there"


def test_a_follow_up_reply_puts_buttons_only_on_new_or_changed_alarms() -> None:
    # A confirmed regression, and a new KeyError whose 3 occurrences pass no test (p = 0.125):
    # a fact, not an alarm, so it gets no "Expected" button.
    report = to_json(_analysis(), CONTEXT)
    alarms = [f for f in report["findings"] if f["severity"] == "high"]
    fact = next(f for f in report["findings"] if f["kind"] == "new_error_type")
    assert fact["severity"] == "info" and [f["kind"] for f in alarms] == ["latency_regression"]
    previous = copy.deepcopy(report["findings"])
    for old in previous:
        if old["kind"] == "latency_regression":
            old["state"] = "suspected"  # watched at the last check, confirmed now
    previous.remove(next(f for f in previous if f["kind"] == "new_error_type"))
    previous.append(finding("latency_regression", "GET /gone"))
    options = ReplyOptions(heading="+1h check", release_id=7, previous=previous, since="+15m check")
    out = check_reply(report, options)
    validate(out.blocks)
    buttoned = [b["text"]["text"] for b in out.blocks if "accessory" in b]
    assert len(buttoned) == len(alarms) == 1
    assert buttoned[0].startswith("⬆ confirmed (was watching): 🔴 *`GET /r1` is 24% slower")
    body = "\n".join(str(b) for b in out.blocks)
    assert "`KeyError` is new in `GET /r2`" in body  # told as what is new, without a button
    assert "*Went away since the +15m check*\\n• `GET /gone` is no longer slower" in body
    assert "since the +15m check: 1 new, 1 confirmed, 1 went away" in out.blocks[0]["text"]["text"]


def test_with_nothing_changed_a_follow_up_is_shorter_and_has_no_expected_button() -> None:
    report = to_json(_analysis(), CONTEXT)
    first = check_reply(report, ReplyOptions(heading="+15m check", release_id=7))
    options = ReplyOptions(
        heading="+1h check", release_id=7, previous=report["findings"], since="+15m check"
    )
    again = check_reply(report, options)
    validate(again.blocks)
    assert not any("accessory" in b for b in again.blocks)
    assert len(again.blocks) < len(first.blocks)
    assert "Still there, as in the +15m check: `GET /r1` is 24% slower" in str(again.blocks)
    assert "since the +15m check: 1 still there" in again.blocks[0]["text"]["text"]


def test_a_gone_finding_a_new_one_about_the_same_code_replaces_is_not_said_twice() -> None:
    before = [{**finding("low_traffic", ""), "span": None, "function": "recount"}]
    now = [{**finding("code_not_reached", ""), "span": None, "function": "recount"}]
    out = delta.compare(before, now)
    assert len(out.gone) == 1 and delta.gone_alone(out) == ()
    assert delta.summary(out) == "1 new"  # the count says what the lines say
