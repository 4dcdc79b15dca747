"""A deploy's time: parsed without crashing at the calendar's edges, and plausible to check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedbot.releases.event import DEPLOY_MAX_AGE, DEPLOY_SKEW, deploy_time_problem
from feedbot.releases.sources._common import parse_rfc3339
from feedbot.releases.sources.gitlab import parse_gitlab_time

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-23:59"],
)
def test_times_past_the_calendar_in_utc_are_no_time_not_a_crash(text: str) -> None:
    assert parse_rfc3339(text) is None


@pytest.mark.parametrize("text", ["9999-12-31 23:59:59 -0500", "0001-01-01 00:00:00 +0100"])
def test_gitlab_times_past_the_calendar_are_no_time(text: str) -> None:
    assert parse_gitlab_time(text) is None


def test_the_calendar_edge_itself_still_parses() -> None:
    assert parse_rfc3339("9999-12-31T23:59:59Z") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("deployed_at", "problem"),
    [
        (None, None),
        (NOW, None),
        (NOW + DEPLOY_SKEW, None),
        (NOW - DEPLOY_MAX_AGE, None),
        (NOW + DEPLOY_SKEW + timedelta(seconds=1), "is in the future"),
        (datetime(2100, 1, 1, tzinfo=UTC), "is in the future"),
        (NOW - DEPLOY_MAX_AGE - timedelta(seconds=1), "more than 7 days ago"),
        (datetime(1970, 1, 1, tzinfo=UTC), "more than 7 days ago"),
    ],
)
def test_a_deploy_time_is_checked_against_the_clock(
    deployed_at: datetime | None, problem: str | None
) -> None:
    found = deploy_time_problem(deployed_at, NOW)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith("deployed_at: ") and problem in found


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_past_the_calendar_is_refused_as_such(text: str) -> None:
    from feedbot.errors import WebhookRejected
    from feedbot.releases.sources.generic import parse_document

    body = {"service": "shop", "version": "1.0", "deployed_at": text}
    with pytest.raises(WebhookRejected) as refused:
        parse_document(body)
    assert refused.value.status == 422
    assert f"deployed_at: {text} is past the calendar's edge in UTC" in str(refused.value)


def test_a_malformed_time_is_still_called_malformed() -> None:
    from feedbot.releases.sources._common import past_the_calendar

    assert not past_the_calendar("2026-13-45T00:00:00Z")
    assert not past_the_calendar("yesterday")
    assert past_the_calendar("9999-12-31T23:59:59-01:00")
