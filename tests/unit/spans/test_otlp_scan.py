"""The fast OTLP/JSON reader: the validating decoder's answer, or a hand-over to it."""

from __future__ import annotations

import base64
import copy
import gc
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.commands.report import cycle_collector_paused
from feedbot.spans.aggregate import Aggregator, aggregate, to_ns
from feedbot.spans.model import CriticalPath, ReleaseData
from feedbot.spans.otlp_json import decode_document
from feedbot.spans.otlp_scan import Scanner, Unusual, count_versions
from tests.fakes.sdk_spans import T0, otlp_document, query, release_spans

SERVICE = "vault"


def document() -> dict[str, Any]:
    spans = release_spans(SERVICE, "1.0.0") + release_spans(SERVICE, "1.1.0", old=True)
    return otlp_document(spans)


def spans_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for r in doc["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]


def scanned(doc: Any, version: str = "1.0.0") -> ReleaseData:
    aggregator = Aggregator()
    Scanner.of(aggregator, query(SERVICE, version)).scan(json.dumps(doc).encode())
    return aggregator.result()


def validated(doc: Any, version: str = "1.0.0") -> ReleaseData:
    return aggregate(decode_document(doc), query(SERVICE, version))


def same(got: ReleaseData, want: ReleaseData) -> None:
    assert got.groups == want.groups and got.repeats == want.repeats
    assert got.traces == want.traces
    assert got.observed == want.observed
    for mine, theirs in zip(got.groups, want.groups, strict=True):
        assert mine.durations_ms.tolist() == theirs.durations_ms.tolist()
        assert mine.instances.tolist() == theirs.instances.tolist()
        assert mine.errored.tolist() == theirs.errored.tolist()
        assert mine.labels.tolist() == theirs.labels.tolist()
        assert _paths(mine.critical_path) == _paths(theirs.critical_path)


def _paths(path: CriticalPath | None) -> tuple[Any, ...] | None:
    """A critical path's rows as a sorted tuple (readers close traces in different orders)."""
    if path is None:
        return None
    rows = zip(path.own_ms.tolist(), path.child_ms.tolist(), path.calls.tolist(), strict=True)
    return path.spans, path.children, sorted(rows)


def labelled_document() -> dict[str, Any]:
    """:func:`document` with labels of every value type on its spans (and a repeated key)."""
    doc = document()
    values: list[dict[str, Any]] = [
        {"stringValue": "acme"},
        {"intValue": "42"},
        {"boolValue": True},
        {"doubleValue": 1.5},
    ]
    for i, span in enumerate(spans_of(doc)):
        span.setdefault("attributes", []).extend(
            [
                {"key": "tenant.id", "value": {"stringValue": f"t{i % 3}"}},
                {"key": "customer", "value": values[i % len(values)]},
                {"key": "server.address", "value": {"stringValue": f"db{i % 2}"}},
                {"key": "server.address", "value": values[(i + 1) % len(values)]},
                {"key": "http.response.status_code", "value": {"intValue": "200"}},
            ]
        )
    return doc


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_labels_are_read_fast_with_the_same_answer(version: str) -> None:
    doc = labelled_document()
    want = validated(doc, version)
    same(scanned(doc, version), want)
    keys = {key for g in want.groups for labels in g.label_sets for key, _ in labels}
    assert keys == {"customer", "server.address", "tenant.id"}  # status codes are outcomes
    values = {value for g in want.groups for labels in g.label_sets for _, value in labels}
    assert {"acme", "42", "true", "t0", "t2"} <= values and "1.5" not in values
    assert all(len(g.labels) == len(g.durations_ms) for g in want.groups)


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_the_exporters_shape_is_read_fast_with_the_same_answer(version: str) -> None:
    doc = document()
    same(scanned(doc, version), validated(doc, version))


def _base64_ids(doc: dict[str, Any]) -> None:
    span = spans_of(doc)[0]
    span["traceId"] = base64.b64encode(bytes.fromhex(span["traceId"])).decode()


def _upper_ids(doc: dict[str, Any]) -> None:
    spans_of(doc)[0]["spanId"] = spans_of(doc)[0]["spanId"].upper()


def _proto_names(doc: dict[str, Any]) -> None:
    span = spans_of(doc)[0]
    span["start_time_unix_nano"] = span.pop("startTimeUnixNano")


def _enum_names(doc: dict[str, Any]) -> None:
    for span in spans_of(doc):
        span["kind"] = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER"][
            min(span.get("kind", 0), 2)
        ]


