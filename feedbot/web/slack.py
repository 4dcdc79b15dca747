"""``POST /slack/events``: Slack's slash commands and interactions, handed to the bolt App.

Every request's signature is verified (401 for forged or stale ones) before bolt parses the body,
and again by bolt before a listener runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from feedbot.runtime import Runtime
from feedbot.slack.app import build_app
from feedbot.web.schema import SLACK_OPENAPI, SLACK_RESPONSES

log = logging.getLogger(__name__)

#: Unix seconds have 10 digits until 2286; longer is no timestamp.
_STAMP_DIGITS = 12


def mount_slack(app: FastAPI, runtime: Runtime) -> None:
    """Serve bolt on ``POST /slack/events`` of ``app``."""
    from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
    from slack_sdk import WebClient
    from slack_sdk.signature import SignatureVerifier
    from starlette.concurrency import run_in_threadpool

    slack = runtime.settings.slack
    bolt = build_app(
        signing_secret=slack.signing_secret or "",
        client=WebClient(token=slack.bot_token, base_url=slack.api_url),
        settings=runtime.settings,
        sessions=runtime.sessions,
        clock=runtime.clock,
    )

    verifier = SignatureVerifier(slack.signing_secret or "")

    @app.post("/slack/events", responses=SLACK_RESPONSES, openapi_extra=SLACK_OPENAPI)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        refused = refusal(request.headers, body, verifier)
        if refused is not None:
            return refused
        try:
            bolt_request = to_bolt_request(request, body)
        except Exception as exc:  # bolt parses JSON and payload= itself and raises what it meets
            log.info("slack: unreadable request: %s: %s", type(exc).__name__, exc)
            return _error(400, "body: not a Slack request bolt can read")
        if not isinstance(bolt_request.body, dict):
            return _error(400, "body: expected a form or a JSON object")
        # The sync App must not hold the event loop: dispatch in the thread pool.
        answer = await run_in_threadpool(bolt.dispatch, bolt_request)
        return to_starlette_response(answer)


def refusal(headers: Mapping[str, str], body: bytes, verifier: Any) -> Response | None:
    """Refuse an unsigned request before bolt parses it, and what bolt would crash on (500).

    slack_sdk's verifier calls ``int()`` on the timestamp header and ``hmac.compare_digest`` on
    the signature header, which raise on a non-number and on non-ASCII text, and bolt decodes and
    parses the body before verifying it. So the headers are checked (401), the body must be UTF-8
    text (400), and the signature must match it and be at most 5 minutes old (401), all before
    bolt parses anything.

    Args:
        headers: the request headers (any case).
        body: the raw body.
        verifier: a ``slack_sdk.signature.SignatureVerifier`` with the signing secret.

    Returns:
        The refusal to answer with, or None when bolt may have the request.
    """
    stamp = headers.get("x-slack-request-timestamp")
    if stamp is not None and not (
        stamp.isascii() and stamp.strip().isdigit() and len(stamp.strip()) <= _STAMP_DIGITS
    ):
        return _error(401, "X-Slack-Request-Timestamp: expected Unix seconds")
    if not headers.get("x-slack-signature", "").isascii():
        return _error(401, "X-Slack-Signature: does not match the body")
    try:
        body.decode("utf-8")  # slack_sdk decodes before computing the signature, too
    except UnicodeDecodeError:
        return _error(400, "body: not UTF-8 text")
    if not verifier.is_valid_request(body, headers):
        return _error(401, "X-Slack-Signature: missing, stale or not matching the body")
    return None


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
