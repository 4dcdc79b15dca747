"""The Slack side of feedbot: a bolt ``App`` with feedbot's listeners.

:mod:`feedbot.web.slack` serves it on ``POST /slack/events``, :mod:`feedbot.slack.socket_mode`
over Slack's Socket Mode. Listeners
(:mod:`feedbot.slack.listeners`) stay thin: they parse, ``ack()`` within Slack's 3 seconds, and
hand slow work to lazy listeners that answer through ``response_url``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from feedbot.slack.feedback import FeedbackService
from feedbot.slack.home import HomeService
from feedbot.slack.listeners import HELP

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from sqlalchemy.orm import Session, sessionmaker

    from feedbot.clock import Clock
    from feedbot.config import Settings

log = logging.getLogger(__name__)

__all__ = ["HELP", "build_app"]


def build_app(
    *,
    signing_secret: str,
    client: WebClient,
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
    lazy: bool = True,
) -> Any:
    """A bolt App with feedbot's listeners.

    Args:
        signing_secret: Slack's signing secret; requests not signed with it get 401.
        client: the Web API client (tests point its ``base_url`` at a fake).
        settings: the validated configuration (features, services).
        sessions: the store the answers come from and button presses go to.
        clock: time source.
        lazy: False leaves out the lazy listeners: the App then only acknowledges, the way
            the full one does (Socket Mode answers a redelivered request with it).

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
    feedback = FeedbackService(sessions=sessions, settings=settings, clock=clock)
    listeners.register(
        app,
        feedback=feedback,
        sessions=sessions,
        clock=clock,
        api_url=settings.slack.api_url,
        home=HomeService(sessions=sessions, settings=settings, clock=clock),
        lazy=lazy,
    )
    return app
