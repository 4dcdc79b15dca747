"""Request bodies: every body is capped by path and must arrive before a deadline.

:class:`BodyGuard` is the ASGI middleware that enforces this for every route, answering 413 or
408 before a handler runs; :func:`read_body` is how a handler that reads its own body sees the
same limit, as :class:`~feedbot.errors.WebhookRejected`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feedbot.errors import WebhookRejected

log = logging.getLogger(__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` bytes (declared or actual)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise WebhookRejected(413, f"body: {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise WebhookRejected(413, f"body: over the limit of {limit} bytes")
    return bytes(body)


class BodyGuard:
    """ASGI middleware: every request body is capped by path and must arrive before a deadline.

    A declared ``Content-Length`` over the limit is answered 413 before anything is read; a body
    that grows past it while streaming, 413; one that has not fully arrived ``timeout`` seconds
    after the request started, 408. So a client sending slowly or endlessly holds nothing long.
    Handlers that read the body themselves see the same refusals as :class:`WebhookRejected`.

    Args:
        app: the application to guard.
        limits: the body limit in bytes by path prefix (``"/slack/"``), first match wins.
        default_limit: the limit of every other path, and the ceiling of all of them.
        timeout: seconds the whole body may take to arrive.
    """

    def __init__(
        self, app: ASGIApp, *, limits: Mapping[str, int], default_limit: int, timeout: float
    ) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default_limit = default_limit
        self.timeout = timeout

    def limit_for(self, path: str) -> int:
        """The body limit of ``path``."""
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return min(limit, self.default_limit)
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(
                send, WebhookRejected(413, f"body: {declared} bytes is over the limit of {limit}")
            )
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._guarded(receive, limit), tracking_send)
        except WebhookRejected as exc:
            if started:
                raise
            log.info("request to %s refused: %s", scope["path"], exc)
            await _refuse(send, exc)

    def _guarded(self, receive: Receive, limit: int) -> Receive:
        deadline = asyncio.get_running_loop().time() + self.timeout
        received = 0
        complete = False

        async def guarded() -> Message:
            nonlocal received, complete
            if complete:  # After the body, receive() only waits for the disconnect.
                return await receive()
            try:
                # Not wait_for: it runs receive() as a task of its own, for every chunk (a
                # 128 KiB OTLP export arrives in several).
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise WebhookRejected(408, f"body: not received within {self.timeout:g}s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise WebhookRejected(413, f"body: over the limit of {limit} bytes")
                complete = not message.get("more_body", False)
            return message

        return guarded


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _refuse(send: Send, exc: WebhookRejected) -> None:
    """Answer ``exc`` as JSON and close the connection: the rest of the body is never read."""
    response = JSONResponse(
        {"error": exc.message}, status_code=exc.status, headers={"Connection": "close"}
    )
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
