"""The appraisal-rates service: a second, tiny FastAPI app run as its own process.

It stands in for the external pricing API the vault calls over HTTP: galleons per unit of each
kind of item, and insurance premiums (slow, as insurers are). ``python -m examples.vault.rates
--port 8001`` runs it; it reports its own spans as ``vault-rates``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from examples.vault import lifecycle, telemetry

SERVICE = "vault-rates"
#: The rates service is not redeployed with the vault: one version throughout.
VERSION = "1.0.0"
GALLEONS_PER_UNIT = {"gold": 5.0, "silver": 0.3, "jewel": 12.0, "artifact": 40.0}
INSURANCE_LATENCY_S = 0.010


def create_app(*, on_shutdown: Callable[[], Any] | None = None) -> FastAPI:
    """The rates API: ``/rates``, ``/rates/{kind}``, ``/insurance/{kind}``, ``/healthz``.

    Args:
        on_shutdown: called when the server stops (flushes the spans).
    """
    lifespan = lifecycle.closing_lifespan(on_shutdown) if on_shutdown else None
    app = FastAPI(title="appraisal rates", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/rates")
    def rates() -> dict[str, float]:
        return GALLEONS_PER_UNIT

    @app.get("/rates/{kind}")
    def rate(kind: str) -> dict[str, float | str]:
        return {"kind": kind, "galleons_per_unit": _rate(kind)}

    @app.get("/insurance/{kind}")
    async def insurance(kind: str, weight: float) -> dict[str, float | str]:
        await asyncio.sleep(INSURANCE_LATENCY_S)
        return {"kind": kind, "premium_galleons": round(_rate(kind) * weight * 0.02, 4)}

    return app


def _rate(kind: str) -> float:
    try:
        return GALLEONS_PER_UNIT[kind]
    except KeyError:
        raise HTTPException(404, f"kind {kind!r}: no rate") from None


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the rates API on ``--host``:``--port`` until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m examples.vault.rates")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    provider = telemetry.configure(SERVICE, VERSION)
    app = create_app(on_shutdown=provider.shutdown)
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz", exclude_spans=["receive", "send"]
    )
    lifecycle.watch_parent()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
