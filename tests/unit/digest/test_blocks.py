"""Block Kit renderings: verdict first, every number with its samples, within Slack's limits."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from feedbot.analysis.report import to_json
from feedbot.digest import blocks, text
from feedbot.digest.blocks import ReplyOptions, check_reply, escape, finding_key, fit, trace_url
from feedbot.store.models import Release
from tests.unit.analysis.test_report import CONTEXT, _analysis

UI = "https://jaeger.acme.example"


def validate(rendered: tuple[dict[str, Any], ...]) -> None:
    """Every block parses and validates with slack_sdk's models, and the message fits."""
    assert 0 < len(rendered) <= 50
    for raw in rendered:
        model = Block.parse(raw)
        assert model is not None, raw
        model.validate_json()
        assert model.to_dict() == raw  # nothing the models do not know about
    json.dumps(rendered)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return to_json(_analysis(), CONTEXT)  # a confirmed regression and a new KeyError


def test_a_regression_reply_leads_with_the_verdict_and_tells_the_change_in_plain_words(
    report: dict[str, Any],
) -> None:
    out = check_reply(
        report, ReplyOptions(heading="+15m check", ui_url=UI, release_id=7, check_id=3)
    )
    validate(out.blocks)
    first = out.blocks[0]["text"]["text"]
    assert first.startswith("*🔴 regressed*") and "+15m check" in first
    story = out.blocks[1]["text"]["text"]
    # What changed for whom, with numbers a person compares; no statistics in the headline.
    assert story == "🔴 *`GET /r1` is 24% slower: 17 → 21 ms at the median.*"
    assert out.blocks[2] == blocks.context("2000 → 2000 requests of `GET /r1` · p95 39 → 48 ms")
    body = "\n".join(json.dumps(b, ensure_ascii=False) for b in out.blocks)
    samples = (
        "baseline 1.4.1: 8000 spans in 4 groups, Nov 24 08:00–12:00 UTC (4.0 h) → "
        "new 1.4.2: 8000 spans in 4 groups, Nov 24 10:00–12:00 UTC (2.0 h)"
    )
    assert blocks.context(samples) in out.blocks  # baseline → new, as every pair of numbers
    assert "Mann-Whitney" not in body and "p=" not in body and "CI" not in body
    assert "`KeyError` is new in `GET /r2`, 3 times: too few to judge yet" in body
    assert "2 other operations unchanged" in body
    assert out.text.startswith("🔴 regressed · +15m check: `GET /r1` is 24% slower")


def test_the_evidence_is_one_click_away_in_the_details(report: dict[str, Any]) -> None:
    out = blocks.details(report, "+15m check of vault-service 1.4.2 → production")
    validate(out.blocks)
    body = "\n".join(b["text"]["text"] for b in out.blocks)
    assert body.startswith("*Details* · +15m check of vault-service 1.4.2 → production")
    assert "Samples and windows: baseline 1.4.1: 8000 spans" in body
    assert "p50 17.2 → 21.3 · p95 39.0 → 47.7 · p99 52.9 → 64.1 ms (n = 2000 → 2000" in body
    assert "95% CI +23% to +31%" in body and "Mann-Whitney" in body  # test, CI, p/q
    assert "GET /r2 raised KeyError 3 times" in body


