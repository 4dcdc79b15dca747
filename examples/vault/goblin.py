"""The goblin: a worker that takes appraisal jobs off RabbitMQ and records their results.

``python -m examples.vault.goblin --version 2.0.0`` consumes ``VAULT_QUEUE`` (default
``vault.appraisals``) on ``VAULT_AMQP_URL``. The pika instrumentation continues the trace the
API started when it published the job, so one trace runs from the HTTP request to this worker.
Without a broker the API does the job itself (:func:`examples.vault.jobs.work`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Sequence
from typing import Any, NoReturn

import httpx
import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties
from sqlalchemy.orm import Session, sessionmaker

from examples.vault import clients, db, jobs, lifecycle, telemetry, versions
from examples.vault.clients import Job, RatesClient
from examples.vault.versions import Release

SERVICE = "vault-goblin"
logger = logging.getLogger("examples.vault.goblin")


class Goblin:
    """The consumer callback: one job per message, acknowledged once recorded.

    A job that fails is rejected without requeueing (it would fail again); the error is on the
    span.
    """

    def __init__(
        self, *, sessions: sessionmaker[Session], rates: RatesClient, release: Release
    ) -> None:
        self._sessions = sessions
        self._rates = rates
        self._release = release

    def __call__(
        self,
        channel: BlockingChannel,
        method: Basic.Deliver,
        _properties: BasicProperties,
        body: bytes,
    ) -> None:
        try:
            with self._sessions() as session:
                jobs.work(session, self._rates, self._release, Job.decode(body), by=SERVICE)
        except Exception:
            logger.exception("job %r failed", body[:200])
            channel.basic_nack(method.delivery_tag, requeue=False)
            return
        channel.basic_ack(method.delivery_tag)


def _stop(*_args: Any) -> NoReturn:
    raise SystemExit(0)


def consume(url: str, queue: str, goblin: Goblin) -> None:
    """Consume ``queue`` until SIGTERM or Ctrl-C, then close the connection."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = clients.open_channel(connection, queue)
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(queue=queue, on_message_callback=goblin)
        signal.signal(signal.SIGTERM, _stop)
        lifecycle.mark_ready()
        channel.start_consuming()
    except KeyboardInterrupt:
        pass
    finally:
        if connection.is_open:
            connection.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one goblin for ``--version`` against ``VAULT_AMQP_URL`` and ``VAULT_DATABASE_URL``."""
    parser = argparse.ArgumentParser(prog="python -m examples.vault.goblin")
    parser.add_argument("--version", help="1.0.0 or 2.0.0 (default: $VAULT_VERSION or 1.0.0)")
    parser.add_argument("--rates-url", default=os.environ.get("VAULT_RATES_URL"))
    args = parser.parse_args(argv)
    url = os.environ.get("VAULT_AMQP_URL")
    if not url or not args.rates_url:
        parser.error("VAULT_AMQP_URL and --rates-url (or VAULT_RATES_URL) are required")
    logging.basicConfig(level=logging.WARNING)
    version = versions.from_arguments(parser, args.version)
    provider = telemetry.configure(SERVICE, version)
    lifecycle.watch_parent()
    engine = db.make_engine(db.database_url())
    rates = RatesClient(httpx.Client(base_url=args.rates_url, timeout=10))
    goblin = Goblin(sessions=db.make_sessions(engine), rates=rates, release=versions.load(version))
    try:
        consume(url, os.environ.get("VAULT_QUEUE", clients.QUEUE), goblin)
    finally:
        rates.close()
        engine.dispose()
        provider.shutdown()


if __name__ == "__main__":
    main()
