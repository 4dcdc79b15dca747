"""The vault's outbound I/O: the rates service over httpx, appraisal jobs over RabbitMQ (pika).

Both are built once per process (``app.main``, ``goblin.main``) and handed to the code that uses
them. Neither retries on its own beyond one reconnect to the broker.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import pika
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.pika import PikaInstrumentor
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

logger = logging.getLogger(__name__)

QUEUE = "vault.appraisals"
#: Unused job queues disappear after ten minutes, so test and demo runs leave nothing behind.
QUEUE_ARGUMENTS = {"x-expires": 600_000}


class RatesClient:
    """The appraisal-rates service.

    Args:
        http: a client whose ``base_url`` is the rates service; it is instrumented here.
    """

    def __init__(self, http: httpx.Client) -> None:
        HTTPXClientInstrumentor.instrument_client(http)
        self._http = http

    def table(self) -> dict[str, float]:
        """Galleons per unit of every kind."""
        return dict(self._get("/rates"))

    def rate(self, kind: str) -> float:
        """Galleons per unit of ``kind``."""
        return float(self._get(f"/rates/{kind}")["galleons_per_unit"])

    def insurance(self, kind: str, weight: float) -> float:
        """The premium in galleons to insure ``weight`` units of ``kind``."""
        answer = self._get(f"/insurance/{kind}", params={"weight": weight})
        return float(answer["premium_galleons"])

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return dict(response.json())


@dataclass(frozen=True)
class Job:
    """One appraisal a goblin is asked to do."""

    job_id: str
    vault_id: int

    @classmethod
    def new(cls, vault_id: int) -> Job:
        return cls(job_id=uuid.uuid4().hex, vault_id=vault_id)

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, body: bytes) -> Job:
        doc = json.loads(body)
        return cls(job_id=str(doc["job_id"]), vault_id=int(doc["vault_id"]))


def open_channel(connection: pika.BlockingConnection, queue: str) -> BlockingChannel:
    """An instrumented channel with the job queue declared (the same way on both sides).

    Only this channel is instrumented: ``PikaInstrumentor().instrument()`` wraps both pika's
    blocking and its underlying channel, and so records every publish twice.
    """
    channel = connection.channel()
    PikaInstrumentor.instrument_channel(channel)
    channel.queue_declare(queue=queue, durable=False, arguments=QUEUE_ARGUMENTS)
    return channel


class JobPublisher:
    """Publishes jobs on one connection shared by the API's worker threads.

    pika's BlockingConnection is not thread-safe, so publishing holds a lock; a connection the
    broker dropped (idle heartbeat, restart) is replaced once before the error surfaces.

    Args:
        url: ``amqp://user:password@host:port/vhost``.
        queue: the queue the goblins consume.
    """

    def __init__(self, url: str, *, queue: str = QUEUE) -> None:
        self._parameters = pika.URLParameters(url)
        self._queue = queue
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def publish(self, job: Job) -> None:
        """Send ``job``; the pika instrumentation injects the trace context into its headers."""
        with self._lock:
            try:
                self._publish(job)
            except AMQPError:
                logger.warning("broker connection lost; reconnecting once", exc_info=True)
                self._reset()
                self._publish(job)

    def close(self) -> None:
        with self._lock:
            self._reset()

    def _publish(self, job: Job) -> None:
        if self._channel is None:
            self._connection = pika.BlockingConnection(self._parameters)
            self._channel = open_channel(self._connection, self._queue)
        properties = pika.BasicProperties(content_type="application/json", headers={})
        self._channel.basic_publish(
            exchange="", routing_key=self._queue, body=job.encode(), properties=properties
        )

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except AMQPError:
                logger.debug("closing a broken broker connection failed", exc_info=True)