def test_alarms_get_an_expected_button_and_the_message_details_open_and_mute_buttons(
    report: dict[str, Any],
) -> None:
    # The fixture's KeyError failed its test (3 occurrences, p = 0.125): here it passed.
    passed = [
        dict(f, severity="high") if f["kind"] == "new_error_type" else f for f in report["findings"]
    ]
    out = check_reply(
        dict(report, findings=passed),
        ReplyOptions(heading="h", ui_url=UI, release_id=7, check_id=3),
    )
    accessories = [b["accessory"] for b in out.blocks if "accessory" in b]
    assert [a["value"] for a in accessories] == [
        "7|latency_regression|GET /r1||||",
        "7|new_error_type|GET /r2|||KeyError|",
    ]
    assert len({a["action_id"] for a in accessories}) == 2  # unique within the message
    [buttons] = [b for b in out.blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in buttons["elements"]] == [
        "feedbot_details",
        "feedbot_traces",
        "feedbot_mute",
    ]
    assert buttons["elements"][0]["value"] == "3"
    assert buttons["elements"][1]["url"] == f"{UI}/trace/{'ef' * 16}"
    assert buttons["elements"][2]["value"] == "vault-service|24h"
    body = json.dumps(out.blocks, ensure_ascii=False)
    assert "`GET /r2` raises `KeyError`, new in this version: 3 times in 2000 calls." in body
    assert f"<{UI}/trace/{'ef' * 16}|trace efefefef>" in body  # the example trace beside it


def test_a_new_type_that_failed_its_test_is_listed_not_broadcast(
    report: dict[str, Any],
) -> None:
    (fact,) = [f for f in report["findings"] if f["kind"] == "new_error_type"]
    assert fact["severity"] == "info" and not blocks.is_alarm(fact)
    out = check_reply(report, ReplyOptions(heading="h", ui_url=UI, release_id=7))
    accessories = [b["accessory"]["value"] for b in out.blocks if "accessory" in b]
    assert accessories == ["7|latency_regression|GET /r1||||"]
    rest = [b for b in out.blocks if b["type"] == "context" and "KeyError" in str(b)]
    assert len(rest) == 1  # one line with the rest, not a chapter of its own


def test_acknowledged_findings_are_not_raised_again(report: dict[str, Any]) -> None:
    keys = {finding_key(f) for f in report["findings"] if f["kind"] == "new_error_type"}
    out = check_reply(report, ReplyOptions(heading="h", release_id=7, acknowledged=keys))
    body = json.dumps(out.blocks, ensure_ascii=False)
    assert "KeyError" not in body and "1 marked expected: not shown" in body
    validate(out.blocks)


def test_user_text_is_escaped_and_cannot_mention_or_link() -> None:
    doc = {
        "service": "svc<@U1>",
        "version": "1&2",
        "baseline_version": None,
        "verdict": "insufficient_data",
        "window": {"candidate": None, "baseline": None},
        "groups": [
            {
                "span": "GET /<script>",
                "kind": "SERVER",
                "baseline": None,
                "candidate": {"count": 3, "errors": 0},
            }
        ],
        "findings": [
            {
                "kind": "new_operation",
                "severity": "info",
                "state": "confirmed",
                "message": "GET /<!channel> is new",
                "span": "x",
            }
        ],
    }
    out = check_reply(doc, ReplyOptions(heading="<!here> & co"))
    body = json.dumps(out.blocks, ensure_ascii=False)
    assert "<!" not in body and "<@" not in body and "<script" not in body
    assert "&lt;!here&gt; &amp; co" in body and "new 1&amp;2: 3 spans in 1 group, no window" in body
    assert "no baseline version" in body
    validate(out.blocks)


def test_many_findings_stay_within_50_blocks_and_3000_characters() -> None:
    findings = [
        {
            "kind": "new_error_type",
            "severity": "high",
            "state": "confirmed",
            "span": f"GET /r{i}" + "x" * 3000,
            "exception_type": f"E{i}",
            "message": "x" * 2500,
            "example_trace_ids": ["ab" * 16],
        }
        for i in range(80)
    ] + [
        {
            "kind": "n_plus_one",
            "severity": "medium",
            "state": "confirmed",
            "span": f"n{i}",
            "message": "y" * 400,
        }
        for i in range(40)
    ]
    doc = {
        "service": "s",
        "version": "2",
        "baseline_version": "1",
        "verdict": "regressed",
        "window": {},
        "groups": [],
        "findings": findings,
    }
    out = check_reply(doc, ReplyOptions(heading="h", ui_url=UI, release_id=1))
    validate(out.blocks)
    assert len(out.blocks) <= 50  # three chapters, then one line for the rest
    assert "117 more changes in the details" in json.dumps(out.blocks)
    assert any("cut to fit Slack" in b.get("text", {}).get("text", "") for b in out.blocks)
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in out.blocks)
    assert len(out.text) <= 3000
    many = blocks.details(doc, "h")  # the details: every finding, cut to one message
    validate(many.blocks)
    assert len(many.blocks) == 50
    assert "more parts did not fit" in many.blocks[-1]["elements"][0]["text"]


