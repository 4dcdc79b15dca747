"""The slice of GitHub's REST API the pull-request preview uses, with its rate limits honoured.

- the pull request's diff: ``GET /repos/{o}/{r}/pulls/{n}`` with ``Accept:
  application/vnd.github.diff``, where it starts (``GET /repos/{o}/{r}/compare/{base}...{head}``,
  the merge base), and a file at a commit: ``GET /repos/{o}/{r}/contents/{path}`` with
  ``Accept: application/vnd.github.raw+json``;
- one comment kept current: ``GET /repos/{o}/{r}/issues/{n}/comments`` (following the ``Link``
  header's ``next``) to find the comment holding a marker, then ``PATCH
  /repos/{o}/{r}/issues/comments/{id}``, or ``POST /repos/{o}/{r}/issues/{n}/comments`` when
  there is none.

Rate limits, as GitHub documents them: a 403 or 429 with ``retry-after`` waits that many seconds;
one with ``x-ratelimit-remaining: 0`` waits until ``x-ratelimit-reset`` (epoch seconds); any other
403/429 that says "rate limit" waits a minute. A success whose ``x-ratelimit-remaining`` is 0 makes
the next request wait for the reset instead of spending a refused call. A wait longer than
``max_wait`` is not slept: :class:`~feedbot.errors.GitHubError` carries it as ``retry_after``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from feedbot import __version__
from feedbot.config import GITHUB_API_URL as API_URL
from feedbot.errors import GitHubError

API_VERSION = "2022-11-28"
REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_NEXT = re.compile(r"<([^>]+)>\s*;\s*rel=\"next\"")
_TRIES = 3
_SECONDARY_WAIT = 60.0


@dataclass(frozen=True)
class Comment:
    """The pull-request comment feedbot keeps current, after an upsert."""

    id: int
    url: str | None
    action: str  # created | updated | unchanged


class GitHubClient:
    """A small synchronous GitHub REST client.

    Args:
        token: the token to authenticate with (``Authorization: Bearer``).
        base_url: the API root (``https://api.github.com``, or GitHub Enterprise's ``/api/v3``).
        http: the httpx client to use; one is built when None.
        sleep: how to wait (tests pass a recorder).
        now: the wall clock in epoch seconds, to read ``x-ratelimit-reset`` against.
        max_wait: the longest rate-limit wait slept through; longer ones raise.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = API_URL,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        max_wait: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._http = http or httpx.Client(timeout=timeout)
        self._headers = {
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": f"feedbot/{__version__}",
        }
        self._sleep, self._now, self._max_wait = sleep, now, max_wait
        self._blocked_until = 0.0

    def close(self) -> None:
        self._http.close()

    # --- reading the pull request -----------------------------------------------------------

    def pull_diff(self, repository: str, number: int) -> bytes:
        """The pull request's diff, as ``git diff`` prints it (with context lines)."""
        path = f"/repos/{repository}/pulls/{number}"
        response = self._request("GET", path, accept="application/vnd.github.diff")
        self._raise_for(response, "GET", path)
        return response.content

    def merge_base(self, repository: str, base: str, head: str) -> str | None:
        """Where ``head`` forked from ``base`` (``GET /repos/{o}/{r}/compare/{base}...{head}``'s
        ``merge_base_commit``): the commit a pull request's diff starts from. None when GitHub
        cannot compare them."""
        path = f"/repos/{repository}/compare/{base}...{head}"
        response = self._request("GET", path, params={"per_page": 1})
        if response.status_code == 404:
            return None
        self._raise_for(response, "GET", path)
        found = (response.json().get("merge_base_commit") or {}).get("sha")
        return found if isinstance(found, str) and found else None

    def file_at(self, repository: str, path: str, ref: str) -> bytes | None:
        """A file's bytes at ``ref``; None when it does not exist there."""
        url = f"/repos/{repository}/contents/{quote(path)}"
        response = self._request(
            "GET", url, accept="application/vnd.github.raw+json", params={"ref": ref}
        )
        if response.status_code == 404:
            return None
        self._raise_for(response, "GET", url)
        return response.content

    # --- the one comment --------------------------------------------------------------------

    def upsert_comment(self, repository: str, number: int, body: str, marker: str) -> Comment:
        """Make the pull request's comment holding ``marker`` read ``body``; create it if absent.

        Args:
            repository: ``owner/name``.
            number: the pull request's number.
            body: the comment's Markdown; it must contain ``marker``.
            marker: the hidden text that identifies feedbot's comment.
        """
        if marker not in body:
            raise ValueError("the comment body must contain its marker")
        found = self._find_comment(repository, number, marker)
        if found is None:
            path = f"/repos/{repository}/issues/{number}/comments"
            response = self._request("POST", path, json={"body": body})
            self._raise_for(response, "POST", path)
            data = response.json()
            return Comment(int(data["id"]), data.get("html_url"), "created")
        if found.get("body") == body:
            return Comment(int(found["id"]), found.get("html_url"), "unchanged")
        path = f"/repos/{repository}/issues/comments/{int(found['id'])}"
        response = self._request("PATCH", path, json={"body": body})
        self._raise_for(response, "PATCH", path)
        data = response.json()
        return Comment(int(data["id"]), data.get("html_url"), "updated")

    def _find_comment(self, repository: str, number: int, marker: str) -> dict[str, Any] | None:
        url: str | None = f"/repos/{repository}/issues/{number}/comments"
        params: dict[str, Any] | None = {"per_page": 100}
        while url is not None:
            response = self._request("GET", url, params=params)
            self._raise_for(response, "GET", url)
            page = response.json()
            if not isinstance(page, list):
                raise GitHubError(f"GET {url}: expected a list of comments")
            for comment in page:
                if isinstance(comment, dict) and marker in str(comment.get("body") or ""):
                    return comment
            match = _NEXT.search(response.headers.get("link", ""))
            url, params = (match[1] if match else None), None
        return None

    # --- the transport ----------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        accept: str = "application/vnd.github+json",
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        url = path if path.startswith(("http://", "https://")) else self._base + path
        for attempt in range(_TRIES):
            self._wait(self._blocked_until - self._now(), f"{method} {path}")
            try:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers={**self._headers, "Accept": accept},
                )
            except httpx.HTTPError as exc:
                raise GitHubError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            wait = self._limited_for(response)
            if wait is None:
                self._note_remaining(response)
                return response
            if attempt == _TRIES - 1:
                raise GitHubError(
                    f"{method} {path}: rate-limited ({response.status_code})", retry_after=wait
                )
            self._wait(wait, f"{method} {path}")
        raise AssertionError("unreachable")

    def _wait(self, seconds: float, what: str) -> None:
        if seconds <= 0:
            return
        if seconds > self._max_wait:
            raise GitHubError(
                f"{what}: GitHub's rate limit allows the next call in {seconds:.0f} s",
                retry_after=seconds,
            )
        self._sleep(seconds)

    def _limited_for(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying a rate-limited answer; None when it is not one."""
        if response.status_code not in (403, 429):
            return None
        retry_after = _number(response.headers.get("retry-after"))
        if retry_after is not None:
            return max(retry_after, 0.0)
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = _number(response.headers.get("x-ratelimit-reset"))
            return max((reset or 0) - self._now(), 1.0)
        if response.status_code == 429 or "rate limit" in response.text.lower():
            return _SECONDARY_WAIT
        return None

    def _note_remaining(self, response: httpx.Response) -> None:
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = _number(response.headers.get("x-ratelimit-reset"))
            if reset is not None:
                self._blocked_until = max(self._blocked_until, reset)

    @staticmethod
    def _raise_for(response: httpx.Response, method: str, path: str) -> None:
        if response.is_success:
            return
        try:
            message = str(response.json().get("message", ""))
        except (ValueError, AttributeError):
            message = response.text[:200]
        raise GitHubError(f"{method} {path}: GitHub answered {response.status_code}: {message}")


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