def _bool_route(doc: dict[str, Any]) -> None:
    for span in spans_of(doc):
        for attribute in span.get("attributes", []):
            if attribute["key"] == "http.route":
                attribute["value"] = {"boolValue": True}


def _many_attributes(doc: dict[str, Any]) -> None:
    span = spans_of(doc)[0]
    extra = [{"key": f"k{i}", "value": {"intValue": "1"}} for i in range(130)]
    span["attributes"] = extra + span.get("attributes", [])


@pytest.mark.parametrize(
    "change",
    [_base64_ids, _upper_ids, _proto_names, _enum_names, _bool_route, _many_attributes],
)
def test_other_shapes_are_handed_to_the_validating_decoder(change: Any, tmp_path: Path) -> None:
    doc = document()
    change(doc)
    with pytest.raises(Unusual):
        scanned(doc)

    (tmp_path / "spans.jsonl").write_text(json.dumps(doc) + "\n")
    got = OtlpFileBackend([str(tmp_path / "spans.jsonl")]).collect(query(SERVICE, "1.0.0"))
    same(got, validated(copy.deepcopy(doc)))


def test_blocks_of_other_releases_are_skipped_unread() -> None:
    doc = document()
    for block in doc["resourceSpans"]:
        if "1.1.0" in json.dumps(block["resource"]):  # a block 1.0.0's query never reads
            spans_of({"resourceSpans": [block]})[0]["traceId"] = "not hex at all"
    assert sum(g.count for g in scanned(doc).groups) == 32
    with pytest.raises(Unusual):
        scanned(doc, "1.1.0")


def test_versions_counts_spans_per_version_in_the_window(tmp_path: Path) -> None:
    doc = document()
    (tmp_path / "a.jsonl").write_text(json.dumps(doc) + "\n")
    backend = OtlpFileBackend([str(tmp_path / "*.jsonl")])
    end = T0 + timedelta(minutes=10)

    assert backend.versions(SERVICE, T0, end) == {"1.0.0": 32, "1.1.0": 32}
    assert backend.versions(SERVICE, T0, end, "production") == {"1.0.0": 32, "1.1.0": 32}
    assert backend.versions(SERVICE, T0, end, "staging") == {}
    assert backend.versions("other", T0, end) == {}
    assert backend.versions(SERVICE, T0 - timedelta(hours=1), end + timedelta(hours=1)) == {
        "1.0.0": 36,
        "1.1.0": 36,
    }


def test_versions_through_the_validating_decoder_agree(tmp_path: Path) -> None:
    doc = document()
    _proto_names(doc)
    counts: Counter[str] = Counter()
    with pytest.raises(Unusual):
        count_versions(
            json.dumps(doc).encode(),
            SERVICE,
            (to_ns(T0), to_ns(T0 + timedelta(minutes=10))),
            None,
            counts,
        )
    assert counts == Counter()
    (tmp_path / "a.jsonl").write_text(json.dumps(doc) + "\n")
    backend = OtlpFileBackend([str(tmp_path / "a.jsonl")])
    assert backend.versions(SERVICE, T0, T0 + timedelta(minutes=10)) == {"1.0.0": 32, "1.1.0": 32}


def test_the_report_pauses_the_cycle_collector_and_restores_it() -> None:
    assert gc.isenabled()
    with cycle_collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with cycle_collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
