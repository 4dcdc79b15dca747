"""The Slack side of feedbot: a bolt ``App`` mounted on ``POST /slack/events``.

Bolt verifies every request's signature (401 for forged or stale ones) before a listener runs.
Listeners stay thin: they parse, ``ack()`` within Slack's 3 seconds, and hand slow work off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

if TYPE_CHECKING:
    from feedbot.web import Runtime

HELP = (
    "*/feedback* — what production says about your code\n"
    "• `/feedback <service>` — the current version against the previous one\n"
    "• `/feedback <feature>` — a feature from feedbot's config\n"
    "• `/feedback help` — this text"
)


def build_app(*, signing_secret: str, token: str | None, api_url: str) -> Any:
    """A bolt App with feedbot's listeners; the WebClient points at ``api_url``."""
    from slack_bolt import App
    from slack_sdk import WebClient

    client = WebClient(token=token, base_url=api_url)
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,
        process_before_response=True,
    )

    @app.command("/feedback")
    def feedback(ack: Any, command: dict[str, Any]) -> None:
        ack(text=HELP)

    return app


def mount_slack(app: FastAPI, runtime: Runtime) -> None:
    """Serve bolt on ``POST /slack/events`` of ``app``."""
    from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
    from starlette.concurrency import run_in_threadpool

    slack = runtime.settings.slack
    bolt = build_app(
        signing_secret=slack.signing_secret or "",
        token=slack.bot_token,
        api_url=slack.api_url,
    )

    @app.post("/slack/events")
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        # The sync App must not hold the event loop: dispatch in the thread pool.
        answer = await run_in_threadpool(bolt.dispatch, to_bolt_request(request, body))
        return to_starlette_response(answer)