def test_fit_keeps_short_messages_and_trace_urls_take_a_template() -> None:
    assert fit([blocks.context("a")]) == (blocks.context("a"),)
    assert trace_url("https://g.example/explore?t={trace_id}", "abc") == (
        "https://g.example/explore?t=abc"
    )
    assert trace_url(None, "abc") is None
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


OFFSETS = [timedelta(minutes=15), timedelta(hours=1)]


def shipped(**over: Any) -> Release:
    values: dict[str, Any] = {
        "service": "vault-service",
        "version": "1.4.2",
        "environment": "production",
        "commit": "c0ffee1234567890",
        "repository": "acme/vault",
        "title": "Cache <vault> appraisals",
        "url": "https://ci.acme.example/runs/7?x=1&y=2",
        "author_name": "Bill",
        "source": "generic",
        "is_rollback": False,
    }
    return Release(**{**values, **over})


def test_first_parent_says_what_shipped_with_links_and_when_feedbot_checks_in() -> None:
    release = shipped()
    out = blocks.release_announcement(release, OFFSETS)
    validate(out.blocks)
    head = out.blocks[0]["text"]["text"]
    assert head.startswith("*🚀 vault-service 1.4.2 → production, shipped by Bill*\n")
    assert "“Cache &lt;vault&gt; appraisals”" in head
    assert "commit <https://github.com/acme/vault/commit/c0ffee1234567890|c0ffee123456>" in head
    assert "<https://ci.acme.example/runs/7?x=1&amp;y=2|https://ci.acme.example/runs/7" in head
    assert head.endswith("I'll look at its traces at +15m, +1h and reply in this thread.")
    # The status updates that replace it keep the head and change the last block only.
    assert out.blocks[1] == blocks.context("Status: 👀 watching (0 of 2 checks done)")
    assert out.text == text.release_parent(release, OFFSETS)  # the plain fallback
    later = blocks.release_announcement(release, OFFSETS, status="Status: ✅ looks fine")
    assert later.blocks[0] == out.blocks[0] and later.blocks[1] == blocks.context(
        "Status: ✅ looks fine"
    )


@pytest.mark.parametrize(
    ("over", "commit", "absent"),
    [
        ({"source": "gitlab", "repository": "group/vault"}, "commit `c0ffee123456`", "github"),
        ({"repository": "group/sub/vault"}, "commit `c0ffee123456`", "github"),
        ({"repository": None}, "commit `c0ffee123456`", "github"),
        ({"commit": "", "url": None}, "", "commit"),
        ({"url": "javascript:alert(1)|x>"}, "javascript:alert(1)|x&gt;", "<javascript"),
    ],
)
def test_commit_links_only_to_github_repositories_and_urls_only_when_safe(
    over: dict[str, Any], commit: str, absent: str
) -> None:
    out = blocks.release_announcement(shipped(**over), OFFSETS)
    validate(out.blocks)
    head = out.blocks[0]["text"]["text"]
    assert commit in head and absent not in head


