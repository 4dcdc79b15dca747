"""The fast OTLP/JSON reader against the validating decoder on mutated exporter documents.

A document in the Collector's shape has one place changed: a value replaced (by a value of
another type, an edge-case string or number, a container), a key dropped, or a key added.
Whatever comes out, the fast reader either hands the document over (:class:`Unusual`) or gives
the validating decoder's answer. The one leniency it is allowed: where the validating decoder
rejects the document outright (a field the fast reader skips unread is malformed), any answer.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedbot.errors import WebhookRejected
from feedbot.spans.aggregate import Aggregator
from feedbot.spans.model import ReleaseData
from feedbot.spans.otlp_scan import Scanner, Unusual
from tests.fakes.sdk_spans import query
from tests.unit.spans.test_otlp_scan import SERVICE, document, same, validated

FUZZ = settings(
    max_examples=600,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-2, 8)
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(
        ["", "0", "２", " 1", "+1", "1_0", "9" * 25, "00000000000000000001", "STATUS_CODE_ERROR"]
        + ["9223372036854775808", "SPAN_KIND_SERVER", "ABCDEF0123456789", "\x00", "\ud800"]
        + ["/a\x00b", "x" * 5000, "é" * 3000]
    )
    | st.sampled_from([[], {}, [1], {"stringValue": "x"}, {"intValue": "7"}, {"boolValue": True}])
)
BASE = document()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(BASE)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from(PATHS))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "drop" and isinstance(parent, dict):
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[
            draw(
                st.sampled_from(
                    ["extra", "trace_id", "value", "key", "code", "events", "parentSpanId"]
                )
            )
        ] = draw(LEAVES)
    else:
        parent[last] = draw(LEAVES)
    return doc


@FUZZ
@given(doc=mutated())
def test_the_fast_reader_answers_as_the_validating_decoder_or_hands_over(
    doc: dict[str, Any],
) -> None:
    aggregator = Aggregator()
    try:
        text = json.dumps(doc).encode("utf-8", "surrogatepass")
        Scanner.of(aggregator, query(SERVICE, "1.0.0")).scan(text)
    except Unusual:
        return
    try:
        want = validated(doc)
    except WebhookRejected:
        return
    same(aggregator.result(), want)


def _set_everywhere(doc: dict[str, Any], field: str, value: Any) -> None:
    """Set ``field`` (``status.code``, ``attr:<key>`` or a span key) on every span."""
    for block in doc["resourceSpans"]:
        for scope in block["scopeSpans"]:
            for span in scope["spans"]:
                if field == "status.code":
                    span["status"] = {"code": value}
                elif field.startswith("attr:"):
                    key = field.removeprefix("attr:")
                    span["attributes"] = [a for a in span.get("attributes", []) if a["key"] != key]
                    span["attributes"].append({"key": key, "value": value})
                else:
                    span[field] = value


EDGES: list[Any] = [
    None,
    0,
    1,
    2,
    3,
    -1,
    True,
    "",
    "1",
    "2",
    "x",
    "STATUS_CODE_OK",
    "STATUS_CODE_ERROR",
]
EDGES += [2**63, "9223372036854775807", "9223372036854775808", "0" * 25 + "1", "1e3", 1.0]
EDGES += [[], {}, "0123456789abcdef", "0123456789ABCDEF", "0" * 32, "é"]
EDGES += [{"stringValue": "/x"}, {"intValue": "7"}, {"intValue": 7}, {"intValue": "-7"}]
EDGES += [{"boolValue": True}, {"stringValue": "a", "intValue": "1"}, {"doubleValue": 1.5}]


@pytest.mark.parametrize(
    "field",
    ["status.code", "kind", "startTimeUnixNano", "endTimeUnixNano", "parentSpanId", "spanId"]
    + ["traceId", "name", "attr:http.route", "attr:code.line.number", "attr:db.query.text"],
)
def test_edge_values_of_every_read_field_answer_alike(field: str) -> None:
    edge_values_answer_alike(field, _scanned)


def _scanned(doc: dict[str, Any]) -> ReleaseData:
    aggregator = Aggregator()
    Scanner.of(aggregator, query(SERVICE, "1.0.0")).scan(json.dumps(doc).encode())
    return aggregator.result()


def edge_values_answer_alike(field: str, read: Callable[[dict[str, Any]], ReleaseData]) -> None:
    """Each edge value set on every span: ``read`` hands over or answers as the decoder."""
    for value in EDGES:
        doc = copy.deepcopy(BASE)
        _set_everywhere(doc, field, value)
        try:
            got = read(doc)
        except Unusual:
            continue
        try:
            want = validated(doc)
        except WebhookRejected:
            continue
        same(got, want)
