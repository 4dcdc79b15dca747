"""A tiny in-memory Slack Web API served over real HTTP on 127.0.0.1, for tests.

Point ``WebClient(base_url=fake.base_url)`` (or bolt's ``App(client=...)``) at it. It keeps
channels, DMs, threads, metadata and users in memory, records every request, and can be told to
fail::

    fake.fail_next("chat.postMessage", status=429, retry_after=0)   # rate limited, not stored
    fake.fail_next("chat.postMessage", status=500, times=2)         # server error, not stored
    fake.fail_next("chat.postMessage", error="channel_not_found")   # HTTP 200, ok: false
    fake.fail_next("chat.postMessage", drop=True)                   # connection closed, no answer
    fake.lose_answer_next("chat.postMessage")                       # stored, then connection closed
    fake.lose_answer_next("chat.postMessage", drop=False)           # stored, then HTTP 500

Messages (``chat.postMessage``, ``chat.update``, response URLs) are checked like Slack checks them:
``msg_too_long`` past 40,000 characters of text, ``invalid_blocks`` past 50 blocks or when
slack_sdk's block models reject a block.

Implemented methods: ``auth.test``, ``conversations.open``, ``conversations.history``,
``conversations.replies``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``users.lookupByEmail``, ``files.getUploadURLExternal``, ``files.completeUploadExternal``,
``views.publish`` (a ``home`` view of at most 100 valid blocks; :meth:`FakeSlackAPI.home_view`
is the one last published for a user) and ``apps.connections.open`` (with an ``xapp-`` token, when a
:class:`~tests.fakes.socket_mode.FakeSocketModeServer` is attached as ``socket_mode``: the URL
of a new connection to it); anything else answers ``unknown_method``. POSTs to ``/response/<any>``
(a slash command's ``response_url``, see :meth:`FakeSlackAPI.response_url`) are recorded as
method ``"response_url"``.

Files go up as Slack's external upload does: ``files.getUploadURLExternal`` (``filename``,
``length``) answers an ``upload_url`` and a ``file_id``; the raw bytes are POSTed to that URL
(recorded as method ``"upload"``, answered ``OK - <bytes>``); ``files.completeUploadExternal``
(``files`` as JSON ``[{"id", "title"}]``, ``channel_id``, ``thread_ts``) shares them: a message
with ``files`` (``id``, ``name``, ``title``, ``alt_txt``, ``size``) appears in the channel or
thread. :attr:`FakeSlackAPI.uploads` has every shared file with its bytes.

Like Slack, a post to a user id ``U…`` lands in that user's ``D…``
channel and a post to ``#name`` in a ``C…`` channel; the answer names the real id.
"""

from __future__ import annotations

import copy
import json
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import pytest

JSONDict = dict[str, Any]
_FIRST_TS = 1_700_000_000_000_100  # microseconds: "1700000000.000100"
_JSON_FIELDS = ("blocks", "metadata", "attachments", "files", "view")


class Call(NamedTuple):
    """One recorded request: the Web API method (or ``"response_url"``) and its parameters."""

    method: str
    params: JSONDict


@dataclass
class Failure:
    """How the next matching request(s) fail; see :meth:`FakeSlackAPI.fail_next`."""

    status: int = 500
    error: str | None = None
    retry_after: int | None = None
    drop: bool = False
    applied: bool = False
    times: int = 1


class SlackError(Exception):
    """Raised inside the fake to answer ``{"ok": false, "error": ...}``."""


