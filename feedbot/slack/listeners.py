"""Bolt listeners: ``/feedback``, the buttons of check replies, the App Home. Thin by design.

Each one acknowledges first (Slack wants an answer within 3 seconds) and does the rest in a bolt
lazy listener, which runs in a worker thread and answers through the request's ``response_url``.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock
from feedbot.digest.blocks import (
    ACTION_DETAILS,
    ACTION_EXPECTED,
    ACTION_MUTE,
    ACTION_PAGE,
    ACTION_TRACES,
    Rendered,
    details,
)
from feedbot.digest.home import ACTION_OPEN
from feedbot.digest.text import release_title
from feedbot.durations import format_duration, parse_duration
from feedbot.releases.owners import USER_ID
from feedbot.slack.feedback import FeedbackService, parse
from feedbot.slack.home import HomeService
from feedbot.store import acknowledgements as state
from feedbot.store.models import Check, Release

log = logging.getLogger(__name__)

HELP = (
    "*/feedback* — what production says about your code\n"
    "• `/feedback <service>` — the newest checked version against the previous one\n"
    "• `/feedback <service>@<version>` — one version of a service\n"
    "• `/feedback <feature>` — a feature from feedbot's config\n"
    "• `/feedback <function | file | route>` — who calls it, how often, its baseline, errors,\n"
    "  the releases that changed it and where it ran (`/feedback GET /vaults/{id}`)\n"
    "• `/feedback meeting` — the feedback meeting's agenda: what reached production lately\n"
    "• add `--share` to post the answer in the channel\n"
    "• `/feedback help` — this text"
)
EXPECTED_PATTERN = re.compile(rf"^{ACTION_EXPECTED}(:\d+)?$")
#: Column sizes of what a button press stores (feedbot.store.models), and the longest mute.
KEY_MAX, SERVICE_MAX, USER_MAX = 1000, 200, 100
MUTE_MAX = timedelta(days=90)
#: Where Slack's ``response_url`` points (commercial and GovSlack); see :func:`answerable`.
RESPONSE_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})


def register(
    app: Any,
    *,
    feedback: FeedbackService,
    sessions: sessionmaker[Session],
    clock: Clock,
    api_url: str,
    home: HomeService | None = None,
    lazy: bool = True,
) -> None:
    """Add feedbot's listeners to a bolt ``App``.

    Args:
        app: the bolt App.
        feedback: answers ``/feedback``.
        sessions: the store, where button presses are recorded.
        clock: time source for the records.
        api_url: the Slack Web API base URL; a ``response_url`` on its origin is answered too.
        home: builds the Home tab published on ``app_home_opened`` (and after a mute pressed
            there); without it the event is only acknowledged.
        lazy: False registers the acknowledgements alone (for a request handled before).
    """
    buttons = _Buttons(sessions, clock, api_url, home)

    def then(*work: Any) -> list[Any]:
        return list(work) if lazy else []

    app.command("/feedback")(ack=_ack_command, lazy=then(_answerer(feedback, api_url)))
    app.action(EXPECTED_PATTERN)(ack=_ack, lazy=then(buttons.expected))
    app.action(ACTION_MUTE)(ack=_ack, lazy=then(buttons.mute))
    app.action(ACTION_TRACES)(ack=_ack, lazy=then(buttons.traces))
    app.action(ACTION_DETAILS)(ack=_ack, lazy=then(buttons.details))
    # "Open" is a URL button: Slack opens the link; the press only needs its acknowledgement.
    app.action(ACTION_OPEN)(ack=_ack, lazy=[])
    app.action(ACTION_PAGE)(ack=_ack, lazy=[])
    publisher = [_home_publisher(home)] if home is not None else []
    app.event("app_home_opened")(ack=_ack, lazy=then(*publisher))


def _home_publisher(home: HomeService) -> Any:
    def publish(event: dict[str, Any], client: Any) -> None:
        user = event.get("user")
        if event.get("tab") != "home" or not isinstance(user, str) or not USER_ID.match(user):
            return  # the Messages tab, or no person to publish for
        publish_home(home, client, user)

    return publish


def publish_home(home: HomeService, client: Any, user_id: str) -> None:
    """Publish the Home tab of ``user_id`` now; a failure is logged (the next open retries).

    Args:
        home: builds the view.
        client: the bolt App's ``WebClient``.
        user_id: the person.
    """
    try:
        client.views_publish(user_id=user_id, view=home.view(user_id))
    except Exception:
        log.exception("could not publish the home tab of %s", user_id)


def _ack(ack: Any) -> None:
    ack()


def _ack_command(ack: Any, command: dict[str, Any]) -> None:
    parsed = parse(str(command.get("text", "")))
    if parsed.name is None:
        ack(text=HELP)
    else:
        ack()


def answerable(response_url: object, api_url: str) -> bool:
    """Whether feedbot may POST its answer to a request's ``response_url``.

    The URL arrives in the request body. Signed or not, feedbot only ever sends to Slack's own
    hooks host (https) or to the configured API's origin (a Slack-compatible fake in tests), so a
    request can never make feedbot call an address of its choosing.

    Args:
        response_url: the ``response_url`` of the command or interaction, as received.
        api_url: the configured Slack Web API base URL.
    """
    if not isinstance(response_url, str):
        return False
    try:
        url, api = urlsplit(response_url), urlsplit(api_url)
        if url.username is not None or url.password is not None:
            return False
        if url.scheme == "https" and url.hostname in RESPONSE_HOSTS and url.port in (None, 443):
            return True
        origin = (url.scheme, url.hostname, url.port)
        return bool(url.hostname) and origin == (api.scheme, api.hostname, api.port)
    except ValueError:  # a port that is not a number, a malformed IPv6 host
        return False


def _answerer(feedback: FeedbackService, api_url: str) -> Any:
    def answer(command: dict[str, Any], respond: Any) -> None:
        parsed = parse(str(command.get("text", "")))
        if parsed.name is None:
            return  # help was the acknowledgement itself
        if not answerable(command.get("response_url"), api_url):
            log.warning("/feedback: not answering to response_url %r", command.get("response_url"))
            return
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

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        api_url: str,
        home: HomeService | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._api_url = api_url
        self._home = home

    def expected(self, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        """ "Expected": the findings a story tells are not raised again for this release.

        The value is ``<release id>|<finding key>``, one key a line: a story told at a route
        carries every alarm it folds in (the route, its handler, the new exception).
        """
        release_id, _, joined = str(action.get("value", "")).partition("|")
        keys = [k for k in joined.split("\n") if k]
        # str.isdigit() is also true of "²" and of numbers no database column holds.
        number = release_id.isascii() and release_id.isdigit() and len(release_id) <= 18
        storable = bool(keys) and all(_storable(k, KEY_MAX) for k in keys)
        if not number or not storable or not _storable(_user(body), USER_MAX):
            log.warning("ignored an 'expected' button with value %r", action.get("value"))
            return
        if not answerable(body.get("response_url"), self._api_url):
            log.warning("ignored a button press with response_url %r", body.get("response_url"))
            return
        with self._sessions() as session:
            release = session.get(Release, int(release_id))
            if release is None:
                return
            for key in keys:
                state.acknowledge(
                    session,
                    release_id=release.id,
                    finding_key=key,
                    user_id=_user(body),
                    now=self._clock.now(),
                )
            session.commit()
            what = f"{release.service} {release.version}"
        kind, _, rest = keys[0].partition("|")
        text = f"Noted: {kind.replace('_', ' ')} on {rest.split('|')[0] or 'the release'} "
        more = f" (and {len(keys) - 1} related)" if len(keys) > 1 else ""
        respond(
            text=text + f"is expected{more}; I won't raise it again for {what}.",
            response_type="ephemeral",
            replace_original=False,
        )

    def details(self, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        """ "Details": the evidence behind a check's story, to the presser alone."""
        value = str(action.get("value", ""))
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            log.warning("ignored a 'details' button with value %r", action.get("value"))
            return
        if not answerable(body.get("response_url"), self._api_url):
            log.warning("ignored a button press with response_url %r", body.get("response_url"))
            return
        with self._sessions() as session:
            check = session.get(Check, int(value))
            report = (check.result or {}).get("report") if check is not None else None
            if check is None or not isinstance(report, dict):
                return
            offset = format_duration(timedelta(seconds=check.offset_seconds))
            heading = f"+{offset} check of {release_title(check.release)}"
        rendered = details(report, heading)
        respond(
            text=rendered.text,
            blocks=list(rendered.blocks),
            response_type="ephemeral",
            replace_original=False,
        )

    def mute(
        self, body: dict[str, Any], action: dict[str, Any], respond: Any, client: Any = None
    ) -> None:
        """Mute the service's check replies and broadcasts for a while.

        Pressed in a message, the presser alone is told; pressed in the Home tab (which has no
        ``response_url``), the tab is published again, showing the mute.
        """
        service, _, span_text = str(action.get("value", "")).partition("|")
        if not _storable(service, SERVICE_MAX) or not _storable(_user(body), USER_MAX):
            log.warning("ignored a 'mute' button with value %r", action.get("value"))
            return
        from_home = _from_home(body) and self._home is not None
        if not from_home and not answerable(body.get("response_url"), self._api_url):
            log.warning("ignored a button press with response_url %r", body.get("response_url"))
            return
        try:
            span = min(parse_duration(span_text or "24h"), MUTE_MAX)
        except (ValueError, OverflowError):  # "99999999999w" overflows timedelta
            span = timedelta(hours=24)
        with self._sessions() as session:
            row = state.mute(
                session, service=service, span=span, user_id=_user(body), now=self._clock.now()
            )
            session.commit()
            until = row.until
        if from_home and self._home is not None:
            if client is not None and USER_ID.match(_user(body)):
                publish_home(self._home, client, _user(body))
            return
        respond(
            text=f"Muted {service} until {until:%b %d %H:%M} UTC: no check replies till then.",
            response_type="ephemeral",
            replace_original=False,
        )

    def traces(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A URL button: Slack opens the link itself; the press is only logged."""
        log.info("%s opened trace %s", _user(body), action.get("value"))


def _from_home(body: dict[str, Any]) -> bool:
    """Whether a button was pressed in the App Home's Home tab."""
    view = body.get("view")
    return isinstance(view, dict) and view.get("type") == "home"


def _user(body: dict[str, Any]) -> str:
    user = body.get("user")
    return str((user if isinstance(user, dict) else {}).get("id") or "unknown")


def _storable(value: str, max_length: int) -> bool:
    """Non-empty, fits its column, and no NUL or lone surrogate (which no database stores)."""
    if not value or len(value) > max_length or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
