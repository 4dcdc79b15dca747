"""``feedbot report`` end to end: spans from the real OpenTelemetry SDK in OTLP/JSON lines files.

The tests call :func:`feedbot.commands.report.run` directly, and ``python -m feedbot report`` once
through a real process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from feedbot.commands import report as report_cli
from tests.factories import DEPLOYED, otlp_spans

NOW = DEPLOYED + timedelta(hours=2)


def _json_line(**kw: object) -> str:
    request = ExportTraceServiceRequest.FromString(otlp_spans(**kw))  # type: ignore[arg-type]
    return json.dumps(json.loads(MessageToJson(request)))


def _spans(
    rng: np.random.Generator, n: int, ratio: float, errors: float
) -> list[tuple[str, float, bool]]:
    ms = rng.lognormal(np.log(50.0 * ratio), 0.5, n)
    return [("/vaults/{id}", float(d), bool(rng.random() < errors)) for d in ms]


def write_traces(path: Path, *, ratio: float = 1.0, n: int = 400, seed: int = 0) -> Path:
    """Version 1.4.1 for 2 h before the deploy, 1.4.2 after it (one line per export)."""
    rng = np.random.default_rng(seed)
    lines = [
        _json_line(
            service="vault-service",
            version="1.4.1",
            start=DEPLOYED - timedelta(hours=2),
            spans=_spans(rng, n, 1.0, 0.0),
        ),
        _json_line(
            service="vault-service",
            version="1.4.0",
            start=DEPLOYED - timedelta(hours=3),
            spans=_spans(rng, 20, 1.0, 0.0),
        ),
        _json_line(
            service="vault-service",
            version="1.4.2",
            start=DEPLOYED,
            spans=_spans(rng, n, ratio, 0.0),
        ),
        _json_line(
            service="other-service", version="9", start=DEPLOYED, spans=_spans(rng, 50, 3.0, 0.5)
        ),
    ]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def write_deploy(path: Path, **over: object) -> Path:
    doc = {
        "service": "vault-service",
        "version": "1.4.2",
        "environment": "production",
        "deployed_at": DEPLOYED.isoformat(),
        "changes": [{"file": "vault/appraisal.py", "functions": ["vault.appraisal.appraise"]}],
    }
    doc.update(over)
    path.write_text(json.dumps(doc))
    return path


def report(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    code = report_cli.run(parser.parse_args(list(argv)), now=lambda: NOW)
    out, err = capsys.readouterr()
    return code, out, err


def test_regression_fails_the_quality_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = write_traces(tmp_path / "spans.jsonl", ratio=1.6)
    deploy = write_deploy(tmp_path / "deploy.json")
    code, out, _ = report(
        "--deploy",
        str(deploy),
        "--traces",
        str(traces),
        "--format",
        "json",
        "--fail-on",
        "regressed",
        capsys=capsys,
    )
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "regressed"
    assert doc["baseline_version"] == "1.4.1" and doc["version"] == "1.4.2"
    (group,) = doc["groups"]
    assert group["span"] == "GET /vaults/{id}" and group["kind"] == "SERVER"
    assert group["baseline"]["count"] == 400 and group["candidate"]["count"] == 400
    (finding,) = [f for f in doc["findings"] if f["kind"] == "latency_regression"]
    assert 1.4 < finding["change"]["ratio"] < 1.8
    assert any("most common other version" in note for note in doc["notes"])


def test_no_change_exits_zero_with_a_text_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = write_traces(tmp_path / "spans.jsonl.gz", ratio=1.0, seed=3)
    deploy = write_deploy(tmp_path / "deploy.json")
    code, out, _ = report(
        "--deploy",
        str(deploy),
        "--traces",
        str(traces),
        "--baseline-version",
        "1.4.1",
        "--fail-on",
        "regressed",
        capsys=capsys,
    )
    assert code == 0
    assert out.startswith("vault-service 1.4.2 vs 1.4.1 (production)\nverdict: neutral")


def test_new_version_never_serving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traces = write_traces(tmp_path / "spans.jsonl")
    deploy = write_deploy(tmp_path / "deploy.json", version="2.0.0")
    code, out, _ = report(
        "--deploy", str(deploy), "--traces", str(traces), "--format", "json", capsys=capsys
    )
    assert code == 0 and json.loads(out)["verdict"] == "not_running"


@pytest.mark.parametrize(
    ("doc", "named"),
    [({"version": None}, "version"), ({"deployed_at": "yesterday"}, "deployed_at")],
)
def test_bad_deploy_document_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, object], named: str
) -> None:
    traces = write_traces(tmp_path / "spans.jsonl")
    deploy = write_deploy(tmp_path / "deploy.json", **doc)
    code, out, err = report("--deploy", str(deploy), "--traces", str(traces), capsys=capsys)
    assert code == 2 and out == "" and named in err and "deploy.json" in err


def test_bad_paths_and_times_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deploy = write_deploy(tmp_path / "deploy.json")
    code, _, err = report(
        "--deploy", str(deploy), "--traces", str(tmp_path / "nope"), capsys=capsys
    )
    assert code == 2 and "--traces" in err and "nope" in err
    traces = write_traces(tmp_path / "spans.jsonl")
    code, _, err = report(
        "--deploy", str(deploy), "--traces", str(traces), "--since", "soon", capsys=capsys
    )
    assert code == 2 and "--since" in err
    code, _, err = report(
        "--deploy", str(tmp_path / "missing.json"), "--traces", str(traces), capsys=capsys
    )
    assert code == 2 and "--deploy" in err


def test_unreachable_backend_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "feedbot.yaml"
    config.write_text('database_url: "postgresql+psycopg://nobody@127.0.0.1:1/feedbot"\n')
    deploy = write_deploy(tmp_path / "deploy.json")
    code, _, err = report(
        "--deploy",
        str(deploy),
        "--config",
        str(config),
        "--baseline-version",
        "1.4.1",
        capsys=capsys,
    )
    assert code == 3 and "unreachable" in err


def test_python_m_feedbot_report(tmp_path: Path) -> None:
    traces = write_traces(tmp_path / "spans.jsonl", ratio=1.6)
    deploy = write_deploy(tmp_path / "deploy.json")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "feedbot",
            "report",
            "--deploy",
            str(deploy),
            "--traces",
            str(traces),
            "--until",
            NOW.isoformat(),
            "--format",
            "json",
            "--fail-on",
            "regressed",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["verdict"] == "regressed"
