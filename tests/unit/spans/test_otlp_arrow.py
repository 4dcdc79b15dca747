"""The columnar OTLP/JSON reader: the scanner's answer (and so the validating decoder's), or a
hand-over to the scanner, on the exporter's shape, mutated documents and files of many blocks."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.errors import BackendResponseError, WebhookRejected
from feedbot.spans import aggregate_columns, critical, otlp_lines
from feedbot.spans.aggregate import Aggregator, matcher, to_ns
from feedbot.spans.aggregate_columns import _unique_rows, fold
from feedbot.spans.model import ReleaseData, SpanQuery, from_ns
from feedbot.spans.otlp_arrow import BlockReader
from feedbot.spans.otlp_lines import read_rows
from feedbot.spans.otlp_scan import Scanner, Unusual
from feedbot.spans.otlp_survey import Survey
from tests.conftest import upstream_files
from tests.fakes.sdk_spans import Variant, otlp_document, query, release_spans
from tests.unit.spans.test_otlp_scan import (
    SERVICE,
    document,
    labelled_document,
    same,
    scanned,
    validated,
)
from tests.unit.spans.test_otlp_scan_fuzz import FUZZ, edge_values_answer_alike, mutated


def columnar(lines: list[Any], version: str = "1.0.0", max_open: int = 100_000) -> ReleaseData:
    """The answer of the block reader given ``lines`` (documents) as one block."""
    aggregator = Aggregator(max_open_spans=max_open)
    reader = BlockReader(Scanner.of(aggregator, query(SERVICE, version)))
    text = "".join(json.dumps(line) + "\n" for line in lines)
    found, _ = reader.decode_block(text.encode("utf-8", "surrogatepass"))
    for target, columns in found:
        assert target is aggregator
        fold(target, columns)
    return aggregator.result()


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_the_exporters_shape_is_read_as_columns_with_the_same_answer(version: str) -> None:
    doc = document()
    want = validated(doc, version)
    same(columnar([doc], version), want)
    assert want.repeats and any(g.code for g in want.groups)  # the test reads every table
    assert any(g.exceptions for g in want.groups)
    window = query(SERVICE, version)
    starts = [
        int(span["startTimeUnixNano"])
        for block in doc["resourceSpans"]
        if version in json.dumps(block["resource"])
        for scope in block["scopeSpans"]
        for span in scope["spans"]
        if to_ns(window.start) <= int(span["startTimeUnixNano"]) < to_ns(window.end)
    ]
    assert columnar([doc], version).observed == (from_ns(min(starts)), from_ns(max(starts)))


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_labels_are_read_as_columns_with_the_same_answer(version: str) -> None:
    doc = labelled_document()
    want = validated(doc, version)
    same(columnar([doc], version), want)
    assert any(g.label_sets for g in want.groups)


@FUZZ
@given(doc=mutated())
def test_the_columns_answer_as_the_scanner_or_hand_over(doc: dict[str, Any]) -> None:
    try:
        got = columnar([doc])
    except Unusual:
        return
    try:
        want = scanned(doc)
    except Unusual:
        try:
            want = validated(doc)
        except WebhookRejected:
            return
    same(got, want)


@pytest.mark.parametrize(
    "field",
    ["status.code", "kind", "startTimeUnixNano", "endTimeUnixNano", "parentSpanId", "spanId"]
    + ["traceId", "name", "attr:http.route", "attr:code.line.number", "attr:db.query.text"]
    + ["attr:code.function", "attr:code.namespace", "attr:db.statement", "attr:error.type"],
)
def test_edge_values_of_every_read_field_answer_alike(field: str) -> None:
    edge_values_answer_alike(field, lambda doc: columnar([doc]))


def _lines(versions: tuple[str, ...] = ("1.0.0", "1.1.0")) -> list[dict[str, Any]]:
    """Both versions (and another service), three spans a line: traces cut across lines."""
    spans = [release_spans(SERVICE, v, old=v != "1.0.0") for v in versions]
    other = release_spans("ledger", "1.0.0")
    lines = []
    for i in range(0, max(map(len, spans)), 3):
        lines += [otlp_document(s[i : i + 3]) for s in spans] + [otlp_document(other[:2])]
    return lines


def test_traces_cut_across_blocks_link_as_in_one_block() -> None:
    lines = _lines()
    for version in ("1.0.0", "1.1.0"):
        whole = columnar(lines, version)
        aggregator = Aggregator(max_open_spans=12)  # traces close between blocks
        reader = BlockReader(Scanner.of(aggregator, query(SERVICE, version)))
        for i in range(0, len(lines), 2):
            text = "".join(json.dumps(line) + "\n" for line in lines[i : i + 2])
            for target, columns in reader.decode_block(text.encode())[0]:
                fold(target, columns)
        same(aggregator.result(), whole)
        assert whole.repeats and whole.traces == 8


@pytest.fixture
def many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file of many small blocks, blank lines between, read in both ways."""
    monkeypatch.setattr(otlp_lines, "BLOCK_BYTES", 4096)  # shorter than some lines
    path = tmp_path / "traces.jsonl"
    path.write_text("\n\n".join(json.dumps(line) for line in _lines()) + "\n")
    return path


