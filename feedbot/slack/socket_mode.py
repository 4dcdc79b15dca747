"""Socket Mode: feedbot connects out to Slack, so Slack needs no public URL and no signing secret.

slack_sdk's Socket Mode client asks ``apps.connections.open`` for a WebSocket URL with the
app-level token, reconnects to a fresh URL when Slack sends ``disconnect`` (``refresh_requested``,
``warning``) or the connection drops, and acknowledges each envelope by its ``envelope_id``.
feedbot uses its websocket-client flavour: it notices a dropped connection at once, where the
built-in one (measured against tests/fakes/socket_mode.py) took about four ping intervals,
polling the closed socket meanwhile. bolt's handler turns every envelope into the same request
the HTTP route dispatches, so ``/feedback`` and the buttons behave alike either way.

Once across redeliveries and replicas: Slack redelivers an envelope whose acknowledgement it did
not get (a connection dropped between a command and its ack) to the next connection, which may
be this replica's or another's. Before dispatching, :class:`FeedbotSocketModeHandler` records the
request's own id (``trigger_id`` of a command or interaction, ``event_id`` of an event; the
``envelope_id`` otherwise) in the store under a unique key. The first to record it runs the
listeners; any later copy runs only the acknowledgements, so Slack hears the same answer and
stops redelivering, and nothing is done twice.
"""

from __future__ import annotations

import logging
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any

from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.request import SocketModeRequest
from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock
from feedbot.errors import ConfigError
from feedbot.retry import backoff
from feedbot.slack.app import build_app
from feedbot.store import queries

if TYPE_CHECKING:
    from feedbot.config import Settings

log = logging.getLogger(__name__)

#: ``webhook_deliveries.source`` of the requests that came over Socket Mode.
SOURCE = "slack"
#: The longest id the store keeps (``webhook_deliveries.delivery_id``).
ID_MAX = 200
#: Seconds to wait for the WebSocket to open after ``apps.connections.open`` answered.
OPEN_TIMEOUT = 10.0
#: Seconds :meth:`SocketMode.close` waits for Slack's answering close frame.
HANDSHAKE_TIMEOUT = 3.0
#: Seconds :meth:`SocketMode.close` waits for the client's threads to stop.
CLOSE_TIMEOUT = 10.0
#: Slack's answers to ``apps.connections.open`` that no retry can change.
REFUSALS = frozenset(
    {"invalid_auth", "not_authed", "not_allowed_token_type", "account_inactive", "token_revoked"}
)


def delivery_id(request: SocketModeRequest) -> str:
    """The id a redelivered copy of ``request`` shares with the first delivery.

    A slash command or interaction carries a ``trigger_id`` made for that one use, an event its
    ``event_id``; both travel unchanged in every redelivery, whatever the envelope's id then is.
    """
    payload = request.payload if isinstance(request.payload, dict) else {}
    own = payload.get("trigger_id") or payload.get("event_id") or request.envelope_id
    return f"{request.type}:{own}"[:ID_MAX]


class FeedbotSocketModeHandler(SocketModeHandler):
    """bolt's Socket Mode handler that handles each request once across replicas.

    Args:
        app: the bolt App with feedbot's listeners.
        replay: the same listeners without their lazy parts: it acknowledges a redelivered
            request the way ``app`` did, and does nothing else.
        app_token: the app-level token (``xapp-…``).
        web_client: the Web API client; ``apps.connections.open`` goes through it.
        sessions: the store, where request ids are recorded.
        clock: time source of the records.
        ping_interval: seconds between pings; a connection without pongs is replaced.
    """

    def __init__(
        self,
        *,
        app: Any,
        replay: Any,
        app_token: str,
        web_client: WebClient,
        sessions: sessionmaker[Session],
        clock: Clock,
        ping_interval: float = 10,
    ) -> None:
        super().__init__(
            app,
            app_token=app_token,
            web_client=web_client,
            logger=logging.getLogger("feedbot.slack.socket"),
            ping_interval=ping_interval,
        )
        self._replay = replay
        self._sessions = sessions
        self._clock = clock

    def handle(self, client: Any, req: SocketModeRequest) -> None:
        """Claim the request, dispatch it (or only acknowledge a copy), send the ack."""
        started = monotonic()
        # Should the store not answer, this raises before anything is acknowledged: Slack then
        # redelivers the request, maybe to a replica that reaches the database.
        first = self._claim(req)
        if not first:
            log.info(
                "slack: %s %s was delivered before; acknowledged again, not handled twice",
                req.type,
                req.envelope_id,
            )
        response = run_bolt_app(self.app if first else self._replay, req)
        send_response(client, req, response, started)

    def _claim(self, req: SocketModeRequest) -> bool:
        with self._sessions() as session:
            first = queries.claim_delivery(
                session, source=SOURCE, delivery_id=delivery_id(req), now=self._clock.now()
            )
            session.commit()
        return first


