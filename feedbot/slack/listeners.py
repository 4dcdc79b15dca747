"""Bolt listeners: ``/feedback`` and the buttons of check replies. Thin by design.

Each one acknowledges first (Slack wants an answer within 3 seconds) and does the rest in a bolt
lazy listener, which runs in a worker thread and answers through the request's ``response_url``.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock
from feedbot.config import parse_duration
from feedbot.digest.blocks import ACTION_EXPECTED, ACTION_MUTE, ACTION_TRACES, Rendered
from feedbot.slack import state
from feedbot.slack.feedback import FeedbackService, parse
from feedbot.store.models import Release

log = logging.getLogger(__name__)

HELP = (
    "*/feedback* — what production says about your code\n"
    "• `/feedback <service>` — the newest checked version against the previous one\n"
    "• `/feedback <service>@<version>` — one version of a service\n"
    "• `/feedback <feature>` — a feature from feedbot's config\n"
    "• add `--share` to post the answer in the channel\n"
    "• `/feedback help` — this text"
)
EXPECTED_PATTERN = re.compile(rf"^{ACTION_EXPECTED}(:\d+)?$")


def register(
    app: Any, *, feedback: FeedbackService, sessions: sessionmaker[Session], clock: Clock
) -> None:
    """Add feedbot's listeners to a bolt ``App``.

    Args:
        app: the bolt App.
        feedback: answers ``/feedback``.
        sessions: the store, where button presses are recorded.
        clock: time source for the records.
    """
    app.command("/feedback")(ack=_ack_command, lazy=[_answerer(feedback)])
    buttons = _Buttons(sessions, clock)
    app.action(EXPECTED_PATTERN)(ack=_ack, lazy=[buttons.expected])
    app.action(ACTION_MUTE)(ack=_ack, lazy=[buttons.mute])
    app.action(ACTION_TRACES)(ack=_ack, lazy=[buttons.traces])


def _ack(ack: Any) -> None:
    ack()


def _ack_command(ack: Any, command: dict[str, Any]) -> None:
    parsed = parse(str(command.get("text", "")))
    if parsed.name is None:
        ack(text=HELP)
    else:
        ack()


def _answerer(feedback: FeedbackService) -> Any:
    def answer(command: dict[str, Any], respond: Any) -> None:
        parsed = parse(str(command.get("text", "")))
        if parsed.name is None:
            return  # help was the acknowledgement itself
        try:
            rendered = feedback.answer(parsed)
        except Exception:
            log.exception("/feedback %r failed", command.get("text"))
            rendered = Rendered(text="Sorry, that failed on my side; the logs say why.", blocks=())
        kind = "in_channel" if parsed.share else "ephemeral"
        respond(text=rendered.text, blocks=list(rendered.blocks), response_type=kind)

    return answer


class _Buttons:
    """Button presses, recorded in the store and confirmed to the presser alone."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def expected(self, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        """ "Expected": the finding is not raised again for this release."""
        release_id, _, key = str(action.get("value", "")).partition("|")
        if not release_id.isdigit() or not key:
            log.warning("ignored an 'expected' button with value %r", action.get("value"))
            return
        with self._sessions() as session:
            release = session.get(Release, int(release_id))
            if release is None:
                return
            state.acknowledge(
                session,
                release_id=release.id,
                finding_key=key,
                user_id=_user(body),
                now=self._clock.now(),
            )
            session.commit()
            what = f"{release.service} {release.version}"
        kind, _, rest = key.partition("|")
        text = f"Noted: {kind.replace('_', ' ')} on {rest.split('|')[0] or 'the release'} "
        respond(
            text=text + f"is expected; I won't raise it again for {what}.",
            response_type="ephemeral",
            replace_original=False,
        )

    def mute(self, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        """Mute the service's check replies and broadcasts for a while."""
        service, _, span_text = str(action.get("value", "")).partition("|")
        try:
            span = parse_duration(span_text or "24h")
        except ValueError:
            span = timedelta(hours=24)
        with self._sessions() as session:
            row = state.mute(
                session, service=service, span=span, user_id=_user(body), now=self._clock.now()
            )
            session.commit()
            until = row.until
        respond(
            text=f"Muted {service} until {until:%b %d %H:%M} UTC: no check replies till then.",
            response_type="ephemeral",
            replace_original=False,
        )

    def traces(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A URL button: Slack opens the link itself; the press is only logged."""
        log.info("%s opened trace %s", _user(body), action.get("value"))


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "unknown")