def _line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Survey, "columnar", property(lambda self: False))


def test_a_file_of_many_blocks_answers_as_line_by_line(
    many_blocks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line_by_line: list[int] = []
    monkeypatch.setattr(otlp_lines, "_read_lines", lambda *args: line_by_line.append(1))
    backend = OtlpFileBackend([str(many_blocks)])
    window = (query(SERVICE, "1.0.0").start, query(SERVICE, "1.0.0").end)
    survey = backend.survey(query(SERVICE, "1.1.0"), baseline=window, counted=window)
    got = [backend.collect(query(SERVICE, v)) for v in ("1.0.0", "1.1.0")]
    got += [survey.result(), survey.baseline("1.0.0")]
    assert not line_by_line  # every block was read as columns
    monkeypatch.undo()
    _line_by_line(monkeypatch)
    before = backend.survey(query(SERVICE, "1.1.0"), baseline=window, counted=window)
    want = [backend.collect(query(SERVICE, v)) for v in ("1.0.0", "1.1.0")]
    want += [before.result(), before.baseline("1.0.0")]
    for mine, theirs in zip(got, want, strict=True):
        same(mine, theirs)
    assert survey.counts == before.counts and sum(survey.counts.values()) == 64


def test_a_collector_file_decoded_on_threads_answers_as_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the Collector writes: a batch a line holding both versions, the new and the old
    # conventions, exception events, 64-bit integers as strings; blocks decoded on the
    # read-ahead threads, several at once, and folded in file order.
    new = release_spans(SERVICE, "1.0.0", variant=Variant(traces=25))
    old = release_spans(SERVICE, "1.1.0", old=True, variant=Variant(traces=25))
    lines = [otlp_document(new[i : i + 40] + old[i : i + 40]) for i in range(0, len(new), 40)]
    path = tmp_path / "collector.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert len(lines) >= 6 and '"intValue": "' in path.read_text()
    monkeypatch.setattr(otlp_lines, "BLOCK_BYTES", 40_000)  # a few lines a block
    # A reservoir of 4 spans a group: most spans past it draw, so the draws' order shows.
    monkeypatch.setattr(critical.PathRecorder.__init__, "__defaults__", (4,))
    line_by_line: list[int] = []
    read_lines = otlp_lines._read_lines
    monkeypatch.setattr(
        otlp_lines, "_read_lines", lambda *args: line_by_line.append(1) or read_lines(*args)
    )
    backend = OtlpFileBackend([str(path)])
    window = (query(SERVICE, "1.0.0").start, query(SERVICE, "1.0.0").end)
    survey = backend.survey(query(SERVICE, "1.0.0"), baseline=window, counted=window)
    assert not line_by_line  # every block was decoded as columns
    _line_by_line(monkeypatch)
    want = backend.survey(query(SERVICE, "1.0.0"), baseline=window, counted=window)
    for got, expected in (
        (survey.result(), want.result()),
        (survey.baseline("1.1.0"), want.baseline("1.1.0")),
    ):
        same(got, expected)
        assert got.repeats and any(g.exceptions for g in got.groups)
        assert any(g.critical_path is not None and g.critical_path.spans > 4 for g in got.groups)
    assert survey.counts == want.counts and set(survey.counts) == {"1.0.0", "1.1.0"}


def test_a_block_arrow_cannot_read_is_read_line_by_line(
    many_blocks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = many_blocks.read_text().split("\n")
    text[-3] = json.dumps(otlp_document(release_spans(SERVICE, "1.0.0")[:1]), indent=None)
    text[-3] = re.sub(r'"kind": \d', '"kind": "SPAN_KIND_SERVER"', text[-3])  # enum names
    assert "SPAN_KIND_SERVER" in text[-3]
    text.append('{"resourceSpans": [')  # the exporter still writing the last line
    many_blocks.write_text("\n".join(text))
    read_lines = otlp_lines._read_lines
    line_by_line: list[int] = []
    monkeypatch.setattr(
        otlp_lines, "_read_lines", lambda *args: line_by_line.append(1) or read_lines(*args)
    )
    got = OtlpFileBackend([str(many_blocks)]).collect(query(SERVICE, "1.0.0"))
    assert len(line_by_line) == 2  # the enum names' block and the unfinished line
    _line_by_line(monkeypatch)
    same(got, OtlpFileBackend([str(many_blocks)]).collect(query(SERVICE, "1.0.0")))


def test_a_malformed_line_in_a_later_block_names_the_files_line(many_blocks: Path) -> None:
    text = many_blocks.read_text().split("\n")
    bad = max(n for n, line in enumerate(text, 1) if '"1.0.0"' in line and n < len(text) - 8)
    text[bad - 1] = text[bad - 1].replace('"traceId": "', '"traceId": "xyz', 1)
    many_blocks.write_text("\n".join(text))
    with pytest.raises(BackendResponseError, match=rf"traces.jsonl, line {bad}: .*traceId"):
        OtlpFileBackend([str(many_blocks)]).collect(query(SERVICE, "1.0.0"))


@given(
    rows=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 5)), min_size=1),
    wide=st.booleans(),
)
def test_unique_rows_packed_or_sorted_agree_with_numpy(
    rows: list[tuple[int, int, int]], wide: bool
) -> None:
    columns = [np.array(c, np.intp) for c in zip(*rows, strict=True)]
    if wide:  # ranges whose product overflows a packed integer: rows are sorted instead
        columns[0] = columns[0] * 2**40
    got = _unique_rows(*columns)
    want = np.unique(
        np.stack(columns, axis=1),
        axis=0,
        return_index=True,
        return_inverse=True,
        return_counts=True,
    )
    for mine, theirs in zip(got, want, strict=True):
        assert mine.tolist() == theirs.reshape(mine.shape).tolist()


