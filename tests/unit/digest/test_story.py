"""The story: told once at the route, the cause below it named, the rest in one line."""

from __future__ import annotations

from typing import Any

from feedbot.digest import story
from feedbot.digest.text import story_text


def group(span: str, kind: str, caller: str, base: tuple[int, float], new: tuple[int, float]):
    def side(count: int, p50: float) -> dict[str, Any]:
        return {
            "count": count,
            "errors": 0,
            "p50_ms": p50,
            "p95_ms": p50 * 2,
            "p99_ms": p50 * 3,
            "callers": [{"span": caller, "count": count}],
        }

    return {"span": span, "kind": kind, "baseline": side(*base), "candidate": side(*new)}


def slower(span: str, base: float, new: float, state: str = "confirmed") -> dict[str, Any]:
    return {
        "kind": "latency_regression",
        "severity": "high",
        "state": state,
        "span": span,
        "message": f"{span} got slower; one-sided Mann-Whitney, p=1e-9, q=1e-8",
        "baseline": {"n": 400, "value": base, "unit": "p50_ms"},
        "candidate": {"n": 380, "value": new, "unit": "p50_ms"},
        "change": {"ratio": new / base, "ci_low": 2.5, "ci_high": 3.1},
        "p_value": 1e-9,
        "q_value": 1e-8,
    }


ROUTE, HANDLER, SEAL = "POST /vaults/{id}/items", "vault.deposits.deposit", "vault.goblin_seal"


def deploy(**over: Any) -> dict[str, Any]:
    """A deposit route whose handler's new child made it slower, told three times over."""
    doc = {
        "service": "vault-service",
        "version": "2.0.0",
        "baseline_version": "1.0.0",
        "environment": "production",
        "verdict": "regressed",
        "window": {"candidate": None, "baseline": None},
        "groups": [
            group(ROUTE, "SERVER", "(root)", (400, 20.0), (380, 56.0)),
            group(HANDLER, "INTERNAL", ROUTE, (400, 12.0), (380, 48.0)),
            {**group(SEAL, "INTERNAL", HANDLER, (1, 1.0), (380, 21.0)), "baseline": None},
            *(group(f"GET /r{i}", "SERVER", "(root)", (300, 5.0), (300, 5.0)) for i in range(11)),
        ],
        "findings": [
            slower(ROUTE, 20.0, 56.0),
            slower(HANDLER, 12.0, 48.0),
            {
                "kind": "new_operation",
                "severity": "info",
                "state": "confirmed",
                "span": SEAL,
                "message": f"{SEAL} (INTERNAL) is new: 380 spans",
            },
            *(
                {
                    "kind": "low_traffic",
                    "severity": "info",
                    "state": "confirmed",
                    "span": f"GET /q{i}",
                    "message": "n = 3 → 2 spans, below the 30 a latency verdict needs",
                }
                for i in range(6)
            ),
        ],
        "causes": [
            cause(ROUTE, "child", HANDLER, 0.97, 12.0, 48.0),
            cause(HANDLER, "new_child", SEAL, 0.6, None, 21.0),
        ],
    }
    return {**doc, **over}


def cause(
    span: str, kind: str, name: str, share: float, base: float | None, new: float | None
) -> dict[str, Any]:
    return {
        "span": span,
        "kind": kind,
        "name": name,
        "explains": "latency",
        "share": share,
        "baseline": base,
        "candidate": new,
        "n_baseline": 400,
        "n_candidate": 380,
        "detail": "critical path per trace, median over traces",
    }


def test_a_slowdown_up_the_call_chain_is_one_story_at_the_route_naming_the_cause() -> None:
    told = story.tell(deploy())
    [chapter] = told.chapters
    assert (
        told.headline
        == chapter.headline
        == ("`POST /vaults/{id}/items` is 2.8× slower: 20 → 56 ms at the median.")
    )
    # The deepest cause along the critical path, with the share of the route's slowdown.
    assert chapter.because == (
        "The new `vault.goblin_seal` adds 21 ms to every `vault.deposits.deposit` call "
        "(58% of the slowdown).",
    )
    assert chapter.alarm and not chapter.watching
    # The handler's finding is folded in: its "Expected" press acknowledges both.
    assert chapter.alarms == (
        "latency_regression|POST /vaults/{id}/items||||",
        "latency_regression|vault.deposits.deposit||||",
    )
    assert told.rest == "11 other operations unchanged · 6 too quiet to judge yet"
    assert "Mann-Whitney" not in chapter.text and "p=" not in chapter.text
    assert any("Mann-Whitney" in line for line in told.evidence)  # one click away
    assert any("why POST /vaults/{id}/items: child" in line for line in told.evidence)


def test_without_causes_the_bottleneck_findings_name_the_new_child() -> None:
    bottleneck = {
        "kind": "bottleneck",
        "severity": "medium",
        "state": "confirmed",
        "span": HANDLER,
        "message": f"In {HANDLER}, {SEAL} owns +21.0 ms of the +36.0 ms mean increase (58%)",
        "baseline": {"n": 400, "value": 0.0, "unit": "ms_per_request"},
        "candidate": {"n": 380, "value": 21.0, "unit": "ms_per_request"},
    }
    doc = deploy(causes=[])
    doc["findings"].append(bottleneck)
    [chapter] = story.tell(doc).chapters
    assert chapter.because == ("The new `vault.goblin_seal` adds 21 ms to every "
                               "`vault.deposits.deposit` call.",)  # fmt: skip
    assert "owns" not in story_text(story.tell(doc), "h", evidence=False)  # no 405% shares