def test_a_rollback_by_an_unnamed_author_says_so() -> None:
    release = shipped(is_rollback=True, author_name=None, author_github="bill-gh", title=None)
    out = blocks.release_announcement(release, OFFSETS[:1])
    validate(out.blocks)
    head = out.blocks[0]["text"]["text"]
    assert head.startswith("*🚀 vault-service 1.4.2 → production, shipped by bill-gh (rollback)*")
    assert "“" not in head and "at +15m and reply" in head


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [
        ("2026-12-06T00:58:00+00:00", "2026-12-07T00:58:00+00:00",
         "Dec 06 00:58 – Dec 07 00:58 UTC (24.0 h)"),
        ("2026-12-06T23:30:00+00:00", "2026-12-07T00:30:00+00:00",
         "Dec 06 23:30 – Dec 07 00:30 UTC (1.0 h)"),
        ("2026-12-07T02:37:10+00:00", "2026-12-07T02:38:05+00:00",
         "Dec 07 02:37:10–02:38:05 UTC (55 s)"),
        ("2026-12-07T10:00:00+00:00", "2026-12-07T10:20:00+00:00",
         "Dec 07 10:00–10:20 UTC (20 min)"),
    ],
)  # fmt: skip
def test_a_window_shows_both_dates_when_it_crosses_a_day_and_seconds_when_short(
    start: str, end: str, shown: str
) -> None:
    assert blocks.window_text({"start": start, "end": end}) == shown


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ((None, 0, 2), "Status: 👀 watching (0 of 2 checks done)"),
        (("regressed", 1, 2), "Status: 🔴 regressed (watching: 1 of 2 checks done)"),
        (("neutral", 2, 2), "Status: ✅ looks fine (all 2 checks ran)"),
        (("not_running", 4, 4), "Status: 💤 no traffic on it in the last check (all 4 checks ran)"),
        (("insufficient_data", 2, 2), "Status: ⏳ too little traffic to tell (all 2 checks ran)"),
        (("neutral", 1, 2, 1), "Status: ✅ looks fine (1 of 2 checks ran, 1 failed)"),
        ((None, 0, 2, 2), "Status: ⚠️ no check succeeded (2 checks failed)"),
    ],
)
def test_the_status_line_ends_in_words_that_match_what_happened(
    args: tuple[Any, ...], line: str
) -> None:
    assert text.status_line(*args) == line


def test_a_superseded_release_says_so_in_its_final_status() -> None:
    assert text.superseded_status("2.0.0", None, 0, 2) == (
        "Status: ⏭ superseded by 2.0.0 before its checks ran"
    )
    assert text.superseded_status("2.0.0", "regressed", 1, 3) == (
        "Status: ⏭ superseded by 2.0.0 after 1 of 3 checks: 🔴 regressed"
    )


def test_control_characters_are_shown_not_sent_raw() -> None:
    assert escape("GET /x\x1b[2J\x07<a>") == "GET /x\\x1b[2J\\x07&lt;a&gt;"
    assert escape("two\nlines\ttab") == "two\nlines\ttab"  # layout characters stay


def test_the_untouched_routes_shift_is_in_the_message_only_when_it_moved_beyond_noise(
    report: dict[str, Any],
) -> None:
    reason = "Compared before and after the deploy."
    noise = (
        "Routes this release did not touch were 18% slower after the deploy at their median: "
        "within noise (t test across 4 groups p = 0.14 > 0.05), so the routes are compared as "
        "measured."
    )
    every = "Every route was 30% slower after the deploy, but the load did not change."
    rates = {"baseline": 300.0, "candidate": 296.0}
    for sentence, beyond, applied, in_message in (
        (noise, False, False, False),
        (every, True, False, True),
        (every, True, True, True),
        (noise, None, False, True),  # stored before beyond_noise: said as it was
    ):
        shift = {"sentence": sentence, "ratio": 1.2, "requests_per_minute": rates}
        shift |= (
            {"applied": applied} if beyond is None else {"beyond_noise": beyond, "applied": applied}
        )
        doc = {**report, "comparison": {"reason": reason, "requests_per_minute": rates}}
        doc["global_shift"] = shift
        line = blocks.samples_line(doc)
        assert line.startswith(reason)
        assert (escape(sentence) in line) is in_message, line
        # The shift's sentence says the load; without it the line says it on its own.
        assert ("Load while each version served: 300 → 296" in line) is not in_message, line
        details = "\n".join(b["text"]["text"] for b in blocks.details(doc, "h").blocks)
        assert escape(sentence) in details  # the test and its p: one click away
