"""Delivery to Slack through slack_sdk's ``WebClient``.

Two things here go beyond calling the Web API:

* ``chat.postMessage`` has no idempotency key, so a post that may have reached Slack (a 5xx or a
  lost connection) is never repeated blindly: the retry handlers built by
  :func:`build_web_client` do not repeat it, and :meth:`SlackNotifier.post` first looks for the
  message's key in the channel (:meth:`SlackNotifier.find`) and only posts again when it is absent.
* Slack allows about one message per second per channel, so posts go through a
  :class:`ChannelPacer`.

Every retry the handlers make is reported to an ``on_retry(method, reason)`` callback (for
``feedbot_slack_retries_total``), with reason ``rate_limited``, ``server_error`` or
``connection_error``.

A message with a file (a chart) is uploaded with ``files_upload_v2``:
``files.getUploadURLExternal``, a POST of the bytes, then ``files.completeUploadExternal`` into
the thread. Only the last step
shares the file, so it is never repeated blindly either: after a lost answer the thread is read
for a file of the same name (unique per message key) before uploading again; an upload that
never completed stays private to the bot and is not seen.

A person's Home tab is published with ``views.publish`` (:meth:`SlackNotifier.publish_home`).

Required bot scopes: ``chat:write``, ``files:write``, ``im:write``, ``users:read.email`` and, for
:meth:`find`, ``im:history`` (plus ``channels:history`` when posting to channels).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from http.client import HTTPException
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from feedbot.errors import DeliveryError
from feedbot.notify.base import Attachment, Message, Receipt

#: Why a message with no recipient is not sent: the release's owner plan found nobody.
NOBODY_TO_TELL = (
    "nobody to send this to: the author has no Slack id feedbot knows, and the service has no "
    "owners or channel (set author.slack in the deploy, people[], services.<name>.owners or "
    ".channel, or slack.weekly_digest.channel)"
)

EVENT_TYPE = "feedbot_message"
"""``metadata.event_type`` of every message feedbot posts; ``event_payload.key`` is the key."""

# Errors that the same request can never get past, however often it is sent.
NON_RETRYABLE_ERRORS = frozenset(
    {
        "channel_not_found", "not_in_channel", "invalid_auth", "account_inactive",
        "token_revoked", "is_archived", "msg_too_long", "invalid_blocks", "no_text",
        "not_authed", "missing_scope", "message_not_found", "cant_update_message",
        "edit_window_closed", "invalid_arguments", "user_not_found", "cannot_dm_bot",
        "file_uploads_disabled", "file_uploads_except_images_disabled", "file_type_not_allowed",
        "file_upload_size_restricted", "alt_txt_too_large", "invalid_thread_ts",
        "not_enabled", "view_too_large",
    }
)  # fmt: skip

# Methods whose repetition would post twice: never retried after the request may have arrived.
_NOT_REPEATABLE = frozenset(
    {
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.scheduleMessage",
        "files.completeUploadExternal",
    }
)
#: Slack refuses a longer ``alt_txt`` (``alt_txt_too_large``).
MAX_ALT_TEXT = 1000
_TRANSPORT_ERRORS = (OSError, HTTPException)
_TOKEN = re.compile(r"xox[a-z]-[A-Za-z0-9-]+")
_FIND_PAGE_SIZE = 200
_FIND_MAX_PAGES = 10


def build_web_client(
    *,
    token: str,
    base_url: str | None = None,
    timeout: int = 10,
    max_retries: int = 3,
    retry_interval: RetryIntervalCalculator | None = None,
    on_retry: RetryCallback | None = None,
) -> WebClient:
    """Build the ``WebClient`` feedbot uses, with retries for 429, 5xx and connection errors.

    429 answers are retried after their ``Retry-After``. 500/503 answers and dropped connections
    are retried only for methods that are safe to repeat (not ``chat.postMessage``).

    Args:
        token: the bot token (``xoxb-…``).
        base_url: the Web API root ending in ``/api/``; Slack's own when None.
        timeout: seconds per HTTP request.
        max_retries: retries per handler (rate limit, server error, connection error).
        retry_interval: wait between 5xx/connection retries; exponential backoff with jitter
            (0.5 s, 1 s, 2 s … plus up to 1 s) when None. Tests pass a zero fixed interval.
        on_retry: called as ``on_retry(method, reason)`` before each retry, for metrics.

    Returns:
        A configured client; it opens no connection until first used.
    """
    interval = retry_interval or BackoffRetryIntervalCalculator(backoff_factor=0.5)
    handlers: list[_Reporting] = [
        _RateLimitRetryHandler(max_retry_count=max_retries),
        _ServerErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
        _ConnectionErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
    ]
    for handler in handlers:
        handler.on_retry = on_retry
    kwargs: dict[str, Any] = {"token": token, "timeout": timeout, "retry_handlers": handlers}
    if base_url is not None:
        kwargs["base_url"] = base_url
    return WebClient(**kwargs)


def _api_method(request: HttpRequest) -> str:
    return urlsplit(request.url).path.rsplit("/", 1)[-1]


RetryCallback = Callable[[str, str], None]


class _Reporting:
    """Mixin for slack_sdk retry handlers: reports each retry before it is made."""

    reason: str = ""
    on_retry: RetryCallback | None = None

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        # slack_sdk calls this only once a handler decided to retry, right before it sleeps.
        if self.on_retry is not None:
            self.on_retry(_api_method(request), self.reason)
        super().prepare_for_next_attempt(  # type: ignore[misc]
            state=state, request=request, response=response, error=error
        )


class _RateLimitRetryHandler(_Reporting, RateLimitErrorRetryHandler):
    """Retries 429 answers after their ``Retry-After``."""

    reason = "rate_limited"


class _ServerErrorRetryHandler(_Reporting, ServerErrorRetryHandler):
    """Retries 500/503, except for methods whose request may already have taken effect."""

    reason = "server_error"

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if _api_method(request) in _NOT_REPEATABLE:
            return False
        return bool(
            super()._can_retry(state=state, request=request, response=response, error=error)
        )


class _ConnectionErrorRetryHandler(_Reporting, ConnectionErrorRetryHandler):
    """Retries dropped connections; a refused one never reached Slack, so it is always safe."""

    reason = "connection_error"

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        refused = isinstance(error, URLError) and isinstance(error.reason, ConnectionRefusedError)
        if _api_method(request) in _NOT_REPEATABLE and not refused:
            return False
        return bool(
            super()._can_retry(state=state, request=request, response=response, error=error)
        )


class ChannelPacer:
    """Spaces posts to the same channel at least ``interval`` seconds apart.

    Thread-safe: each caller reserves the next free slot for its channel, then sleeps outside the
    lock, so posts to other channels never wait.

    Args:
        interval: minimum seconds between two posts to one channel (Slack allows about 1/s).
        sleep: ``time.sleep`` or a test double.
        monotonic: ``time.monotonic`` or a test double.
    """

    def __init__(
        self,
        *,
        interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._sleep = sleep
        self._monotonic = monotonic
        self._next_free: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, channel: str) -> float:
        """Block until ``channel`` may be posted to again.

        Args:
            channel: the channel (or recipient) the next post goes to.

        Returns:
            The seconds slept (0.0 when the channel was free).
        """
        with self._lock:
            now = self._monotonic()
            slot = max(now, self._next_free.get(channel, now))
            self._next_free[channel] = slot + self._interval
            if len(self._next_free) > 1024:
                self._forget_idle(now)
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)

    def mark(self, channel: str) -> None:
        """Count a post to ``channel`` that was paced under another name.

        A post to a user id is paced under ``U…`` until Slack's answer names the ``D…`` channel;
        marking the ``D…`` id makes a thread reply right after the parent wait its turn.

        Args:
            channel: the channel id just posted to.
        """
        with self._lock:
            now = self._monotonic()
            self._next_free[channel] = max(now, self._next_free.get(channel, now)) + self._interval

    def _forget_idle(self, now: float) -> None:
        for channel in [c for c, free in self._next_free.items() if free <= now]:
            del self._next_free[channel]


class SlackNotifier:
    """Delivers messages with ``chat.postMessage``, tagged with their key in message metadata.

    A message to a user id (``U…``) lands in the bot's DM with that user; the receipt names the
    DM's ``D…`` id. :meth:`find` can look back, so the outbox never sends a message twice; it
    cannot for a ``#name`` recipient (Slack reads history by channel id only): configure
    channel ids.

    Args:
        client: a ``WebClient`` from :func:`build_web_client`.
        pacer: per-channel spacing of posts; one second apart when None.
        post_attempts: how many times :meth:`post` sends, checking with :meth:`find` before each
            repeat, when the answer to a post is lost (5xx or dropped connection).
    """

    name: str = "slack"

    def __init__(
        self, client: WebClient, *, pacer: ChannelPacer | None = None, post_attempts: int = 2
    ) -> None:
        self._client = client
        self._pacer = pacer or ChannelPacer()
        self._post_attempts = max(1, post_attempts)
        self._dm_channels: dict[str, str] = {}

    def post(self, message: Message) -> Receipt:
        """Send ``message``; after a lost answer, send again only if :meth:`find` misses it."""
        if not message.recipient:
            raise DeliveryError(NOBODY_TO_TELL, retryable=False)
        for attempt in range(1, self._post_attempts + 1):
            self._pacer.wait(self._pace_key(message))
            if attempt > 1 and (found := self.find(message)) is not None:
                return found
            try:
                if message.file is not None:
                    return self._upload_once(message, message.file)
                return self._post_once(message)
            except DeliveryError as err:
                if attempt == self._post_attempts or not _may_have_arrived(err):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def update(self, receipt: Receipt, message: Message) -> None:
        """Replace text and blocks; an empty ``blocks`` clears the earlier ones."""
        with _translated("chat.update", f"{receipt.channel}/{receipt.ts}"):
            self._client.chat_update(
                channel=receipt.channel,
                ts=receipt.ts,
                text=message.text,
                blocks=[dict(block) for block in message.blocks],
                metadata=_metadata(message),
            )

    def find(self, message: Message) -> Receipt | None:
        """Look for ``message.key`` in the thread, or in the latest 200 messages of the channel.

        A file is looked for by its name; the receipt then names the file (``F…``).
        """
        if message.file is not None:
            return self._find_file(message, message.file)
        if message.thread is not None:
            channel = message.thread.channel
            found = _first_with_key(self._replies(message.thread), message.key)
        else:
            dm_or_channel = self._readable_channel(message.recipient)
            if dm_or_channel is None:
                return None
            channel = dm_or_channel
            found = _first_with_key(self._history(channel), message.key)
        return None if found is None else Receipt(channel=channel, ts=found)

    def publish_home(self, user_id: str, view: Mapping[str, Any]) -> None:
        """Publish ``view`` as the Home tab of ``user_id`` (``views.publish``).

        Unlike a post, a publication is safe to repeat: the retry handlers retry it after a 5xx
        or a dropped connection too.
        """
        with _translated("views.publish", user_id):
            self._client.views_publish(user_id=user_id, view=dict(view))

    def lookup_user(self, email: str) -> str | None:
        """Find a user by e-mail; None on ``users_not_found``."""
        with _translated("users.lookupByEmail", email):
            try:
                response = self._client.users_lookupByEmail(email=email)
            except SlackApiError as err:
                if _error_code(err) == "users_not_found":
                    return None
                raise
            return str(response["user"]["id"])

    def _post_once(self, message: Message) -> Receipt:
        kwargs = _post_arguments(message)
        with _translated("chat.postMessage", str(kwargs["channel"])):
            response = self._client.chat_postMessage(**kwargs)
        receipt = Receipt(channel=str(response["channel"]), ts=str(response["ts"]))
        if message.thread is None and message.recipient not in self._dm_channels:
            self._dm_channels[message.recipient] = receipt.channel
            if receipt.channel != message.recipient:
                self._pacer.mark(receipt.channel)
        return receipt

    def _upload_once(self, message: Message, file: Attachment) -> Receipt:
        """Upload ``file`` into the message's thread (or to its recipient) and share it."""
        channel, thread_ts = self._file_target(message)
        with _translated("files_upload_v2", f"{channel}/{thread_ts or '-'}"):
            try:
                response = self._client.files_upload_v2(
                    channel=channel,
                    thread_ts=thread_ts,
                    file=file.data,
                    filename=file.name,
                    title=file.title,
                    alt_txt=message.text[:MAX_ALT_TEXT] or None,
                )
            except HTTPError as err:
                err.close()  # the refused byte upload's answer holds its connection open
                raise
        uploaded = response.get("file") or {}
        return Receipt(channel=channel, ts=str(uploaded.get("id") or file.name))

    def _file_target(self, message: Message) -> tuple[str, str | None]:
        """The channel id (and thread) a file is shared in: Slack shares files by id only."""
        if message.thread is not None:
            return message.thread.channel, message.thread.ts
        channel = self._readable_channel(message.recipient)
        if channel is None:
            raise DeliveryError(
                f"cannot share a file with {message.recipient}: configure a channel id",
                retryable=False,
            )
        return channel, None

    def _find_file(self, message: Message, file: Attachment) -> Receipt | None:
        """``file`` of ``message``, looked up by name in its thread or channel."""
        if message.thread is not None:
            channel, messages = message.thread.channel, self._replies(message.thread)
        else:
            readable = self._readable_channel(message.recipient)
            if readable is None:
                return None
            channel, messages = readable, iter(self._history(readable))
        for candidate in messages:
            for shared in candidate.get("files") or []:
                if shared.get("name") == file.name:
                    return Receipt(channel=channel, ts=str(shared.get("id") or candidate["ts"]))
        return None

    def _pace_key(self, message: Message) -> str:
        if message.thread is not None:
            return message.thread.channel
        return self._dm_channels.get(message.recipient, message.recipient)

    def _readable_channel(self, recipient: str) -> str | None:
        """The channel id whose history holds top-level posts to ``recipient``."""
        if recipient in self._dm_channels:
            return self._dm_channels[recipient]
        if recipient.startswith("#"):
            return None
        if recipient.startswith(("U", "W")):
            with _translated("conversations.open", recipient):
                response = self._client.conversations_open(users=recipient)
            self._dm_channels[recipient] = str(response["channel"]["id"])
            return self._dm_channels[recipient]
        return recipient

    def _history(self, channel: str) -> list[Mapping[str, Any]]:
        with _translated("conversations.history", channel):
            response = self._client.conversations_history(
                channel=channel, include_all_metadata=True, limit=_FIND_PAGE_SIZE
            )
        return list(response.get("messages") or [])

    def _replies(self, thread: Receipt) -> Iterator[Mapping[str, Any]]:
        cursor: str | None = None
        for _ in range(_FIND_MAX_PAGES):
            with _translated("conversations.replies", f"{thread.channel}/{thread.ts}"):
                response = self._client.conversations_replies(
                    channel=thread.channel,
                    ts=thread.ts,
                    include_all_metadata=True,
                    limit=_FIND_PAGE_SIZE,
                    cursor=cursor,
                )
            yield from response.get("messages") or []
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return