class FakeSlackAPI:
    """A Slack workspace in memory behind a loopback ``ThreadingHTTPServer``.

    Args:
        users: known users, e-mail → user id, for ``users.lookupByEmail``.
        bot_user_id: the bot's own user id (``auth.test``, authors of posted messages).
        token: when set, the only token accepted; otherwise any ``xox…`` token is.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        bot_user_id: str = "UFEEDBOT",
        token: str | None = None,
    ) -> None:
        self.bot_user_id = bot_user_id
        self._token = token
        self._users = dict(users or {})
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._failures: dict[str, list[Failure]] = {}
        self._channels: dict[str, list[JSONDict]] = {}
        self._named: dict[str, str] = {}
        self._files: dict[str, JSONDict] = {}
        self._uploads: list[JSONDict] = []
        self._home_views: dict[str, JSONDict] = {}
        self._ts = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: Where ``apps.connections.open`` sends clients (a FakeSocketModeServer); None: nowhere.
        self.socket_mode: Any = None
        #: When set, the only app-level token ``apps.connections.open`` accepts.
        self.app_token: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSlackAPI:
        """Start serving on a free port in a daemon thread."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("FakeSlackAPI is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """What ``WebClient(base_url=...)`` wants: ends with ``/api/``."""
        return f"{self.root_url}/api/"

    def response_url(self, name: str = "1") -> str:
        """A ``response_url`` for a fake slash command; POSTs to it are recorded."""
        return f"{self.root_url}/response/{name}"

    # -- configuration -----------------------------------------------------------------------

    def add_user(self, email: str, user_id: str) -> None:
        """Make ``users.lookupByEmail`` know ``email``."""
        with self._lock:
            self._users[email] = user_id

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        error: str | None = None,
        retry_after: int | None = None,
        drop: bool = False,
        times: int = 1,
        applied: bool = False,
    ) -> None:
        """Make the next ``times`` requests to ``method`` fail.

        Args:
            method: a Web API method name, or ``"response_url"``.
            status: HTTP status (default 500; 429 when ``retry_after`` is given). A 429 carries
                ``Retry-After: retry_after`` (1 when not given).
            error: answer HTTP 200 with ``{"ok": false, "error": error}`` instead.
            retry_after: seconds for the ``Retry-After`` header.
            drop: close the connection without any answer.
            times: how many consecutive requests fail.
            applied: carry the request out (store the message) before failing: the answer is lost.
        """
        if status is None:
            status = 200 if error else 429 if retry_after is not None else 500
        failure = Failure(status, error, retry_after, drop, applied, times)
        with self._lock:
            self._failures.setdefault(method, []).append(failure)

    def lose_answer_next(self, method: str, *, drop: bool = True, times: int = 1) -> None:
        """Carry out the next request, then drop the connection (or answer 500 if not ``drop``)."""
        self.fail_next(method, status=500, drop=drop, times=times, applied=True)

    # -- inspection --------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every request received, in order, including failed ones."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[JSONDict]:
        """The parameters of every request to ``method``, in order."""
        return [call.params for call in self.calls if call.method == method]

    def dm_channel(self, user_id: str) -> str:
        """The ``D…`` id of the bot's DM with ``user_id`` (stable for a user)."""
        return "D" + user_id[1:]

    def channel_id(self, name: str) -> str:
        """The ``C…`` id the fake gives ``#name`` (stable for a name)."""
        return f"C{zlib.crc32(name.lstrip('#').encode()):08X}"

    def messages_in(self, channel: str) -> list[JSONDict]:
        """Every message (top-level and replies) in a channel, oldest first, as copies.

        ``channel`` may be a ``D…``/``C…`` id, a user id (their DM) or ``#name``.
        """
        with self._lock:
            return copy.deepcopy(self._channels.get(self._canonical(channel), []))

    def thread(self, channel: str, ts: str) -> list[JSONDict]:
        """The parent ``ts`` and its replies, oldest first."""
        return [m for m in self.messages_in(channel) if ts in (m["ts"], m.get("thread_ts"))]

    @property
    def uploads(self) -> list[JSONDict]:
        """Every file shared by ``files.completeUploadExternal``, in order: ``id``, ``name``,
        ``title``, ``alt_txt``, ``data`` (the bytes), ``channel`` and ``thread_ts``."""
        with self._lock:
            return copy.deepcopy(self._uploads)

    def home_view(self, user_id: str) -> JSONDict | None:
        """The Home tab view last published for ``user_id`` (a copy), None if never."""
        with self._lock:
            return copy.deepcopy(self._home_views.get(user_id))

    @property
    def responses(self) -> list[JSONDict]:
        """Bodies POSTed to response URLs, each with its ``_path``."""
        return self.calls_to("response_url")

    # -- request handling (called from server threads) ---------------------------------------

    def handle(self, path: str, params: JSONDict, authorization: str | None) -> _Answer | None:
        """Answer one request; None means: close the connection without answering."""
        method = _method_of(path)
        if method == "response_url":
            params = {**params, "_path": path}
        with self._lock:
            self._calls.append(Call(method, copy.deepcopy(params)))
            failure = self._take_failure(method)
            if failure is not None and not failure.applied:
                return _failure_answer(failure)
            if method == "upload":
                return self._receive_upload(path, params, failure)
            result = self._answer(method, params, authorization)
        if failure is not None:
            return _failure_answer(failure)
        return _json_answer(200, result)

    def _receive_upload(
        self, path: str, params: JSONDict, failure: Failure | None
    ) -> _Answer | None:
        """Store POSTed bytes for a file id that ``files.getUploadURLExternal`` gave out."""
        file = self._files.get(path.removeprefix("/upload/"))
        if file is None:
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        data = params.get("_bytes", b"")
        file["data"] = data
        if failure is not None:
            return _failure_answer(failure)
        return 200, {"Content-Type": "text/plain"}, f"OK - {len(data)}".encode()

    def _take_failure(self, method: str) -> Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _answer(self, method: str, params: JSONDict, authorization: str | None) -> JSONDict:
        if method == "response_url":
            try:
                _check_message(params)
            except SlackError as err:
                return {"ok": False, "error": str(err)}
            return {"ok": True}
        handler = self._methods().get(method)
        try:
            if method == "apps.connections.open":
                return {"ok": True, **self._apps_connections_open(authorization, params)}
            if handler is None:
                raise SlackError("unknown_method")
            self._check_auth(authorization, params)
            return {"ok": True, **handler(params)}
        except SlackError as err:
            return {"ok": False, "error": str(err)}

    def _methods(self) -> dict[str, Callable[[JSONDict], JSONDict]]:
        return {
            "auth.test": self._auth_test,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "users.lookupByEmail": self._users_lookup_by_email,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "views.publish": self._views_publish,
        }

    def _check_auth(self, authorization: str | None, params: JSONDict) -> None:
        token = (authorization or "").removeprefix("Bearer ").strip() or params.get("token")
        if not token:
            raise SlackError("not_authed")
        if not str(token).startswith("xox") or self._token not in (None, token):
            raise SlackError("invalid_auth")

    # -- Web API methods (called with the lock held) -----------------------------------------

    def _apps_connections_open(self, authorization: str | None, params: JSONDict) -> JSONDict:
        token = (authorization or "").removeprefix("Bearer ").strip() or params.get("token")
        if not token:
            raise SlackError("not_authed")
        if not str(token).startswith("xapp-"):
            raise SlackError("not_allowed_token_type")  # what Slack says to a bot token
        if self.app_token not in (None, token):
            raise SlackError("invalid_auth")
        if self.socket_mode is None:
            raise SlackError("invalid_auth")
        return {"url": self.socket_mode.new_url()}

    def _auth_test(self, params: JSONDict) -> JSONDict:
        return {"url": "https://fake.slack.com/", "team": "Fake", "team_id": "T0FAKE",
                "user": "feedbot", "user_id": self.bot_user_id, "bot_id": "B0FEEDBOT"}  # fmt: skip

    def _conversations_open(self, params: JSONDict) -> JSONDict:
        users = str(params.get("users", ""))
        if not users.startswith(("U", "W")) or "," in users:
            raise SlackError("user_not_found")
        return {"channel": {"id": self._open_dm(users)}}

    def _conversations_history(self, params: JSONDict) -> JSONDict:
        messages = [m for m in self._existing(params) if _is_top_level(m)]
        return _page(list(reversed(messages)), params)

    def _conversations_replies(self, params: JSONDict) -> JSONDict:
        ts = str(params.get("ts", ""))
        thread = [m for m in self._existing(params) if ts in (m["ts"], m.get("thread_ts"))]
        if not thread or thread[0]["ts"] != ts:
            raise SlackError("thread_not_found")
        return _page(thread, params)

    def _chat_post_message(self, params: JSONDict) -> JSONDict:
        channel = self._writable(str(params.get("channel", "")))
        if not params.get("text") and not params.get("blocks"):
            raise SlackError("no_text")
        _check_message(params)
        message = {"type": "message", "user": self.bot_user_id, "bot_id": "B0FEEDBOT",
                   "text": str(params.get("text", "")), "ts": self._next_ts()}  # fmt: skip
        for field in ("blocks", "metadata"):
            if params.get(field):
                message[field] = params[field]
        if params.get("thread_ts"):
            self._attach_reply(channel, message, params)
        self._channels[channel].append(message)
        return {"channel": channel, "ts": message["ts"], "message": _visible(message)}

    def _chat_update(self, params: JSONDict) -> JSONDict:
        channel = self._canonical(str(params.get("channel", "")))
        message = self._find(channel, str(params.get("ts", "")))
        _check_message(params)
        message["text"] = str(params.get("text", message["text"]))
        for field in ("blocks", "metadata"):
            if field in params:
                message[field] = params[field]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": message["ts"], "text": message["text"],
                "message": _visible(message)}  # fmt: skip

    def _chat_post_ephemeral(self, params: JSONDict) -> JSONDict:
        self._writable(str(params.get("channel", "")))
        if not params.get("user"):
            raise SlackError("user_not_in_channel")
        return {"message_ts": self._next_ts()}

    def _users_lookup_by_email(self, params: JSONDict) -> JSONDict:
        email = str(params.get("email", ""))
        if email not in self._users:
            raise SlackError("users_not_found")
        user_id = self._users[email]
        return {"user": {"id": user_id, "name": email.split("@")[0], "profile": {"email": email}}}

    def _files_get_upload_url_external(self, params: JSONDict) -> JSONDict:
        filename = str(params.get("filename") or "")
        try:
            length = int(params.get("length") or 0)
        except ValueError as err:
            raise SlackError("invalid_arguments") from err
        if not filename or length <= 0:
            raise SlackError("missing_argument")
        if len(str(params.get("alt_txt") or "")) > 1000:
            raise SlackError("alt_txt_too_large")
        file_id = f"F{len(self._files) + 1:08d}"
        self._files[file_id] = {"id": file_id, "name": filename, "length": length,
                                "alt_txt": params.get("alt_txt"), "data": None}  # fmt: skip
        return {"upload_url": f"{self.root_url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, params: JSONDict) -> JSONDict:
        listed = params.get("files")
        if not isinstance(listed, list) or not listed:
            raise SlackError("invalid_arguments")
        files = []
        for entry in listed:
            file = self._files.get(str(entry.get("id")))
            if file is None or file["data"] is None or file.get("completed"):
                raise SlackError("file_not_found")
            if len(file["data"]) != file["length"]:
                raise SlackError("file_upload_size_mismatch")
            files.append((file, str(entry.get("title") or file["name"])))
        channel = str(params.get("channel_id") or "")
        if channel:
            self._share(channel, files, params)
        for file, title in files:
            file["completed"], file["title"] = True, title
        return {"files": [{"id": f["id"], "title": title} for f, title in files]}

    def _views_publish(self, params: JSONDict) -> JSONDict:
        user_id = str(params.get("user_id") or "")
        if not user_id.startswith(("U", "W")):
            raise SlackError("invalid_arguments")
        view = params.get("view")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackError("invalid_arguments")
        if len(json.dumps(view)) > 250_000:
            raise SlackError("view_too_large")
        _check_blocks(view.get("blocks"), most=100)
        self._home_views[user_id] = copy.deepcopy(view)
        return {"view": {"id": f"V{zlib.crc32(user_id.encode()):08X}", **view}}

    def _share(self, channel: str, files: list[tuple[JSONDict, str]], params: JSONDict) -> None:
        """The message that shows shared files in a channel or thread."""
        if channel not in self._channels:
            raise SlackError("channel_not_found")
        shown = [
            {"id": f["id"], "name": f["name"], "title": title, "alt_txt": f["alt_txt"],
             "size": len(f["data"]), "mimetype": "image/png"}
            for f, title in files
        ]  # fmt: skip
        message = {
            "type": "message", "user": self.bot_user_id, "upload": True, "files": shown,
            "text": str(params.get("initial_comment") or ""), "ts": self._next_ts(),
        }  # fmt: skip
        if params.get("thread_ts"):
            self._attach_reply(channel, message, params)
        self._channels[channel].append(message)
        for file, title in files:
            self._uploads.append(
                {"id": file["id"], "name": file["name"], "title": title,
                 "alt_txt": file["alt_txt"], "data": file["data"],
                 "channel": channel, "thread_ts": message.get("thread_ts")}
            )  # fmt: skip

    # -- helpers -----------------------------------------------------------------------------

    def _next_ts(self) -> str:
        micros = _FIRST_TS + self._ts * 100
        self._ts += 1
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _open_dm(self, user_id: str) -> str:
        channel = self.dm_channel(user_id)
        self._channels.setdefault(channel, [])
        return channel

    def _canonical(self, channel: str) -> str:
        if channel.startswith(("U", "W")):
            return self.dm_channel(channel)
        if channel.startswith("#"):
            return self.channel_id(channel)
        return channel

    def _writable(self, channel: str) -> str:
        """Resolve a postMessage target like Slack: user → DM, ``#name`` → ``C…``."""
        if channel.startswith(("U", "W")):
            return self._open_dm(channel)
        if channel.startswith(("#", "C", "G")):
            # Any public channel exists; the fake creates it on the first post.
            channel = self._canonical(channel)
            self._channels.setdefault(channel, [])
            return channel
        if channel not in self._channels:
            raise SlackError("channel_not_found")
        return channel

    def _existing(self, params: JSONDict) -> list[JSONDict]:
        """The messages of an existing channel id (names and user ids are not accepted)."""
        channel = str(params.get("channel", ""))
        if channel not in self._channels:
            raise SlackError("channel_not_found")
        keep_metadata = _truthy(params.get("include_all_metadata"))
        return [_visible(m, metadata=keep_metadata) for m in self._channels[channel]]

    def _find(self, channel: str, ts: str) -> JSONDict:
        for message in self._channels.get(channel, []):
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    def _attach_reply(self, channel: str, reply: JSONDict, params: JSONDict) -> None:
        parent = self._find(channel, str(params["thread_ts"]))
        if parent.get("thread_ts", parent["ts"]) != parent["ts"]:
            raise SlackError("cannot_reply_to_message")
        parent["thread_ts"] = parent["ts"]
        parent["reply_count"] = parent.get("reply_count", 0) + 1
        reply["thread_ts"] = parent["ts"]
        if _truthy(params.get("reply_broadcast")):
            reply["subtype"] = "thread_broadcast"


_Answer = tuple[int, dict[str, str], bytes]


class _Handler(BaseHTTPRequestHandler):
    """Turns an HTTP request (JSON, form or query string) into :meth:`FakeSlackAPI.handle`."""

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        params: JSONDict = dict(parse_qsl(query))
        if path.startswith("/upload/"):
            # A file's bytes, whatever the Content-Type says (urllib says form-encoded).
            params["_bytes"] = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        else:
            params.update(self._body())
        for field in _JSON_FIELDS:
            if isinstance(params.get(field), str) and params[field][:1] in ("{", "["):
                params[field] = json.loads(params[field])
        fake: FakeSlackAPI = self.server.fake  # type: ignore[attr-defined]
        answer = fake.handle(path, params, self.headers.get("Authorization"))
        if answer is None:
            self.close_connection = True
            return
        status, headers, body = answer
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> JSONDict:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get_content_type()
        if content_type == "application/json":
            loaded = json.loads(raw or b"{}")
            return loaded if isinstance(loaded, dict) else {"_body": loaded}
        if content_type == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode("utf-8")))
        return {"_raw": raw.decode("utf-8", "replace")} if raw else {}


