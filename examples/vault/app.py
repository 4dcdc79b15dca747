"""The vault API (FastAPI): open vaults, deposit items, appraise, list; one version per process.

``python -m examples.vault.app --version 2.0.0 --port 8000 --rates-url http://127.0.0.1:8001``
serves it. The routes are the same in both versions; what they call comes from the version's
:class:`~examples.vault.versions.Release`. With ``VAULT_AMQP_URL`` set, ``POST
/vaults/{id}/appraisals`` queues a job for a goblin; without it the API does the job itself after
answering.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from examples.vault import db, domain, jobs, lifecycle, telemetry, versions
from examples.vault.clients import QUEUE, Job, JobPublisher, RatesClient
from examples.vault.domain import Kind, NewItem, VaultError
from examples.vault.versions import Release

SERVICE = "vault-service"


class OpenVault(BaseModel):
    owner: str = Field(min_length=1, max_length=200)


class Deposit(BaseModel):
    name: str = Field(min_length=1, max_length=150)
    kind: Kind
    weight: float = Field(gt=0, le=10_000)


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


@dataclass(frozen=True)
class Services:
    """What the routes use, built by :func:`main` (or a test) and handed to :func:`create_app`."""

    release: Release
    sessions: sessionmaker[Session]
    rates: RatesClient
    publisher: JobPublisher | None = None


def create_app(services: Services, *, on_shutdown: Callable[[], Any] | None = None) -> FastAPI:
    """The vault API over ``services``; ``on_shutdown`` runs when the server stops."""
    lifespan = lifecycle.closing_lifespan(on_shutdown) if on_shutdown else None
    app = FastAPI(title="Gringotts vaults", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.services = services

    @app.exception_handler(VaultError)
    def vault_error(_request: Request, exc: VaultError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, exc.status_code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": services.release.version}

    @app.post("/vaults", status_code=201)
    def open_vault(body: OpenVault, s: SessionDep) -> dict[str, Any]:
        vault = domain.open_vault(s, body.owner)
        return {"id": vault.id, "number": vault.number, "owner": vault.owner}

    @app.get("/vaults")
    def list_vaults(s: SessionDep) -> list[dict[str, Any]]:
        return [asdict(v) for v in domain.list_vaults(s)]

    _add_item_routes(app, services)
    _add_appraisal_routes(app, services)
    return app


def _add_item_routes(app: FastAPI, services: Services) -> None:
    @app.post("/vaults/{vault_id}/items", status_code=201)
    def deposit(vault_id: int, body: Deposit, s: SessionDep) -> dict[str, Any]:
        item = NewItem(name=body.name, kind=body.kind, weight=body.weight)
        stored = services.release.deposits.deposit(s, services.rates, vault_id, item)
        return {"id": stored.id, "name": stored.name, "value_galleons": stored.value_galleons}


def _add_appraisal_routes(app: FastAPI, services: Services) -> None:
    @app.get("/vaults/{vault_id}/appraisal")
    def appraise(vault_id: int, s: SessionDep) -> dict[str, Any]:
        return asdict(services.release.appraisal.appraise(s, services.rates, vault_id))

    @app.post("/vaults/{vault_id}/appraisals", status_code=202)
    def queue_appraisal(vault_id: int, s: SessionDep, later: BackgroundTasks) -> dict[str, Any]:
        domain.find_vault(s, vault_id)
        job = Job.new(vault_id)
        if services.publisher is not None:
            services.publisher.publish(job)
        else:
            later.add_task(_work_inline, services, job)
        return {"job_id": job.job_id, "queued": services.publisher is not None}

    @app.post("/admin/vaults/{vault_id}/recount")
    def recount(vault_id: int, s: SessionDep) -> dict[str, Any]:
        domain.find_vault(s, vault_id)
        galleons = services.release.appraisal.recount_galleons(s, vault_id)
        return {"vault_id": vault_id, "galleons": galleons}


def _work_inline(services: Services, job: Job) -> None:
    with services.sessions() as session:
        jobs.work(session, services.rates, services.release, job, by=SERVICE)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the API for ``--version`` on ``--host``:``--port`` until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m examples.vault.app")
    parser.add_argument("--version", help="1.0.0 or 2.0.0 (default: $VAULT_VERSION or 1.0.0)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--rates-url", default=os.environ.get("VAULT_RATES_URL"))
    args = parser.parse_args(argv)
    if not args.rates_url:
        parser.error("--rates-url (or VAULT_RATES_URL) is required")
    version = versions.from_arguments(parser, args.version)
    provider = telemetry.configure(SERVICE, version)
    services = _build_services(version, args.rates_url)
    app = create_app(services, on_shutdown=lambda: _close(services, provider.shutdown))
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz", exclude_spans=["receive", "send"]
    )
    lifecycle.watch_parent()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _build_services(version: str, rates_url: str) -> Services:
    amqp_url = os.environ.get("VAULT_AMQP_URL")
    publisher = None
    if amqp_url:
        publisher = JobPublisher(amqp_url, queue=os.environ.get("VAULT_QUEUE", QUEUE))
    engine = db.make_engine(db.database_url())
    return Services(
        release=versions.load(version),
        sessions=db.make_sessions(engine),
        rates=RatesClient(httpx.Client(base_url=rates_url, timeout=10)),
        publisher=publisher,
    )


def _close(services: Services, flush: Callable[[], Any]) -> None:
    if services.publisher is not None:
        services.publisher.close()
    services.rates.close()
    flush()


if __name__ == "__main__":
    main()
