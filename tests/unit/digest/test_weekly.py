"""The weekly digest's content and its split into messages that Slack accepts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from slack_sdk.models.blocks import Block

from feedbot.analysis.report import to_json
from feedbot.digest.plain import blocks_text
from feedbot.digest.weekly import WeekRelease, render
from tests.factories import DEPLOYED
from tests.unit.analysis.test_report import CONTEXT, _analysis


def valid(blocks: tuple[dict[str, Any], ...]) -> str:
    assert 0 < len(blocks) <= 50
    for raw in blocks:
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
    return blocks_text(blocks)


def finding(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "severity": "medium", "state": "confirmed", "message": kind, **extra}


def test_a_week_of_releases_becomes_an_agenda() -> None:
    regressed = to_json(_analysis(), CONTEXT)
    other = {
        "verdict": "neutral",
        "findings": [
            finding("code_not_reached", function="ledger.post", message="ledger.post never ran"),
            finding("n_plus_one", span="GET /ledger", message="GET /ledger runs SELECT 12 times"),
            finding(
                "new_error_type",
                span="POST /post",
                message="POST /post raised LedgerLocked",
                severity="high",
                exception_type="LedgerLocked",
            ),
            finding("latency_regression", span="GET /slow", state="suspected", message="slower?"),
        ],
    }
    week = [
        WeekRelease("vault-service", "1.4.2", DEPLOYED, regressed),
        WeekRelease("vault-service", "1.4.1", DEPLOYED - timedelta(days=2), None, rollback=True),
        WeekRelease("ledger", "7", DEPLOYED, other),
    ]
    [message] = render("#vault", "week to Mon Nov 30", week)
    body = valid(message.blocks)
    assert message.text == "📋 Weekly feedback for #vault, week to Mon Nov 30"
    assert "3 releases of 2 services" in body
    assert "vault-service: 1.4.1 (rollback) ⏳ not checked yet · 1.4.2 🔴 regressed" in body
    # In the words of each release's story: what changed where, with numbers a person compares.
    assert (
        "Top regressions\n• vault-service 1.4.2: `GET /r1` is 24% slower: 17 → 21 ms at the median."
    ) in body
    # 1.4.2's KeyError passed no test (3 occurrences, p = 0.125): a fact in its thread, no agenda.
    assert "New error types\n• ledger 7: `POST /post` raises `LedgerLocked`, new in" in body
    assert "KeyError" not in body
    assert "Who handles LedgerLocked in POST /post (ledger 7)?" in body
    assert "Changed code never reached\n• ledger 7: `ledger.post` never ran" in body
    assert "N+1 queries" in body and "worth a closer look" in body
    assert "`GET /slow` is slower (not confirmed yet)." in body
    assert "Was the slowdown of GET /r1 in vault-service 1.4.2 expected?" in body
    assert "Is ledger.post of ledger 7 behind a flag, or unused?" in body


def test_a_quiet_week_says_so() -> None:
    [message] = render("#vault", "w", [])
    assert "No releases this week." in valid(message.blocks)
    neutral = WeekRelease("a", "1", DEPLOYED, {"verdict": "neutral", "findings": []})
    [message] = render("#vault", "w", [neutral])
    assert "All good: no slowdown" in valid(message.blocks)


def test_a_huge_week_is_split_then_cut_with_a_pointer() -> None:
    week = [
        WeekRelease(f"svc-{i:03}", "1", DEPLOYED, {"verdict": "neutral", "findings": []})
        for i in range(400)
    ]
    messages = render("#all", "w", week)
    assert all(valid(m.blocks) for m in messages)
    assert 1 <= len(messages) <= 3
    bodies = [b for m in messages for b in m.blocks]
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in bodies)
    assert "cut to fit Slack" in json.dumps(bodies)  # the per-service list was too long
