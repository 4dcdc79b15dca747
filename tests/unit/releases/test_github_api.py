"""The GitHub REST client against the loopback fake: one comment kept current, rate limits."""

from __future__ import annotations

import pytest

from feedbot.config import github_token_problem as token_problem
from feedbot.errors import GitHubError
from feedbot.releases.github_api import GitHubClient
from tests.fakes.github_api import FakeGitHub

TOKEN = "ghp_" + "a1B2" * 9
REPO = "acme/vault"
MARKER = "<!-- feedbot-preview -->"


def client(gh: FakeGitHub, **kw: object) -> tuple[GitHubClient, list[float]]:
    slept: list[float] = []
    kw.setdefault("now", lambda: 1_000.0)
    return GitHubClient(TOKEN, base_url=gh.base_url, sleep=slept.append, **kw), slept  # type: ignore[arg-type]


def test_one_comment_is_created_then_edited_in_place() -> None:
    with FakeGitHub(TOKEN) as gh:
        gh.add_comment(REPO, 17, "LGTM")
        api, _ = client(gh)
        first = api.upsert_comment(REPO, 17, f"{MARKER}\nfirst", MARKER)
        again = api.upsert_comment(REPO, 17, f"{MARKER}\nfirst", MARKER)
        second = api.upsert_comment(REPO, 17, f"{MARKER}\nsecond", MARKER)
        bodies = [c["body"] for c in gh.comments(REPO, 17)]
        methods = [(r.method, r.path) for r in gh.requests]
    assert (first.action, again.action, second.action) == ("created", "unchanged", "updated")
    assert first.id == second.id
    assert bodies == ["LGTM", f"{MARKER}\nsecond"]
    assert ("PATCH", f"/repos/{REPO}/issues/comments/{first.id}") in methods
    assert methods.count(("POST", f"/repos/{REPO}/issues/17/comments")) == 1


def test_the_marker_is_found_past_the_first_page() -> None:
    with FakeGitHub(TOKEN) as gh:
        for n in range(130):
            gh.add_comment(REPO, 3, f"comment {n}")
        gh.add_comment(REPO, 3, f"{MARKER}\nold")
        api, _ = client(gh)
        result = api.upsert_comment(REPO, 3, f"{MARKER}\nnew", MARKER)
        pages = [r.query.get("page") for r in gh.requests if r.method == "GET"]
    assert result.action == "updated"
    assert pages == [None, ["2"]]


def test_a_secondary_limit_waits_retry_after_then_succeeds() -> None:
    with FakeGitHub(TOKEN) as gh:
        gh.secondary_limit_next(status=429, retry_after=7)
        gh.secondary_limit_next(status=403, retry_after=3)
        api, slept = client(gh)
        result = api.upsert_comment(REPO, 1, f"{MARKER}\nx", MARKER)
    assert result.action == "created"
    assert slept == [7.0, 3.0]


def test_an_exhausted_primary_limit_waits_for_the_reset_before_the_next_call() -> None:
    with FakeGitHub(TOKEN, limit=1, reset=1_030) as gh:
        slept: list[float] = []

        def sleep(seconds: float) -> None:  # time passes: GitHub's window resets
            slept.append(seconds)
            gh.reset_window()

        api = GitHubClient(TOKEN, base_url=gh.base_url, sleep=sleep, now=lambda: 1_000.0)
        result = api.upsert_comment(REPO, 1, f"{MARKER}\nx", MARKER)
        refused = [r for r in gh.requests if r.method == "POST"]
    # The listing spent the last call (remaining: 0): the POST waited for the reset, once,
    # and was not refused first.
    assert result.action == "created" and slept == [30.0] and len(refused) == 1


def test_a_refused_call_waits_until_the_reset_then_gives_up_saying_when() -> None:
    with FakeGitHub(TOKEN, limit=0, reset=1_020) as gh:
        api, slept = client(gh)
        with pytest.raises(GitHubError, match="rate-limited") as caught:
            api.pull_diff(REPO, 1)
        calls = len(gh.requests)
    assert slept == [20.0, 20.0] and calls == 3 and caught.value.retry_after == 20.0


def test_a_reset_beyond_max_wait_is_reported_not_slept() -> None:
    with FakeGitHub(TOKEN, limit=0, reset=1_000 + 3600) as gh:
        api, slept = client(gh, max_wait=60.0)
        with pytest.raises(GitHubError) as caught:
            api.upsert_comment(REPO, 1, f"{MARKER}\nx", MARKER)
    assert slept == [] and caught.value.retry_after == pytest.approx(3600)


def test_unauthenticated_and_missing_files() -> None:
    with FakeGitHub(TOKEN) as gh:
        gh.add_file(REPO, "abc", "src/a.py", b"def f():\n    pass\n")
        api, _ = client(gh)
        assert api.file_at(REPO, "src/a.py", "abc") == b"def f():\n    pass\n"
        assert api.file_at(REPO, "src/b.py", "abc") is None
        wrong = GitHubClient("ghp_" + "z" * 36, base_url=gh.base_url)
        with pytest.raises(GitHubError, match="401"):
            wrong.pull_diff(REPO, 1)


def test_token_shapes() -> None:
    assert token_problem(TOKEN) is None
    assert token_problem("github_pat_" + "A_b1" * 20) is None
    assert token_problem("f" * 40) is None
    assert token_problem("my token") is not None
    assert token_problem("ghp_short") is not None