def _method_of(path: str) -> str:
    if path.startswith("/response/"):
        return "response_url"
    if path.startswith("/upload/"):
        return "upload"
    return path.removeprefix("/api/").strip("/")


def _json_answer(status: int, body: JSONDict, headers: Mapping[str, str] | None = None) -> _Answer:
    content_type = {"Content-Type": "application/json; charset=utf-8"}
    return status, {**content_type, **(headers or {})}, json.dumps(body).encode()


def _failure_answer(failure: Failure) -> _Answer | None:
    if failure.drop:
        return None
    if failure.error is not None:
        return _json_answer(failure.status, {"ok": False, "error": failure.error})
    if failure.status == 429:
        retry_after = str(1 if failure.retry_after is None else failure.retry_after)
        return _json_answer(
            429, {"ok": False, "error": "ratelimited"}, {"Retry-After": retry_after}
        )
    # Slack's load balancers answer 5xx with HTML, not JSON; clients must cope with that.
    return failure.status, {"Content-Type": "text/html"}, b"<html>Internal Server Error</html>"


def _check_message(params: JSONDict) -> None:
    """Refuse what Slack refuses: over-long text, and blocks slack_sdk's models reject.

    Every test that sends through the fake therefore checks every Block Kit payload.
    """
    if len(str(params.get("text") or "")) > 40_000:
        raise SlackError("msg_too_long")
    _check_blocks(params.get("blocks") or [], most=50)