def test_errors_below_the_route_are_told_in_its_story_with_the_new_exception() -> None:
    doc = deploy()
    doc["findings"] += [
        {
            "kind": "error_rate_increase",
            "severity": "high",
            "state": "confirmed",
            "span": HANDLER,
            "message": "error rate rose; one-sided Fisher exact test, p=0.0004",
            "baseline": {"n": 400, "value": 0.0, "unit": "error_rate"},
            "candidate": {"n": 380, "value": 0.05, "unit": "error_rate"},
        },
        {
            "kind": "new_error_type",
            "severity": "high",
            "state": "confirmed",
            "span": HANDLER,
            "exception_type": "vault.GoblinRateLimitError",
            "message": "raised GoblinRateLimitError 19 times",
            "baseline": {"n": 400, "value": 0, "unit": "count"},
            "candidate": {"n": 380, "value": 19, "unit": "count"},
        },
    ]
    [chapter] = story.tell(doc).chapters
    assert chapter.because[-1] == (
        "`vault.deposits.deposit` now fails 5.0% of the time (was 0%): "
        "`GoblinRateLimitError`, new in this version."
    )  # said once, not again as its own "new exception" sentence
    assert len(chapter.alarms) == 4


def test_an_error_story_alone_says_who_fails_how_often() -> None:
    doc = deploy(causes=[], verdict="regressed")
    doc["findings"] = [
        {
            "kind": "error_rate_increase",
            "severity": "high",
            "state": "confirmed",
            "span": ROUTE,
            "message": "error rate rose",
            "baseline": {"n": 400, "value": 0.0, "unit": "error_rate"},
            "candidate": {"n": 380, "value": 0.05, "unit": "error_rate"},
        },
        {
            "kind": "new_error_type",
            "severity": "high",
            "state": "confirmed",
            "span": ROUTE,
            "exception_type": "GoblinRateLimitError",
            "message": "new",
        },
    ]
    doc["causes"] = [
        {**cause(ROUTE, "attribute", "item.kind=dragon", 0.9, 0.0, 0.05), "explains": "errors"}
    ]
    told = story.tell(doc)
    assert told.headline == (
        "`POST /vaults/{id}/items` now fails 5.0% of the time (was 0%): "
        "`GoblinRateLimitError`, new in this version."
    )
    assert told.chapters[0].because == (
        "It is concentrated where `item.kind=dragon`: 90% of the failures.",
    )


def test_a_watching_change_says_so_and_a_quiet_deploy_is_one_sentence() -> None:
    doc = deploy(causes=[])
    doc["findings"] = [slower(ROUTE, 20.0, 26.0, state="suspected")]
    [chapter] = story.tell(doc).chapters
    assert chapter.headline == (
        "Watching: `POST /vaults/{id}/items` is 30% slower: 20 → 26 ms at the median "
        "(not confirmed yet)."
    )
    assert chapter.watching and not chapter.alarm and not chapter.alarms
    quiet = story.tell(deploy(findings=[], causes=[], verdict="neutral"))
    assert quiet.headline == (
        "No change worth your attention: 12 routes as fast and as reliable as 1.0.0."
    )
    assert quiet.chapters == ()


def test_at_most_three_stories_then_one_line() -> None:
    doc = deploy(causes=[])
    doc["findings"] = [slower(f"GET /r{i}", 5.0, 5.0 * (2 + i)) for i in range(5)]
    told = story.tell(doc)
    assert len(told.chapters) == 3
    assert told.rest.startswith("2 more changes in the details · ")


def test_a_later_check_tells_what_changed_since_in_the_story_words() -> None:
    first = deploy()
    watched = [dict(f, state="suspected") if f["span"] == ROUTE else f for f in first["findings"]]
    gone = slower("GET /old", 5.0, 9.0)
    told = story.tell(first, previous=[*watched, gone], since="+15m check")
    assert told.since is not None
    assert told.since.summary == "1 confirmed, 1 went away"
    assert told.since.went_away == ("`GET /old` is no longer slower",)
    [chapter] = told.chapters
    assert chapter.mark == "confirmed"
    again = story.tell(first, previous=first["findings"], since="+1h check")
    assert again.chapters == () and again.since is not None
    assert again.since.still == "`POST /vaults/{id}/items` is 2.8× slower"
    text = story_text(again, "h")
    assert "still there, as in the +1h check: `POST /vaults/{id}/items` is 2.8× slower" in text


def test_chapters_still_there_are_listed_by_their_headline_up_to_the_numbers() -> None:
    def head(headline: str) -> str:
        return story._still(story.Chapter(where="GET /x", headline=headline))

    assert head("`GET /x` is 2.8× slower: 10 → 28 ms at the median.") == "`GET /x` is 2.8× slower"
    # A span with ": " in its name is not cut there.
    assert (
        head("`vault.db: SELECT … FROM items` is 40% slower: 1.0 → 1.4 ms at the median.")
        == "`vault.db: SELECT … FROM items` is 40% slower"
    )
    # Mid-sentence in the list: "…; in `POST /a`, `work` is 43% slower".
    assert (
        head("In `POST /a`, `work` is 43% slower: 38 → 54 ms at the median.")
        == "in `POST /a`, `work` is 43% slower"
    )
    assert (
        head("Watching: `GET /x` is 20% slower: 10 → 12 ms at the median (not confirmed yet).")
        == "`GET /x` is 20% slower (watching)"
    )
    assert head("`deposit` raises `KeyError`, new in this version.") == (
        "`deposit` raises `KeyError`, new in this version"
    )