class SocketMode:
    """A running Socket Mode connection: :meth:`start` it, :meth:`close` it on shutdown.

    Args:
        handler: the handler whose client connects.
        retry_first: seconds before the first retry when Slack cannot be reached at start.
        retry_cap: the longest wait between retries.
    """

    def __init__(self, handler: Any, *, retry_first: float = 1.0, retry_cap: float = 60.0) -> None:
        self.handler = handler
        self._retry_first = retry_first
        self._retry_cap = retry_cap
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect; when Slack cannot be reached, keep trying in the background.

        Raises:
            ConfigError: Slack refused the app-level token (no retry can change that).
        """
        if self._try_connect(1):
            return
        self._thread = threading.Thread(target=self._retry, name="socket-mode", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop retrying, close the WebSocket with a close frame and stop the client's threads."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        client = self.handler.client
        client.auto_reconnect_enabled = False  # the close handshake below must not reconnect
        _close_handshake(client)
        closer = threading.Thread(target=self.handler.close, name="socket-mode-close", daemon=True)
        closer.start()
        # A connection the client was swapping in as close() began opens afterwards and keeps
        # the client's reader thread (which close() joins) running: close whatever is current
        # until the client has stopped.
        deadline = monotonic() + CLOSE_TIMEOUT
        while closer.is_alive() and monotonic() < deadline:
            closer.join(0.2)
            session = getattr(self.handler.client, "current_session", None)
            if closer.is_alive() and session is not None:
                session.close()
        log.info("slack: Socket Mode connection closed")

    def _retry(self) -> None:
        attempt = 1
        while not self._closed.wait(backoff(self._retry_first, attempt, cap=self._retry_cap)):
            attempt += 1
            try:
                if self._try_connect(attempt):
                    return
            except ConfigError as exc:
                log.error("slack: Socket Mode stopped: %s", exc)
                return

    def _try_connect(self, attempt: int) -> bool:
        client = self.handler.client
        try:
            # The client's monitor thread starts inside connect() and, finding no open socket
            # yet, would at once ask for a second URL; holding the client's own connect lock
            # until the socket is open makes the monitor wait and then find the connection up.
            with client.connect_operation_lock:
                self.handler.connect()  # apps.connections.open; the socket opens in a thread
                opened = _wait(client.is_connected, OPEN_TIMEOUT, self._closed)
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error in REFUSALS:
                raise ConfigError(
                    [f"slack.app_token: Slack refused it in apps.connections.open ({error})"]
                ) from exc
            log.warning("slack: apps.connections.open failed (%s); retrying", error or exc)
            return False
        except Exception as exc:  # connection refused, DNS, TLS: Slack out of reach for now
            log.warning(
                "slack: cannot reach Slack for Socket Mode (attempt %d: %s: %s); retrying",
                attempt,
                type(exc).__name__,
                exc,
            )
            return False
        if opened:
            log.info("slack: connected in Socket Mode")
        else:  # from here the client's monitor reconnects on its own
            log.warning("slack: the Socket Mode connection did not open yet; still trying")
        return True


def _close_handshake(client: Any) -> None:
    """Send a close frame and let the reader thread take Slack's answering one.

    The reader then ends at once; closing the socket under it instead leaves it waiting in
    ``select`` for its 10-second timeout. Best effort: a connection already gone is left alone.
    """
    session = getattr(client, "current_session", None)
    sock = getattr(session, "sock", None)
    if sock is None:
        return
    try:
        sock.send_close()
        _wait(lambda: getattr(session, "sock", None) is None, HANDSHAKE_TIMEOUT, threading.Event())
    except Exception:  # the connection went away meanwhile
        pass
    finally:
        sock.shutdown()  # the TCP connection too, which the reader's teardown leaves open


def _wait(condition: Any, timeout: float, stop: threading.Event) -> bool:
    deadline = monotonic() + timeout
    while not condition():
        if monotonic() >= deadline or stop.wait(0.01):
            return False
    return True


def socket_mode(*, settings: Settings, sessions: sessionmaker[Session], clock: Clock) -> SocketMode:
    """The Socket Mode connection for ``settings`` (not started): bolt App, replay, handler.

    Args:
        settings: validated settings with ``slack.app_token`` and ``slack.bot_token`` set.
        sessions: the store the listeners answer from and record in.
        clock: time source.
    """
    slack = settings.slack
    if not slack.app_token:
        raise ValueError("slack.app_token is not set")
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    apps = [
        build_app(
            signing_secret=slack.signing_secret or "",
            client=client,
            settings=settings,
            sessions=sessions,
            clock=clock,
            lazy=lazy,
        )
        for lazy in (True, False)
    ]
    handler = FeedbotSocketModeHandler(
        app=apps[0],
        replay=apps[1],
        app_token=slack.app_token,
        web_client=client,
        sessions=sessions,
        clock=clock,
    )
    return SocketMode(handler)