def _post_arguments(message: Message) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "channel": message.recipient,
        "text": message.text,
        "unfurl_links": False,
        "metadata": _metadata(message),
    }
    if message.blocks:
        kwargs["blocks"] = [dict(block) for block in message.blocks]
    if message.thread is not None:
        kwargs["channel"] = message.thread.channel
        kwargs["thread_ts"] = message.thread.ts
        kwargs["reply_broadcast"] = message.broadcast
    return kwargs


def _metadata(message: Message) -> dict[str, Any]:
    return {"event_type": EVENT_TYPE, "event_payload": {"key": message.key}}


def _first_with_key(messages: Iterable[Mapping[str, Any]], key: str) -> str | None:
    """The ``ts`` of the first message whose feedbot metadata carries ``key``."""
    for candidate in messages:
        metadata = candidate.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == EVENT_TYPE and payload.get("key") == key:
            return str(candidate["ts"])
    return None


@contextmanager
def _translated(method: str, target: str) -> Iterator[None]:
    """Turn slack_sdk and transport errors into :class:`DeliveryError` naming the method."""
    try:
        yield
    except SlackApiError as err:
        status = int(err.response.status_code)
        code = _error_code(err)
        retryable = status == 429 or status >= 500 or code not in NON_RETRYABLE_ERRORS
        raise DeliveryError(
            f"Slack {method} ({target}) failed: {_scrub(code)} (HTTP {status})",
            retryable=retryable,
        ) from err
    except _TRANSPORT_ERRORS as err:
        detail = _scrub(str(err) or type(err).__name__)
        raise DeliveryError(f"Slack {method} ({target}) failed: {detail}", retryable=True) from err
    except SlackClientError as err:
        raise DeliveryError(
            f"Slack {method} ({target}) failed: {_scrub(str(err))}", retryable=False
        ) from err


def _error_code(err: SlackApiError) -> str:
    data = err.response.data
    code = data.get("error") if isinstance(data, dict) else None
    return str(code or "unknown_error")


def _may_have_arrived(err: DeliveryError) -> bool:
    """Whether the failed request may have taken effect (5xx answer or connection lost)."""
    cause = err.__cause__
    if isinstance(cause, SlackApiError):
        return int(cause.response.status_code) >= 500
    refused = isinstance(cause, URLError) and isinstance(cause.reason, ConnectionRefusedError)
    return isinstance(cause, _TRANSPORT_ERRORS) and not refused


def _scrub(text: str) -> str:
    """Shorten a foreign error text and blank out anything that looks like a token."""
    return _TOKEN.sub("xox?-***", text)[:300]