def _check_blocks(blocks: Any, *, most: int) -> None:
    """At most ``most`` blocks (50 in a message, 100 in a view), each valid for slack_sdk."""
    from slack_sdk.errors import SlackObjectFormationError
    from slack_sdk.models.blocks import Block

    if not isinstance(blocks, list) or len(blocks) > most:
        raise SlackError("invalid_blocks")
    for raw in blocks:
        try:
            model = Block.parse(raw)
            if model is None:
                raise SlackError("invalid_blocks")
            model.validate_json()
        except (SlackObjectFormationError, KeyError, TypeError) as err:
            raise SlackError("invalid_blocks") from err


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _is_top_level(message: JSONDict) -> bool:
    return message.get("thread_ts") in (None, message["ts"]) or bool(
        message.get("subtype") == "thread_broadcast"
    )


def _visible(message: JSONDict, *, metadata: bool = True) -> JSONDict:
    shown = copy.deepcopy(message)
    if not metadata:
        shown.pop("metadata", None)
    return shown


def _page(messages: list[JSONDict], params: JSONDict) -> JSONDict:
    start = int(params.get("cursor") or 0)
    limit = int(params.get("limit") or 100)
    end = start + limit
    more = end < len(messages)
    return {"messages": messages[start:end], "has_more": more,
            "response_metadata": {"next_cursor": str(end) if more else ""}}  # fmt: skip


@pytest.fixture
def slack_api() -> Iterator[FakeSlackAPI]:
    """A started :class:`FakeSlackAPI`, stopped after the test."""
    with FakeSlackAPI() as api:
        yield api
