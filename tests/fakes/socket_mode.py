"""Slack's side of Socket Mode on a loopback WebSocket server (websockets), for tests.

Attach it to a :class:`~tests.fakes.slack_api.FakeSlackAPI` (``api.socket_mode = server``):
``apps.connections.open`` with an ``xapp-`` token then answers the URL of a new connection here,
each URL good for one connection, the way Slack's tickets are. The protocol is Slack's:

* on connect the server sends ``{"type": "hello", "num_connections": n, "debug_info": {...},
  "connection_info": {"app_id": ...}}``;
* :meth:`deliver` sends an envelope ``{"envelope_id", "type", "payload",
  "accepts_response_payload"}`` (``events_api`` also ``retry_attempt``/``retry_reason``) to one
  open connection, round robin across connections (several replicas);
* the client acknowledges with ``{"envelope_id": ..., "payload": {...}}`` (the payload only when
  it has an answer, e.g. a slash command's text); acknowledged envelopes are done;
* :meth:`disconnect` sends ``{"type": "disconnect", "reason": "refresh_requested" | "warning"}``,
  after which the client opens a new connection; the fake closes the old one a moment later
  unless the client did;
* an envelope not acknowledged when its connection ends (:meth:`drop`, :meth:`lose_next_ack`)
  is delivered again to the next open connection, with ``retry_attempt`` one higher. Slack does
  not document whether a redelivered envelope keeps its ``envelope_id``; the fake gives it a new
  one (the harder case), so a client must recognise the request by its payload.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

JSONDict = dict[str, Any]
APP_ID = "A0FEEDBOT"


@dataclass
class Envelope:
    """One delivery of a request: what was sent, where, and its acknowledgement."""

    envelope_id: str
    type: str
    payload: JSONDict
    connection: int
    retry_attempt: int = 0
    acked: bool = False
    ack_payload: JSONDict | None = None
    #: Its connection ended before the acknowledgement: a redelivery took its place.
    redelivered: bool = False

    def message(self) -> JSONDict:
        body: JSONDict = {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.type != "events_api",
        }
        if self.type == "events_api":
            body["retry_attempt"] = self.retry_attempt
            body["retry_reason"] = "timeout" if self.retry_attempt else ""
        return body


@dataclass
class Link:
    """One client connection (its number counts from 1 in the order they opened)."""

    number: int
    connection: ServerConnection
    open: bool = True
    close_code: int | None = None
    received: list[JSONDict] = field(default_factory=list)


class FakeSocketModeServer:
    """Slack's Socket Mode endpoint on 127.0.0.1; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._tickets: set[str] = set()
        self._ticket_numbers = itertools.count(1)
        self._envelope_numbers = itertools.count(1)
        self._links: list[Link] = []
        self._envelopes: list[Envelope] = []
        self._waiting: list[Envelope] = []  # redeliveries with no open connection to go to
        self._lose_acks = 0
        self._turn = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSocketModeServer:
        """Listen on a free loopback port in a daemon thread."""
        self._server = serve(self._serve, "127.0.0.1", 0, compression=None, ping_interval=None)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSocketModeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def new_url(self) -> str:
        """A URL for one new connection (what ``apps.connections.open`` answers)."""
        if self._server is None:
            raise RuntimeError("FakeSocketModeServer is not started")
        ticket = f"ticket-{next(self._ticket_numbers)}"
        with self._lock:
            self._tickets.add(ticket)
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket={ticket}&app_id={APP_ID}"

    # -- what Slack does ---------------------------------------------------------------------

    def deliver(self, type: str, payload: JSONDict, *, to: int | None = None) -> Envelope:
        """Send a request to one open connection (``to``: its number; else round robin)."""
        with self._lock:
            link = self._link(to)
            envelope = Envelope(self._envelope_id(), type, payload, link.number)
            self._envelopes.append(envelope)
        self._send(link, envelope.message())
        return envelope

    def disconnect(self, number: int, reason: str = "refresh_requested") -> None:
        """Ask connection ``number`` to reconnect; close it a moment later if the client has not."""
        link = self.link(number)
        self._send(link, {"type": "disconnect", "reason": reason,
                          "debug_info": {"host": "applink-fake"}})  # fmt: skip

        def close_later() -> None:
            time.sleep(2)
            if link.open:
                link.connection.close()

        threading.Thread(target=close_later, daemon=True).start()

    def drop(self, number: int) -> None:
        """Cut connection ``number`` without a close frame, the way a network failure does."""
        link = self.link(number)
        try:
            link.connection.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def lose_next_ack(self) -> None:
        """The next acknowledgement is lost in transit: its connection drops before it arrives."""
        with self._lock:
            self._lose_acks += 1

    # -- inspection --------------------------------------------------------------------------

    @property
    def links(self) -> list[Link]:
        """Every connection ever opened, oldest first."""
        with self._lock:
            return list(self._links)

    def link(self, number: int) -> Link:
        """Connection ``number`` (1 is the first ever opened)."""
        with self._lock:
            return self._links[number - 1]

    def open_links(self) -> list[Link]:
        """The connections open now."""
        return [link for link in self.links if link.open]

    def envelopes_for(self, payload_key: str, value: Any) -> list[Envelope]:
        """Every delivery (first and redeliveries) of a request whose payload has ``key: value``."""
        with self._lock:
            return [e for e in self._envelopes if e.payload.get(payload_key) == value]

    def wait_for(self, predicate: Any, timeout: float = 15, what: str = "it") -> None:
        """Wait until ``predicate()`` is true (checked whenever the server sees something)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"Socket Mode fake: waited {timeout}s for {what}")
                self._lock.wait(min(left, 0.1))

    def wait_open(self, count: int, timeout: float = 15) -> None:
        """Wait until ``count`` connections are open and have been sent ``hello``."""
        self.wait_for(
            lambda: sum(1 for link in self._links if link.open) >= count,
            timeout,
            f"{count} open connection(s)",
        )

    # -- serving (server threads) ------------------------------------------------------------

    def _serve(self, connection: ServerConnection) -> None:
        ticket = _ticket_of(connection.request.path if connection.request else "")
        with self._lock:
            if ticket not in self._tickets:
                connection.close(code=4001, reason="invalid ticket")
                return
            self._tickets.discard(ticket)
            link = Link(len(self._links) + 1, connection)
            self._links.append(link)
            hello = {"type": "hello", "num_connections": sum(1 for x in self._links if x.open),
                     "debug_info": {"host": "applink-fake", "build_number": 1,
                                    "approximate_connection_time": 18060},
                     "connection_info": {"app_id": APP_ID}}  # fmt: skip
            waiting, self._waiting = self._waiting, []
            self._lock.notify_all()
        self._send(link, hello)
        for envelope in waiting:
            self._redeliver(envelope, link)
        try:
            for raw in connection:
                self._received(link, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self._closed(link)

    def _received(self, link: Link, message: JSONDict) -> None:
        with self._lock:
            link.received.append(message)
            if self._lose_acks and "envelope_id" in message:
                self._lose_acks -= 1
                lost = True
            else:
                lost = False
                for envelope in self._envelopes:
                    if envelope.envelope_id == message.get("envelope_id"):
                        envelope.acked = True
                        envelope.ack_payload = message.get("payload")
            self._lock.notify_all()
        if lost:
            self.drop(link.number)

    def _closed(self, link: Link) -> None:
        with self._lock:
            link.open = False
            link.close_code = link.connection.close_code
            pending = [
                e
                for e in self._envelopes
                if e.connection == link.number and not e.acked and not e.redelivered
            ]
            for envelope in pending:
                envelope.redelivered = True
            self._lock.notify_all()
        for envelope in pending:
            target = self._any_open()
            if target is None:
                with self._lock:
                    self._waiting.append(envelope)
            else:
                self._redeliver(envelope, target)

    def _redeliver(self, old: Envelope, link: Link) -> None:
        with self._lock:
            envelope = Envelope(
                self._envelope_id(), old.type, old.payload, link.number, old.retry_attempt + 1
            )
            self._envelopes.append(envelope)
        self._send(link, envelope.message())

    def _send(self, link: Link, message: JSONDict) -> None:
        try:
            link.connection.send(json.dumps(message))
        except ConnectionClosed:
            pass  # _closed redelivers what this connection did not acknowledge

    def _link(self, number: int | None) -> Link:
        """The connection to send to (lock held)."""
        if number is not None:
            return self._links[number - 1]
        candidates = [link for link in self._links if link.open]
        if not candidates:
            raise AssertionError("Socket Mode fake: no open connection to deliver to")
        self._turn += 1
        return candidates[self._turn % len(candidates)]

    def _any_open(self) -> Link | None:
        with self._lock:
            candidates = [link for link in self._links if link.open]
            return candidates[-1] if candidates else None

    def _envelope_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._envelope_numbers):012d}"


def _ticket_of(path: str) -> str:
    _, _, query = path.partition("?")
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "ticket":
            return value
    return ""


@pytest.fixture
def socket_mode_server() -> Iterator[FakeSocketModeServer]:
    """A started :class:`FakeSocketModeServer`, stopped after the test."""
    with FakeSocketModeServer() as server:
        yield server
