"""Near-valid ``pull_request`` bodies: a preview event, None, or a 4xx naming the field."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from feedbot.errors import WebhookRejected
from feedbot.releases.sources.github import PullRequestEvent, parse_pull_request
from tests.unit.test_parsers_fuzz import FUZZ, JSON_LEAVES, NAME, URL, mutated, obj

HEADERS = {"x-github-delivery": "g-1", "x-github-event": "pull_request"}
SHA = st.sampled_from(["f95f852bd8fca8fcc58a9a2d6c842781e32a215e", "f95f852", "", "G" * 40])
USER = obj({"login": NAME | st.just("dependabot[bot]"), "type": st.sampled_from(["User", "Bot"])})
REF = obj({"sha": SHA, "ref": NAME}, "sha")
PULL = obj(
    {
        "action": st.sampled_from(["opened", "synchronize", "reopened", "closed", "labeled"]),
        "number": st.integers(-3, 2**40) | st.just(True),
        "pull_request": obj(
            {"number": st.integers(1, 99), "html_url": URL, "head": REF, "base": REF, "user": USER},
            "head",
            "base",
        ),
        "repository": obj({"full_name": NAME}, "full_name"),
    },
    "action",
    "number",
    "pull_request",
    "repository",
)


@FUZZ
@given(data=st.data())
def test_pull_request_bodies_parse_or_are_rejected_naming_a_field(data: st.DataObject) -> None:
    document: Any = data.draw(mutated(PULL, JSON_LEAVES))
    try:
        event = parse_pull_request(HEADERS, json.dumps(document).encode())
    except WebhookRejected as exc:
        assert 400 <= exc.status < 500 and ": " in exc.message, exc.message
        return
    if event is not None:
        assert isinstance(event, PullRequestEvent)
        assert len(event.head) == 40 and len(event.base) == 40 and event.number > 0
        assert event.repository.count("/") == 1 and event.action in (
            "opened",
            "synchronize",
            "reopened",
        )
