"""``feedbot report`` run in-process on SDK spans, as the report tests run it: a deploy document,
the spans as a trace file or sent to an embedded store, and the command's exit code and output."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from opentelemetry.trace import SpanKind, set_span_in_context

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.commands import report as report_cli
from feedbot.spans.otlp import PROTOBUF
from feedbot.store.db import make_engine, make_sessions, migrate
from tests.fakes.sdk_spans import T0, json_line, protobuf

#: The release the report tests deploy.
DEPLOY: dict[str, Any] = {"service": "checkout", "version": "1.1", "environment": "production"}


def deploy_file(tmp_path: Path, **over: object) -> Path:
    """``deploy.json`` for :data:`DEPLOY` at ``T0``; ``over`` replaces fields (None drops one)."""
    doc = {**DEPLOY, "deployed_at": T0.isoformat(), **over}
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps({k: v for k, v in doc.items() if v is not None}))
    return path


def trace_file(tmp_path: Path, spans: list[Any]) -> list[str]:
    """``--traces`` of a file holding ``spans`` as one OTLP/JSON line."""
    path = tmp_path / "spans.jsonl"
    path.write_text(json_line(spans) + "\n")
    return ["--traces", str(path)]


def store_config(tmp_path: Path, spans: list[Any], *, detectors: str = "") -> list[str]:
    """``--config`` of an embedded store (SQLite) that ``spans`` were sent to; ``detectors`` is
    the service's ``detectors`` setting, as YAML."""
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    engine = make_engine(url)
    migrate(engine)
    EmbeddedBackend(make_sessions(engine)).ingest(protobuf(spans), PROTOBUF, None)
    engine.dispose()
    config = tmp_path / "feedbot.yaml"
    text = f'database_url: "{url}"\ntraces:\n  backend: embedded\n'
    if detectors:
        text += f"services:\n  {DEPLOY['service']}:\n    detectors: {detectors}\n"
    config.write_text(text)
    return ["--config", str(config)]


def run_report(tmp_path: Path, argv: list[str], *, until: datetime) -> tuple[int, str]:
    """``feedbot report ARGV --until UNTIL`` with the clock at ``until``: its exit code and
    what it printed."""
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        saved, sys.stdout = sys.stdout, stream
        try:
            args = parser.parse_args([*argv, "--until", until.isoformat()])
            code = report_cli.run(args, now=lambda: until)
        finally:
            sys.stdout = saved
    return code, out.read_text()


def request(
    tracer: Any, route: str, begin: int, ms: float, attributes: dict[str, Any] | None = None
) -> None:
    """One ``GET route`` request of :data:`DEPLOY`'s service at ``begin`` (ns), ``ms`` long: a
    SERVER span with a 2 ms DB CLIENT span (``SELECT shop``) under it, as the report tests send."""
    server = tracer.start_span(
        f"GET {route}",
        kind=SpanKind.SERVER,
        start_time=begin,
        attributes={"http.route": route, "http.request.method": "GET", **(attributes or {})},
    )
    db = tracer.start_span(
        "SELECT shop",
        kind=SpanKind.CLIENT,
        context=set_span_in_context(server),
        start_time=begin + 1_000_000,
    )
    db.end(begin + 3_000_000)
    server.end(begin + int(ms * 1_000_000))


def resource(version: str, instance: str) -> dict[str, str]:
    """The resource of :data:`DEPLOY`'s service at ``version`` on pod ``instance``."""
    return {
        "service.name": DEPLOY["service"],
        "service.version": version,
        "deployment.environment.name": DEPLOY["environment"],
        "service.instance.id": instance,
    }
