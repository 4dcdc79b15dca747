"""A tiny in-memory GitHub REST API served over real HTTP on 127.0.0.1, for tests.

It follows GitHub's documented endpoints for what the pull-request preview uses:

- ``GET /repos/{o}/{r}/pulls/{n}`` (``Accept: application/vnd.github.diff``: the diff as text;
  otherwise the pull request as JSON);
- ``GET /repos/{o}/{r}/compare/{base}...{head}`` (``merge_base_commit.sha``, as registered with
  :meth:`FakeGitHub.add_merge_base`; 404 otherwise);
- ``GET /repos/{o}/{r}/contents/{path}?ref=`` (``Accept: application/vnd.github.raw+json``: the
  raw bytes; 404 when absent);
- ``GET /repos/{o}/{r}/issues/{n}/comments`` (``per_page`` ≤ 100, ``page``; a ``Link`` header
  with ``rel="next"`` while more pages remain), ``POST`` to the same path (``{"body"}``, 201),
  ``PATCH /repos/{o}/{r}/issues/comments/{id}`` (``{"body"}``, 200).

Every answer carries the primary rate-limit headers (``x-ratelimit-limit``, ``-remaining``,
``-used``, ``-reset``, ``-resource``). With ``limit`` set, a request past it is refused as
GitHub does: 403 with ``x-ratelimit-remaining: 0`` and the reset time. :meth:`FakeGitHub.
secondary_limit_next` answers 429 (or 403) with ``retry-after`` instead. Requests without
``Authorization: Bearer <token>`` get 401 ("Requires authentication").
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

JSONDict = dict[str, Any]
_PULL = re.compile(r"^/repos/([^/]+/[^/]+)/pulls/(\d+)$")
_CONTENTS = re.compile(r"^/repos/([^/]+/[^/]+)/contents/(.+)$")
_COMMENTS = re.compile(r"^/repos/([^/]+/[^/]+)/issues/(\d+)/comments$")
_COMPARE = re.compile(r"^/repos/([^/]+/[^/]+)/compare/([^./]+)\.\.\.([^./]+)$")
_COMMENT = re.compile(r"^/repos/([^/]+/[^/]+)/issues/comments/(\d+)$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any = None


@dataclass
class _State:
    comments: dict[int, JSONDict] = field(default_factory=dict)
    diffs: dict[tuple[str, int], bytes] = field(default_factory=dict)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    bases: dict[tuple[str, str, str], str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    next_id: int = 1000
    used: int = 0
    secondary: list[tuple[int, int]] = field(default_factory=list)  # (status, retry_after)


class FakeGitHub:
    """The fake; ``with FakeGitHub(token="ghp_…") as gh: gh.base_url``.

    Args:
        token: the token requests must carry.
        limit: requests allowed before the primary rate limit refuses (None: unlimited).
        reset: the epoch second at which the limit resets (what ``x-ratelimit-reset`` says).
    """

    def __init__(self, token: str, *, limit: int | None = None, reset: int = 2_000_000_000) -> None:
        self.token = token
        self.limit = limit
        self.reset = reset
        self.state = _State()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = fake.handle(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- set-up and inspection ------------------------------------------------------------------

    def add_pull(self, repository: str, number: int, diff: bytes) -> None:
        self.state.diffs[(repository, number)] = diff

    def add_merge_base(self, repository: str, base: str, head: str, merge_base: str) -> None:
        self.state.bases[(repository, base, head)] = merge_base

    def add_file(self, repository: str, ref: str, path: str, data: bytes) -> None:
        self.state.files[(repository, ref, path)] = data

    def add_comment(self, repository: str, number: int, body: str, login: str = "someone") -> int:
        with self._lock:
            return self._new_comment(repository, number, body, login)

    def comments(self, repository: str, number: int) -> list[JSONDict]:
        return [c for c in self.state.comments.values() if c["_where"] == (repository, number)]

    def reset_window(self) -> None:
        """The rate-limit window resets (what passing ``x-ratelimit-reset`` does on GitHub)."""
        with self._lock:
            self.state.used = 0

    def secondary_limit_next(self, *, status: int = 429, retry_after: int = 1) -> None:
        self.state.secondary.append((status, retry_after))

    @property
    def requests(self) -> list[Request]:
        return list(self.state.requests)

    # --- the API ----------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            split = urlsplit(target)
            body = json.loads(raw) if raw else None
            self.state.requests.append(
                Request(method, unquote(split.path), parse_qs(split.query), headers, body)
            )
            if headers.get("authorization") != f"Bearer {self.token}":
                return self._json(401, {"message": "Requires authentication"})
            if self.state.secondary:
                status, wait = self.state.secondary.pop(0)
                message = "You have exceeded a secondary rate limit."
                answer = self._json(status, {"message": message})
                answer[1]["retry-after"] = str(wait)
                return answer
            if self.limit is not None and self.state.used >= self.limit:
                message = "API rate limit exceeded for user."
                return self._json(403, {"message": message})
            self.state.used += 1
            return self._route(method, unquote(split.path), parse_qs(split.query), headers, body)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], bytes]:
        accept = headers.get("accept", "")
        if (m := _PULL.match(path)) and method == "GET":
            diff = self.state.diffs.get((m[1], int(m[2])))
            if diff is None:
                return self._json(404, {"message": "Not Found"})
            if accept == "application/vnd.github.diff":
                return self._raw(200, diff, "text/plain; charset=utf-8")
            return self._json(200, {"number": int(m[2]), "diff_url": path + ".diff"})
        if (m := _COMPARE.match(path)) and method == "GET":
            merge_base = self.state.bases.get((m[1], m[2], m[3]))
            if merge_base is None:
                return self._json(404, {"message": "Not Found"})
            status = "identical" if m[2] == m[3] else "ahead"
            answer = {"status": status, "merge_base_commit": {"sha": merge_base}, "files": []}
            return self._json(200, answer)
        if (m := _CONTENTS.match(path)) and method == "GET":
            ref = query.get("ref", ["main"])[0]
            data = self.state.files.get((m[1], ref, m[2]))
            if data is None:
                return self._json(404, {"message": "Not Found"})
            if accept == "application/vnd.github.raw+json":
                return self._raw(200, data, "application/vnd.github.raw")
            return self._json(200, {"type": "file", "path": m[2], "size": len(data)})
        if m := _COMMENTS.match(path):
            where = (m[1], int(m[2]))
            if method == "POST":
                text = body.get("body") if isinstance(body, dict) else None
                if not isinstance(text, str) or not text:
                    return self._json(422, {"message": "Validation Failed"})
                if len(text) > 65536:
                    return self._json(422, {"message": "body is too long (maximum is 65536)"})
                cid = self._new_comment(where[0], where[1], text, "feedbot[bot]")
                return self._json(201, self._public(self.state.comments[cid]))
            if method == "GET":
                per_page = min(int(query.get("per_page", ["30"])[0]), 100)
                page = int(query.get("page", ["1"])[0])
                mine = [c for c in self.state.comments.values() if c["_where"] == where]
                chunk = mine[(page - 1) * per_page : page * per_page]
                answer = self._json(200, [self._public(c) for c in chunk])
                if page * per_page < len(mine):
                    nxt = f"{self.base_url}{path}?per_page={per_page}&page={page + 1}"
                    answer[1]["link"] = f'<{nxt}>; rel="next"'
                return answer
        if (m := _COMMENT.match(path)) and method == "PATCH":
            comment = self.state.comments.get(int(m[2]))
            if comment is None or comment["_where"][0] != m[1]:
                return self._json(404, {"message": "Not Found"})
            text = body.get("body") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text:
                return self._json(422, {"message": "Validation Failed"})
            comment["body"] = text
            return self._json(200, self._public(comment))
        return self._json(404, {"message": "Not Found"})

    def _new_comment(self, repository: str, number: int, body: str, login: str) -> int:
        self.state.next_id += 1
        cid = self.state.next_id
        self.state.comments[cid] = {
            "id": cid,
            "body": body,
            "user": {"login": login},
            "html_url": f"https://github.com/{repository}/pull/{number}#issuecomment-{cid}",
            "_where": (repository, number),
        }
        return cid

    @staticmethod
    def _public(comment: JSONDict) -> JSONDict:
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    def _limits(self) -> dict[str, str]:
        limit = self.limit if self.limit is not None else 5000
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(limit - self.state.used, 0)),
            "x-ratelimit-used": str(self.state.used),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-resource": "core",
        }

    def _json(self, status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json; charset=utf-8", **self._limits()}
        return status, headers, json.dumps(data).encode()

    def _raw(self, status: int, data: bytes, kind: str) -> tuple[int, dict[str, str], bytes]:
        return status, {"content-type": kind, **self._limits()}, data
