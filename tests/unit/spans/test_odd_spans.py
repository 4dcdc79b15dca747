"""Odd spans are counted and said: sent twice, never ended, an unfinished last line.

On spans of the real OpenTelemetry SDK written as the Collector's file exporter writes them, and
on the OTLP repository's example document; through the columnar reader, the line scanner and
the validating decoder alike.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind

from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.spans.aggregate import aggregate
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp_http import PROTOBUF, decode_request
from feedbot.spans.otlp_lines import read_rows
from tests.fakes.sdk_spans import T0, ns, otlp_document, protobuf, sdk_spans

QUERY = SpanQuery("vault-service", "2.0.0", T0, T0 + timedelta(hours=1), "production")


def vault(n: int, start: int = 0) -> list[Any]:
    def build(tracer: Any) -> None:
        for i in range(start, start + n):
            begin = ns(T0 + timedelta(seconds=i))
            span = tracer.start_span("GET /vaults", kind=SpanKind.SERVER, start_time=begin,
                                     attributes={"http.route": "/vaults"})  # fmt: skip
            span.end(begin + 20_000_000)

    resource = {
        "service.name": "vault-service",
        "service.version": "2.0.0",
        "deployment.environment.name": "production",
        "service.instance.id": "pod-a",
    }
    return sdk_spans(resource, build)


def line(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def without_end(document: dict[str, Any], every: int) -> dict[str, Any]:
    for rs in document["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for i, span in enumerate(ss["spans"]):
                if i % every == 0:
                    del span["endTimeUnixNano"]
    return document


def read(path: Path) -> ReleaseData:
    return OtlpFileBackend([str(path)]).collect(QUERY)


def rows_read(path: Path) -> ReleaseData:
    return aggregate(read_rows(str(path)), QUERY)


@pytest.mark.parametrize("reader", [read, rows_read], ids=["backend", "validating"])
def test_a_span_without_an_end_time_is_counted_but_not_timed(tmp_path: Path, reader: Any) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text(line(without_end(otlp_document(vault(100)), every=10)) + "\n")
    data = reader(path)
    (group,) = data.groups
    assert group.count == 100 and group.untimed == 10
    assert group.durations_ms.size == 90 and group.durations_ms.min() == pytest.approx(20.0)
    assert any(n.startswith("10 spans had no end time") for n in data.notes), data.notes


def test_an_end_time_of_zero_over_protobuf_is_untimed_but_a_zero_length_span_is_timed() -> None:
    request = ExportTraceServiceRequest.FromString(protobuf(vault(4)))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].end_time_unix_nano = 0  # never ended
    spans[1].end_time_unix_nano = spans[1].start_time_unix_nano  # ended at once: 0 ms
    body = request.SerializeToString()
    rows = decode_request(body, content_type=PROTOBUF, content_encoding=None, max_bytes=2**20)
    (group,) = aggregate(rows, QUERY).groups
    assert (group.count, group.untimed) == (4, 1)
    assert sorted(group.durations_ms.tolist()) == [0.0, 20.0, 20.0]


@pytest.mark.parametrize("reader", [read, rows_read], ids=["backend", "validating"])
def test_an_export_sent_twice_is_counted_once(tmp_path: Path, reader: Any) -> None:
    path = tmp_path / "spans.jsonl"
    first, second = line(otlp_document(vault(60))), line(otlp_document(vault(40, 60)))
    path.write_text("\n".join([first, second, first]) + "\n")  # the first export retried
    data = reader(path)
    (group,) = data.groups
    assert group.count == 100 and group.durations_ms.size == 100
    assert any(n.startswith("60 spans arrived again") for n in data.notes), data.notes


def test_an_unfinished_last_line_is_left_out_and_said(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    last = line(otlp_document(vault(5, 100)))
    path.write_text(line(otlp_document(vault(100))) + "\n" + last[: len(last) // 2])
    data = read(path)
    (group,) = data.groups
    assert group.count == 100
    (note,) = [n for n in data.notes if "unfinished last line" in n]
    assert note.startswith(f"{path}, line 2: an unfinished last line ({len(last) // 2:,} bytes)")


def test_the_otlp_example_twice_and_without_its_end_time(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    document = json.loads((fixtures_dir / "otlp" / "trace.json").read_bytes())
    path = tmp_path / "example.jsonl"
    path.write_text(line(document) + "\n" + line(without_end(document, every=1)) + "\n")
    rows = list(read_rows(str(path)))
    assert len(rows) == 2 and rows[0]["duration_ns"] == 10**9 and rows[1]["duration_ns"] < 0
    data = aggregate(rows)
    (group,) = data.groups
    # The second copy is the same span (trace and span id): counted once, with its end time.
    assert group.count == 1 and group.durations_ms.tolist() == [1000.0]
    assert any(n.startswith("1 spans arrived again") for n in data.notes), data.notes
