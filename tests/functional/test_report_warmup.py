"""``feedbot report --warmup`` on spans of the real OpenTelemetry SDK with service.instance.id.

A new instance's first minutes are left out of latency only where they were really slower than
its later spans: a 79-second load test and a report two minutes after the deploy keep every span
and get a latency verdict; a pod whose first three minutes are 3× slower loses them, and the
note says how many and why.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.trace import SpanKind

from tests.fakes.sdk_spans import T0, json_line, ns, sdk_spans
from tests.functional.test_report_oneshot import gate
from tests.report_runs import deploy_file


def pods(
    version: str,
    start: datetime,
    *,
    seconds: float,
    every: float,
    slower: float = 1.0,
    cold: dict[str, tuple[float, float]] | None = None,
    seed: int = 0,
) -> list[Any]:
    """SDK SERVER spans of two pods, one every ``every`` s for ``seconds``; durations × ``slower``.

    ``cold`` maps a pod to (seconds, factor): its spans in its first seconds take factor × longer.
    """
    rng = np.random.default_rng(seed)
    spans: list[Any] = []
    for pod in ("pod-a", "pod-b"):
        count = int(seconds / every)
        ms = rng.lognormal(np.log(40.0), 0.3, count) * slower
        warm_for, factor = (cold or {}).get(pod, (0.0, 1.0))

        def build(tracer: Any, ms: np.ndarray = ms, warm_for: float = warm_for,
                  factor: float = factor) -> None:  # fmt: skip
            for i, duration in enumerate(ms.tolist()):
                offset = i * every
                scale = factor if offset < warm_for else 1.0
                begin = ns(start + timedelta(seconds=offset))
                span = tracer.start_span(
                    "GET /orders/{id}", kind=SpanKind.SERVER, start_time=begin,
                    attributes={"http.route": "/orders/{id}", "http.request.method": "GET"},
                )  # fmt: skip
                span.end(begin + int(duration * scale * 1_000_000))

        resource = {
            "service.name": "checkout",
            "service.version": version,
            "deployment.environment.name": "production",
            "service.instance.id": f"{version}-{pod}",
        }
        spans += sdk_spans(resource, build)
    return spans


def p95(doc: dict[str, Any]) -> float:
    (group,) = doc["groups"]
    return float(group["candidate"]["p95_ms"])


def write(tmp_path: Path, spans: list[Any]) -> Path:
    path = tmp_path / "spans.jsonl"
    path.write_text(json_line(spans) + "\n")
    return path


def baseline() -> list[Any]:
    return pods("1.0", T0 - timedelta(minutes=40), seconds=600, every=2, seed=1)


def test_a_79_second_load_test_gets_a_latency_verdict_with_warm_up_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = pods("1.1", T0, seconds=79, every=0.5, slower=1.5, seed=2)
    code, doc = gate(capsys, deploy_file(tmp_path), write(tmp_path, baseline() + new),
                     "--warmup", "5m")  # fmt: skip
    assert doc["verdict"] == "regressed" and code == 1
    assert doc["warmup_excluded"] == 0
    assert any("316 early vs 0 later spans" in n for n in doc["notes"]), doc["notes"]


def test_a_report_two_minutes_after_the_deploy_gets_a_latency_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = pods("1.1", T0, seconds=600, every=1, seed=3)
    deploy = deploy_file(tmp_path)
    parser_args = ("--warmup", "5m", "--until", (T0 + timedelta(minutes=2)).isoformat())
    code, doc = gate(capsys, deploy, write(tmp_path, baseline() + new), *parser_args)
    assert doc["verdict"] == "neutral" and code == 0
    (group,) = doc["groups"]
    assert group["candidate"]["count"] == 240 and doc["warmup_excluded"] == 0


def test_a_pod_whose_first_minutes_are_three_times_slower_loses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cold = {"pod-a": (180.0, 3.0)}
    new = pods("1.1", T0, seconds=600, every=2, cold=cold, seed=4)
    code, doc = gate(capsys, deploy_file(tmp_path), write(tmp_path, baseline() + new),
                     "--warmup", "3m")  # fmt: skip
    # pod-a's 90 spans of its first 3 minutes, and nothing of pod-b's.
    assert doc["warmup_excluded"] == 90
    (note,) = [n for n in doc["notes"] if n.startswith("Warm-up: 90")]
    assert "of 1 of 2 new instance(s) (1.1-pod-a)" in note
    assert "90 early vs 210 later spans" in note, note
    ratio = float(note.split("they were ")[1].split("×")[0])
    assert 2.5 < ratio < 3.5
    assert any("not slower" in n and "1 new instance(s)" in n for n in doc["notes"])
    assert (code, doc["verdict"]) == (0, "neutral"), doc["findings"]
    # The table counts every span either way; without --warmup the cold start stays in.
    _, plain = gate(capsys, deploy_file(tmp_path), tmp_path / "spans.jsonl")
    assert plain["warmup_excluded"] == 0 and not [n for n in plain["notes"] if "Warm-up" in n]
    assert [g["candidate"]["count"] for g in plain["groups"]] == [600]
    assert [g["candidate"]["count"] for g in doc["groups"]] == [600]
    assert p95(doc) < p95(plain)


def test_the_warm_up_set_for_the_service_in_the_config_applies_to_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from feedbot.commands import report as report_cli

    config = tmp_path / "feedbot.yaml"
    config.write_text(json.dumps({"services": {"checkout": {"detectors": {"latency": {
        "warmup": "2x"}}}}}))  # fmt: skip
    parser = __import__("argparse").ArgumentParser()
    report_cli.add_arguments(parser)
    args = ["--deploy", str(deploy_file(tmp_path)), "--config", str(config)]
    assert report_cli.run(parser.parse_args(args)) == 2
    err = capsys.readouterr().err
    assert "services.checkout.detectors.latency.warmup:" in err, err
