"""``feedbot report`` on odd input: it says what happened instead of "not serving yet".

Spans of the real OpenTelemetry SDK and the OTLP repository's example document: a deploy
without ``environment`` (production) whose spans say ``prod``, spans without
``service.version``.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind
from sqlalchemy.orm import Session, sessionmaker

from feedbot.analysis.report import ReportContext
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks import pipeline
from feedbot.commands import report as report_cli
from feedbot.policy import DetectionPolicy
from feedbot.spans.otlp_http import PROTOBUF
from tests.fakes.sdk_spans import T0, json_line, ns, protobuf, sdk_spans

UNTIL = T0 + timedelta(minutes=30)


def vault(n: int, start: datetime = T0, **resource: str) -> list[Any]:
    """``n`` SDK SERVER spans of vault-service from ``start``, one a second, with ``resource``."""

    def build(tracer: Any) -> None:
        for i in range(n):
            begin = ns(start + timedelta(seconds=i))
            span = tracer.start_span("GET /vaults", kind=SpanKind.SERVER, start_time=begin,
                                     attributes={"http.route": "/vaults"})  # fmt: skip
            span.end(begin + 20_000_000)

    return sdk_spans({"service.name": "vault-service", **resource}, build)


def report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, traces: Path, **deploy: str
) -> dict[str, Any]:
    doc = {"service": "vault-service", "version": "2.0.0", "deployed_at": T0.isoformat()}
    (tmp_path / "deploy.json").write_text(json.dumps({**doc, **deploy}))
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    argv = ["--deploy", str(tmp_path / "deploy.json"), "--traces", str(traces)]
    argv += ["--format", "json", "--until", UNTIL.isoformat()]
    assert report_cli.run(parser.parse_args(argv), now=lambda: UNTIL) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def write(tmp_path: Path, spans: list[Any]) -> Path:
    path = tmp_path / "spans.jsonl"
    path.write_text(json_line(spans) + "\n")
    return path


def test_spans_tagged_prod_under_a_production_deploy_are_named_as_a_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spans = vault(1240, **{"service.version": "2.0.0", "deployment.environment.name": "prod"})
    doc = report(capsys, tmp_path, write(tmp_path, spans))  # no environment: production
    assert doc["verdict"] == "not_running" and doc["environment"] == "production"
    (why,) = [n for n in doc["notes"] if n.startswith("No span of")]
    assert why.startswith("No span of vault-service 2.0.0 in production; the store has spans of")
    assert "environment(s) prod (1,240) and version(s) 2.0.0 (1,240)" in why, why
    assert "set the deploy's environment to prod" in why
    assert "not served traffic" not in why


def test_spans_without_service_version_are_named_with_their_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spans = vault(320, **{"deployment.environment.name": "production"})
    doc = report(capsys, tmp_path, write(tmp_path, spans), environment="production")
    (why,) = [n for n in doc["notes"] if n.startswith("No span of")]
    assert "spans of the service have no service.version: 320 in the window" in why, why
    assert "version(s) no service.version (320)" in why


def test_the_otlp_example_document_has_no_version_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixtures_dir: Path
) -> None:
    example = fixtures_dir / "otlp" / "trace.json"
    deploy = {"service": "my.service", "version": "1.0", "deployed_at": "2018-12-13T14:50:00Z"}
    (tmp_path / "deploy.json").write_text(json.dumps(deploy))
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    argv = ["--deploy", str(tmp_path / "deploy.json"), "--traces", str(example)]
    argv += ["--format", "json", "--until", "2018-12-13T15:00:00Z"]
    assert report_cli.run(parser.parse_args(argv)) == 0
    doc = json.loads(capsys.readouterr().out)
    (why,) = [n for n in doc["notes"] if n.startswith("No span of")]
    assert "no service.version: 1 in the window" in why, why
    assert "environment(s) no environment (1)" in why


def test_nothing_of_the_service_at_all_is_still_not_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spans = sdk_spans({"service.name": "other", "service.version": "1"}, lambda t: t.start_span(
        "x", start_time=ns(T0)).end(ns(T0) + 1000))  # fmt: skip
    doc = report(capsys, tmp_path, write(tmp_path, spans))
    (why,) = [n for n in doc["notes"] if n.startswith("No span of")]
    assert "nor of any other version or environment of vault-service" in why
    assert "has not served traffic yet" in why


def test_the_embedded_store_surveys_in_sql(db_sessions: sessionmaker[Session]) -> None:
    backend = EmbeddedBackend(db_sessions)
    spans = vault(50, **{"service.version": "2.0.0", "deployment.environment.name": "prod"})
    spans += vault(30, **{"deployment.environment.name": "production"})
    backend.ingest(protobuf(spans), PROTOBUF, None)
    context = ReportContext(
        service="vault-service", version="2.0.0", baseline_version=None,
        environment="production", candidate_window=(T0, UNTIL),
    )  # fmt: skip
    plan = pipeline.Plan(context=context, changes=(), policy=DetectionPolicy(), final=True)
    finished = pipeline.analyse(plan, pipeline.collect(backend, plan))
    (why,) = finished.analysis.summary
    assert "environment(s) prod (50), production (30)" in why, why
    assert "version(s) 2.0.0 (50), no service.version (30)" in why
    assert "set the deploy's environment to prod" in why
    assert "no service.version: 30 in the window" in why


def test_control_characters_in_span_names_are_escaped_in_the_text_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def build(tracer: Any) -> None:
        for i in range(40):
            begin = ns(T0 + timedelta(seconds=i))
            tracer.start_span("GET /x\n\x1b[2J\x07\u202egpj.exe", start_time=begin).end(
                begin + 5_000_000
            )

    resource = {"service.name": "vault-service", "service.version": "2.0.0"}
    (tmp_path / "deploy.json").write_text(
        json.dumps({"service": "vault-service", "version": "2.0.0", "deployed_at": T0.isoformat()})
    )
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    argv = ["--deploy", str(tmp_path / "deploy.json"), "--until", UNTIL.isoformat()]
    argv += ["--traces", str(write(tmp_path, sdk_spans(resource, build)))]
    assert report_cli.run(parser.parse_args(argv), now=lambda: UNTIL) == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\x07" not in text
    assert "\u202e" not in text  # a right-to-left override would show "exe.jpg" reversed
    (row,) = [line for line in text.splitlines() if "GET /x" in line]
    assert "GET /x\\x0a\\x1b[2J\\x07\\u202egpj.exe" in row and "- → 40" in row


def test_a_cut_last_line_and_a_repeated_export_are_each_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    early = T0 - timedelta(minutes=5)
    before = json_line(vault(40, early, **{"service.version": "1.0.0"}))
    after = json_line(vault(40, **{"service.version": "2.0.0"}))
    path = tmp_path / "spans.jsonl"
    # The baseline's export sent twice (an exporter's retry), the last line cut short.
    path.write_text(f"{before}\n{before}\n{after}\n{after[: len(after) // 2]}")
    doc = report(capsys, tmp_path, path)
    cut = [n for n in doc["notes"] if "unfinished last line" in n]
    again = [n for n in doc["notes"] if "arrived again" in n]
    assert len(cut) == 1 and cut[0].startswith("New version: "), doc["notes"]
    assert "spans.jsonl, line 4: an unfinished last line" in cut[0]
    assert again == [
        "Baseline: 40 spans arrived again (same trace id and span id) and were counted once."
    ]
