"""The Slack side of feedbot: a bolt ``App`` mounted on ``POST /slack/events``.

Bolt verifies every request's signature (401 for forged or stale ones) before a listener runs.
Listeners (:mod:`feedbot.slack.listeners`) stay thin: they parse, ``ack()`` within Slack's 3
seconds, and hand slow work to lazy listeners that answer through ``response_url``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from feedbot.slack.feedback import FeedbackService
from feedbot.slack.listeners import HELP

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from sqlalchemy.orm import Session, sessionmaker

    from feedbot.clock import Clock
    from feedbot.config import Settings
    from feedbot.web import Runtime

__all__ = ["HELP", "build_app", "mount_slack"]


def build_app(
    *,
    signing_secret: str,
    client: WebClient,
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> Any:
    """A bolt App with feedbot's listeners.

    Args:
        signing_secret: Slack's signing secret; requests not signed with it get 401.
        client: the Web API client (tests point its ``base_url`` at a fake).
        settings: the validated configuration (features, services).
        sessions: the store the answers come from and button presses go to.
        clock: time source.

    Returns:
        A ``slack_bolt.App``.
    """
    from slack_bolt import App

    from feedbot.slack import listeners

    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,
        # Acknowledge only after the ack listener returned; lazy listeners run in threads.
        process_before_response=True,
    )
    feedback = FeedbackService(sessions=sessions, settings=settings)
    listeners.register(app, feedback=feedback, sessions=sessions, clock=clock)
    return app


def mount_slack(app: FastAPI, runtime: Runtime) -> None:
    """Serve bolt on ``POST /slack/events`` of ``app``."""
    from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
    from slack_sdk import WebClient
    from starlette.concurrency import run_in_threadpool

    slack = runtime.settings.slack
    bolt = build_app(
        signing_secret=slack.signing_secret or "",
        client=WebClient(token=slack.bot_token, base_url=slack.api_url),
        settings=runtime.settings,
        sessions=runtime.sessions,
        clock=runtime.clock,
    )

    @app.post("/slack/events")
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        # The sync App must not hold the event loop: dispatch in the thread pool.
        answer = await run_in_threadpool(bolt.dispatch, to_bolt_request(request, body))
        return to_starlette_response(answer)
