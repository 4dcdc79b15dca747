"""``feedbot report`` finds the baseline version in the data: in every backend, with or
without ``deployed_at``. Spans from the real OpenTelemetry SDK (a short load test)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from feedbot.backends.embedded import EmbeddedBackend
from feedbot.commands import report as report_cli
from feedbot.spans.otlp import PROTOBUF
from feedbot.store.db import make_engine, make_sessions, migrate
from tests.fakes.sdk_spans import json_line, otlp_document, protobuf
from tests.fakes.tempo_server import TempoServer
from tests.fakes.trace_servers import FakeJaeger
from tests.functional.test_report_oneshot import UNTIL, run_spans
from tests.report_runs import deploy_file


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    args = [*argv, "--until", UNTIL.isoformat(), "--format", "json", "--fail-on", "regressed"]
    code = report_cli.run(parser.parse_args(args), now=lambda: UNTIL)
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else {}, err


def baseline_note(doc: dict[str, Any]) -> str:
    (note,) = [n for n in doc["notes"] if n.startswith("Baseline version")]
    return note


def test_the_embedded_store_lists_versions_so_no_baseline_option_is_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    engine = make_engine(url)
    migrate(engine)
    EmbeddedBackend(make_sessions(engine)).ingest(
        protobuf(run_spans(slower=1.85, seed=4)), PROTOBUF, None
    )
    engine.dispose()
    config = tmp_path / "feedbot.yaml"
    config.write_text(f'database_url: "{url}"\ntraces:\n  backend: embedded\n')
    code, doc, err = run(capsys, "--deploy", str(deploy_file(tmp_path)), "--config", str(config))
    assert (code, doc["verdict"], doc["baseline_version"]) == (1, "regressed", "1.0"), err
    assert "most common other version of checkout between" in baseline_note(doc)
    assert "(240 spans)" in baseline_note(doc)  # 2 instances × 60 requests × 2 spans


def test_jaeger_lists_versions_from_its_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeJaeger() as jaeger:
        jaeger.add_otlp(otlp_document(run_spans(slower=1.0, seed=5)))
        config = tmp_path / "feedbot.yaml"
        config.write_text(
            f'database_url: "sqlite:///{tmp_path / "x.db"}"\n'
            f"traces:\n  backend: jaeger\n  url: {jaeger.base_url}\n"
        )
        deploy = deploy_file(tmp_path)
        code, doc, err = run(capsys, "--deploy", str(deploy), "--config", str(config))
    assert (code, doc["verdict"], doc["baseline_version"]) == (0, "neutral", "1.0"), err
    assert "(240 spans)" in baseline_note(doc)


def test_without_deployed_at_the_baseline_comes_from_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / "load.jsonl"
    traces.write_text(json_line(run_spans(slower=1.85, seed=6)) + "\n")
    deploy = deploy_file(tmp_path, deployed_at=None)
    code, doc, err = run(capsys, "--deploy", str(deploy), "--traces", str(traces))
    assert (code, doc["verdict"], doc["baseline_version"]) == (1, "regressed", "1.0"), err
    assert "in the trace files (no deployed_at" in baseline_note(doc)
    (group,) = [g for g in doc["groups"] if g["span"] == "GET /orders/{id}"]
    assert group["baseline"]["count"] == group["candidate"]["count"] == 120


def _tempo_config(tmp_path: Path, tempo: TempoServer) -> Path:
    config = tmp_path / "feedbot.yaml"
    config.write_text(
        f'database_url: "sqlite:///{tmp_path / "x.db"}"\n'
        f"traces:\n  backend: tempo\n  url: {tempo.url}\n"
    )
    return config


def test_tempo_counts_versions_with_traceql_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TempoServer([encode_spans(run_spans(slower=1.85, seed=7))]) as tempo:
        config = _tempo_config(tmp_path, tempo)
        deploy = deploy_file(tmp_path)
        code, doc, err = run(capsys, "--deploy", str(deploy), "--config", str(config))
        reads = [path for path, _ in tempo.log if "/traces/" in path]
    assert (code, doc["verdict"], doc["baseline_version"]) == (1, "regressed", "1.0"), err
    assert "(240 spans)" in baseline_note(doc)  # exact: a TraceQL count, not a sample
    assert reads == []


def test_tempo_names_the_environment_the_spans_carry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TempoServer([encode_spans(run_spans(slower=1.0, seed=8))]) as tempo:
        config = _tempo_config(tmp_path, tempo)
        deploy = deploy_file(tmp_path, environment="prod")
        code, doc, err = run(
            capsys, "--deploy", str(deploy), "--config", str(config), "--baseline-version", "1.0"
        )
    text = json.dumps(doc)
    assert "environment(s) production" in text, err
    assert "set the deploy's environment to production" in text