def test_a_first_line_longer_than_64_kib_is_read_as_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Collector's file exporter writes a batch a line: 500 SDK spans make ~250 KB.
    spans = release_spans(SERVICE, "1.0.0")
    batch = otlp_document(spans * (-(-70_000 // len(json.dumps(otlp_document(spans))))))
    path = tmp_path / "collector.jsonl"
    path.write_text(json.dumps(batch) + "\n" + json.dumps(otlp_document(spans)) + "\n")
    assert path.read_text().index("\n") > 65536
    line_by_line: list[int] = []
    read_line = otlp_lines._read_line
    monkeypatch.setattr(
        otlp_lines, "_read_line", lambda *args: line_by_line.append(1) or read_line(*args)
    )
    got = OtlpFileBackend([str(path)]).collect(query(SERVICE, "1.0.0"))
    assert not line_by_line  # not taken for one pretty-printed document
    monkeypatch.undo()
    _line_by_line(monkeypatch)
    same(got, OtlpFileBackend([str(path)]).collect(query(SERVICE, "1.0.0")))


def _interleaved() -> list[dict[str, Any]]:
    """SDK spans of one version, one a line, the spans of each two traces taken in turn."""
    by_trace: dict[int, list[Any]] = {}
    for span in release_spans(SERVICE, "1.0.0"):
        by_trace.setdefault(span.context.trace_id, []).append(span)
    traces = list(by_trace.values())
    order: list[Any] = []
    for first, second in zip(traces[::2], traces[1::2], strict=False):
        for pair in zip(first, second, strict=False):
            order += pair
        shorter = min(len(first), len(second))
        order += first[shorter:] + second[shorter:]
    order += traces[-1] if len(traces) % 2 else []
    return [otlp_document([span]) for span in order]


def test_traces_closed_between_blocks_interleaved_or_not_link_as_in_one_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing holds the open spans in the parts they came in: a prefix of them closes by
    slicing, interleaved traces by picking rows; both answer as one block does."""
    picked: list[str] = []
    rows = aggregate_columns._rows
    monkeypatch.setattr(
        aggregate_columns,
        "_rows",
        lambda part, at: picked.append(type(at).__name__) or rows(part, at),
    )
    for lines in (_interleaved(), _lines(("1.0.0",))):
        whole = columnar(lines)
        assert whole.repeats and whole.traces == 8
        for lines_a_block in (1, 3, 7):
            aggregator = Aggregator(max_open_spans=8)
            reader = BlockReader(Scanner.of(aggregator, query(SERVICE, "1.0.0")))
            for i in range(0, len(lines), lines_a_block):
                text = "".join(json.dumps(line) + "\n" for line in lines[i : i + lines_a_block])
                for target, columns in reader.decode_block(text.encode())[0]:
                    fold(target, columns)
            same(aggregator.result(), whole)
    assert {"slice", "ndarray"} <= set(picked)  # both ways of closing were taken


_STORAGE = "jaeger/otlp-storage-integration"
UPSTREAM = [("otlp", n) for n in upstream_files("otlp", "*.json")]
UPSTREAM += [(_STORAGE, n) for n in upstream_files(_STORAGE, "*_trace.json")]


@pytest.mark.parametrize(("folder", "name"), UPSTREAM)
def test_upstream_documents_as_lines_answer_alike_every_way(
    folder: str, name: str, fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTLP/JSON recorded upstream (the OTLP example, Jaeger's storage integration traces),
    given a version and written three times as lines of their own blocks (every span sent
    again twice): the columnar read answers as the line-by-line read and the validating
    decoder, repeats and notes included."""
    doc = json.loads((fixtures_dir / folder / name).read_text())
    services = []
    for block in doc["resourceSpans"]:
        attributes = block.setdefault("resource", {}).setdefault("attributes", [])
        services += [a["value"]["stringValue"] for a in attributes if a["key"] == "service.name"]
        attributes.append({"key": "service.version", "value": {"stringValue": "1.0.0"}})
    path = tmp_path / "traces.jsonl"
    path.write_text((json.dumps(doc) + "\n") * 3)
    monkeypatch.setattr(otlp_lines, "BLOCK_BYTES", 64)  # each line a block of its own
    wide = (datetime(1970, 1, 2, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
    counted = 0
    for service in sorted(set(services)):
        window = SpanQuery(service, "1.0.0", *wide)
        got = OtlpFileBackend([str(path)]).collect(window)
        with monkeypatch.context() as line_by_line:
            _line_by_line(line_by_line)
            want = OtlpFileBackend([str(path)]).collect(window)
        aggregator = Aggregator()
        aggregator.add_many(filter(matcher(window), read_rows(str(path))))
        validated_answer = aggregator.result()
        for theirs in (want, validated_answer):
            same(got, theirs)
            assert got.notes == theirs.notes
        counted += sum(group.count for group in got.groups)
        assert not got.groups or any("arrived again" in note for note in got.notes)
    assert counted  # the document's spans were read, each once
