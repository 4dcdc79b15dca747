"""OTLP/HTTP decoding: protobuf and OTLP/JSON, both attribute generations, every rejection."""

from __future__ import annotations

import base64
import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from feedbot.errors import WebhookRejected
from feedbot.spans import otlp
from feedbot.spans.otlp import (
    MAX_ATTRIBUTES,
    MAX_DEPTH,
    MAX_EVENTS,
    MAX_KEY_CHARS,
    MAX_VALUE_CHARS,
    UNTIMED,
    count_protobuf_spans,
    decompress,
)
from feedbot.spans.otlp_http import decode_request
from feedbot.spans.rows import LIMITS, SpanRow
from feedbot.store.spans import Span as SpanModel

PB = "application/x-protobuf"
JS = "application/json"
MB = 1024 * 1024
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
PARENT = bytes.fromhex("eee19b7ec3c1b173")
START = 1_764_000_000_000_000_000


def decode(body: bytes, content_type: str = JS, encoding: str | None = None) -> list[SpanRow]:
    return decode_request(body, content_type=content_type, content_encoding=encoding, max_bytes=MB)


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
        return out
    return AnyValue(string_value=value)


def request(
    resource: dict[str, Any], spans: list[Span], *, scopes: int = 1
) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    resource_spans.resource.attributes.extend(kv(k, v) for k, v in resource.items())
    for _ in range(scopes - 1):
        resource_spans.scope_spans.add()
    resource_spans.scope_spans.add().spans.extend(spans)
    return message


def span(name: str = "GET /orders/{id}", **fields: Any) -> Span:
    attributes = fields.pop("attributes", {})
    events = fields.pop("events", [])
    message = Span(
        trace_id=TRACE,
        span_id=SPAN,
        parent_span_id=PARENT,
        name=name,
        kind=fields.pop("kind", Span.SPAN_KIND_SERVER),
        start_time_unix_nano=START,
        end_time_unix_nano=fields.pop("end", START + 12_500_000),
        **fields,
    )
    message.attributes.extend(kv(k, v) for k, v in attributes.items())
    for event_name, event_attributes in events:
        event = message.events.add(name=event_name, time_unix_nano=START + 1)
        event.attributes.extend(kv(k, v) for k, v in event_attributes.items())
    return message


def to_json(message: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON as the spec has it: protobuf JSON with hex ids and integer enums."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for item in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in item:
                        item[key] = base64.b64decode(item[key]).hex()
    return document


def both(message: ExportTraceServiceRequest) -> list[list[SpanRow]]:
    """Decode ``message`` as protobuf and as OTLP/JSON."""
    return [
        decode(message.SerializeToString(), PB),
        decode(json.dumps(to_json(message)).encode(), JS),
    ]


NEW = {
    "service.name": "checkout",
    "service.version": "1.4.2",
    "deployment.environment.name": "production",
    "service.instance.id": "pod-1",
}
OLD = {
    "service.name": "checkout",
    "service.version": "1.4.2",
    "deployment.environment": "production",
    "host.name": "pod-1",
}


def test_fixture_file_decodes(fixtures_dir: Path) -> None:
    rows = decode((fixtures_dir / "otlp" / "trace.json").read_bytes())

    assert rows == [
        SpanRow(
            trace_id="5b8efff798038103d269b633813fc60c",
            span_id="eee19b7ec3c1b174",
            parent_span_id="eee19b7ec3c1b173",
            service="my.service",
            version=None,
            environment=None,
            instance=None,
            name="I'm a server span",
            kind="SERVER",
            route=None,
            method=None,
            start_ns=1544712660000000000,
            duration_ns=1_000_000_000,
            is_error=False,
            attributes={"my.span.attr": "some value"},
            events=[],
        )
    ]


@pytest.mark.parametrize("resource", [NEW, OLD], ids=["semconv-new", "semconv-old"])
def test_resource_attributes_of_both_generations(resource: dict[str, Any]) -> None:
    for rows in both(request(resource, [span()])):
        (row,) = rows
        assert (row["service"], row["version"], row["environment"], row["instance"]) == (
            "checkout",
            "1.4.2",
            "production",
            "pod-1",
        )


def test_new_environment_name_wins_over_the_deprecated_one() -> None:
    resource = {**OLD, "deployment.environment.name": "staging"}
    (row,) = decode(request(resource, [span()]).SerializeToString(), PB)
    assert row["environment"] == "staging"


def test_missing_service_name_is_unknown_service() -> None:
    (row,) = decode(request({}, [span()]).SerializeToString(), PB)
    assert (row["service"], row["version"]) == ("unknown_service", None)


@pytest.mark.parametrize(
    ("attributes", "method"),
    [
        ({"http.route": "/orders/{id}", "http.request.method": "get"}, "GET"),
        ({"http.route": "/orders/{id}", "http.method": "GET"}, "GET"),
        ({"http.route": "/orders/{id}"}, None),
    ],
    ids=["new", "old", "none"],
)
def test_route_and_method_columns(attributes: dict[str, Any], method: str | None) -> None:
    for rows in both(request(NEW, [span(attributes=attributes)])):
        assert (rows[0]["route"], rows[0]["method"]) == ("/orders/{id}", method)


def test_span_fields_and_attributes_of_both_generations_are_kept() -> None:
    attributes = {
        "code.function.name": "shop.orders.load",
        "code.file.path": "shop/orders.py",
        "code.line.number": 42,
        "code.function": "load",
        "code.namespace": "shop.orders",
        "code.lineno": 42,
        "db.query.text": "SELECT * FROM orders WHERE id = ?",
        "db.statement": "SELECT * FROM orders WHERE id = ?",
        "db.system.name": "postgresql",
        "db.system": "postgresql",
        "ratio": 0.5,
        "inf": float("-inf"),
        "cached": False,
        "tags": ["a", "b"],
        "nested": {"k": [1, 2]},
        "raw": b"\x00\x01",
    }
    message = request(
        NEW,
        [span("SELECT orders", kind=Span.SPAN_KIND_CLIENT, attributes=attributes)],
    )
    for rows in both(message):
        (row,) = rows
        assert row["kind"] == "CLIENT"
        assert row["duration_ns"] == 12_500_000
        assert row["start_ns"] == START
        assert row["attributes"] == {**attributes, "raw": "AAE=", "inf": "-Infinity"}


def test_error_status_and_exception_events() -> None:
    events = [
        ("exception", {"exception.type": "ValueError", "exception.message": "boom"}),
        ("db.client.operation.exception", {"exception.type": "TimeoutError"}),
        ("cache.miss", {"key": "x"}),
    ]
    failed = span(status=Status(code=Status.STATUS_CODE_ERROR, message="boom"), events=events)
    ok = span(status=Status(code=Status.STATUS_CODE_OK))
    for rows in both(request(NEW, [failed, ok])):
        assert [row["is_error"] for row in rows] == [True, False]
        assert rows[0]["events"] == [
            {
                "name": "exception",
                "time_ns": START + 1,
                "attributes": {"exception.type": "ValueError", "exception.message": "boom"},
            },
            {
                "name": "db.client.operation.exception",
                "time_ns": START + 1,
                "attributes": {"exception.type": "TimeoutError"},
            },
        ]
        assert rows[1]["events"] == []


def test_unspecified_kind_is_internal_and_root_span_has_no_parent() -> None:
    message = request(NEW, [span(kind=Span.SPAN_KIND_UNSPECIFIED)])
    message.resource_spans[0].scope_spans[0].spans[0].parent_span_id = b""
    for rows in both(message):
        assert (rows[0]["kind"], rows[0]["parent_span_id"]) == ("INTERNAL", None)


def test_end_before_start_or_no_end_is_untimed_and_end_at_start_is_zero() -> None:
    for end, want in ((START - 5, UNTIMED), (0, UNTIMED), (START, 0)):
        for rows in both(request(NEW, [span(end=end)])):
            assert rows[0]["duration_ns"] == want, end


def test_json_accepts_enum_names_numbers_proto_field_names_and_uppercase_hex() -> None:
    document = {
        "resource_spans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"string_value": "a"}}]
                },
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE.hex().upper(),
                                "span_id": SPAN.hex().upper(),
                                "name": "work",
                                "kind": "SPAN_KIND_PRODUCER",
                                "start_time_unix_nano": START,
                                "endTimeUnixNano": str(START + 1000),
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "attributes": [
                                    {"key": "n", "value": {"intValue": 7}},
                                    {"key": "s", "value": {"int_value": "-8"}},
                                    {"key": "nan", "value": {"doubleValue": "NaN"}},
                                    {"key": "empty", "value": {}},
                                    {"key": "arr", "value": {"arrayValue": {}}},
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    (row,) = decode(json.dumps(document).encode(), "application/json; charset=utf-8")
    assert (row["trace_id"], row["kind"], row["is_error"]) == (TRACE.hex(), "PRODUCER", True)
    assert row["duration_ns"] == 1000
    assert row["attributes"] == {"n": 7, "s": -8, "nan": "NaN", "empty": None, "arr": []}


def test_json_accepts_base64_ids_from_generic_protobuf_encoders() -> None:
    document = json_format.MessageToDict(request(NEW, [span()]))
    (row,) = decode(json.dumps(document).encode())
    assert (row["trace_id"], row["span_id"]) == (TRACE.hex(), SPAN.hex())


@pytest.mark.parametrize("media", [PB, JS])
def test_gzip_bodies_including_multiple_members(media: str) -> None:
    message = request(NEW, [span()])
    raw = message.SerializeToString() if media == PB else json.dumps(to_json(message)).encode()
    half = len(raw) // 2
    assert len(decode(gzip.compress(raw), media, "gzip")) == 1
    assert len(decode(gzip.compress(raw[:half]) + gzip.compress(raw[half:]), media, "GZIP")) == 1
    assert len(decode(raw, media, "identity")) == 1


def test_empty_bodies_are_no_spans() -> None:
    assert decode(b"", PB) == []
    assert decode(b"{}", JS) == []
    assert decode(b'{"resourceSpans": []}', JS) == []


def test_hostile_payloads_are_bounded() -> None:
    attributes: dict[str, Any] = {f"k{i}": "v" for i in range(MAX_ATTRIBUTES + 50)}
    attributes["k0"] = "x" * (MAX_VALUE_CHARS * 3) + "\x00"
    attributes["k1"] = list(range(1000))
    attributes["k2"] = {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
    attributes["k3"] = "nul\x00byte"
    long_key = "y" * (MAX_KEY_CHARS * 2)
    attributes = {long_key: 1, **attributes}
    events = [("exception", {"exception.type": "E"})] * (MAX_EVENTS * 3)
    resource = {**NEW, "service.name": "s" * 5000}
    message = request(resource, [span("n" * 5000, attributes=attributes, events=events)])
    for rows in both(message):
        (row,) = rows
        kept = row["attributes"]
        assert len(kept) == MAX_ATTRIBUTES
        assert long_key[:MAX_KEY_CHARS] in kept
        assert len(kept["k0"]) == MAX_VALUE_CHARS
        assert len(kept["k1"]) == 64
        assert kept["k3"] == "nul\ufffdbyte"
        assert "…" in json.dumps(kept["k2"], ensure_ascii=False)
        assert len(row["events"]) == MAX_EVENTS
        assert len(row["service"]) == LIMITS["service"]
        assert len(row["name"]) == LIMITS["name"]
    assert MAX_DEPTH < 6


def test_string_limits_match_the_span_columns() -> None:
    for column, width in LIMITS.items():
        assert SpanModel.__table__.c[column].type.length == width  # type: ignore[attr-defined]


def reject(body: bytes, content_type: str = JS, encoding: str | None = None) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        decode(body, content_type, encoding)
    return caught.value


@pytest.mark.parametrize(
    ("content_type", "named"),
    [("text/plain", "text/plain"), ("", "(none)"), ("application/grpc", "application/grpc")],
)
def test_unsupported_content_type_is_415(content_type: str, named: str) -> None:
    error = reject(b"{}", content_type)
    assert error.status == 415
    assert error.message == (
        f"Content-Type: {named} is not supported; send application/x-protobuf or application/json"
    )


def test_unsupported_content_encoding_is_415() -> None:
    error = reject(b"{}", JS, "br")
    assert (error.status, error.message) == (
        415,
        "Content-Encoding: br is not supported; send gzip or identity",
    )


def test_gzip_bomb_is_413() -> None:
    error = reject(gzip.compress(b" " * (MB + 1)), JS, "gzip")
    assert (error.status, error.message) == (
        413,
        f"body: over the limit of {MB} bytes decompressed",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not gzip", "body: not valid gzip"),
        (gzip.compress(b"{}")[:-12], "body: gzip stream is truncated"),
    ],
)
def test_broken_gzip_is_400(body: bytes, message: str) -> None:
    error = reject(body, JS, "gzip")
    assert error.status == 400
    assert error.message.startswith(message)


def test_broken_protobuf_is_400() -> None:
    error = reject(b"\xff\xff\xff not protobuf", PB)
    assert error.status == 400
    assert error.message.startswith("body: not an ExportTraceServiceRequest")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("trace_id", b"\x01" * 8, "traceId: expected 16 bytes, got 8"),
        ("trace_id", b"", "traceId: expected 16 bytes, got 0"),
        ("span_id", b"\x01" * 3, "spanId: expected 8 bytes, got 3"),
        ("parent_span_id", b"\x01" * 9, "parentSpanId: expected 8 bytes, got 9"),
        ("start_time_unix_nano", 2**64 - 1, f"startTimeUnixNano: {2**64 - 1} is out of range"),
    ],
)
def test_protobuf_wrong_fields_are_400_naming_the_field(
    field: str, value: Any, message: str
) -> None:
    bad = span()
    setattr(bad, field, value)
    error = reject(request(NEW, [span(), bad], scopes=2).SerializeToString(), PB)
    assert (error.status, error.message) == (
        400,
        f"resourceSpans[0].scopeSpans[1].spans[1].{message}",
    )


def json_request(**overrides: Any) -> dict[str, Any]:
    document = to_json(request(NEW, [span(), span(), span(), span()], scopes=2))
    document["resourceSpans"][0]["scopeSpans"][1]["spans"][3].update(overrides)
    return document


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"startTimeUnixNano": "soon"}, "startTimeUnixNano: expected an integer"),
        ({"startTimeUnixNano": True}, "startTimeUnixNano: expected an integer"),
        ({"endTimeUnixNano": "-1"}, "endTimeUnixNano: -1 is out of range"),
        ({"traceId": "xyz"}, "traceId: expected 32 hex characters"),
        ({"traceId": None}, "traceId: expected 32 hex characters"),
        ({"spanId": "00f067aa0ba902b7ff"}, "spanId: expected 16 hex characters"),
        ({"parentSpanId": 12}, "parentSpanId: expected 16 hex characters"),
        ({"name": 5}, "name: expected a string"),
        ({"kind": "SERVER_ISH"}, "kind: expected an integer"),
        ({"status": "error"}, "status: expected an object"),
        ({"status": {"code": [2]}}, "status.code: expected an integer"),
        ({"attributes": {"a": 1}}, "attributes: expected a list"),
        ({"attributes": [{"key": 1, "value": {}}]}, "attributes[0].key: expected a string"),
        (
            {"attributes": [{"key": "a", "value": {"stringValue": 1}}]},
            "attributes[0].value.stringValue: expected a str",
        ),
        (
            {"attributes": [{"key": "a", "value": {"doubleValue": "x"}}]},
            "attributes[0].value.doubleValue: expected a number",
        ),
        (
            {"attributes": [{"key": "a", "value": {"arrayValue": {"values": [1]}}}]},
            "attributes[0].value.arrayValue.values[0]: expected an object",
        ),
        (
            {"events": [{"name": "exception", "timeUnixNano": "x"}]},
            "events[0].timeUnixNano: expected an integer",
        ),
        ({"events": ["exception"]}, "events[0]: expected an object"),
    ],
)
def test_json_wrong_fields_are_400_naming_the_field(
    overrides: dict[str, Any], message: str
) -> None:
    error = reject(json.dumps(json_request(**overrides)).encode())
    assert (error.status, error.message) == (
        400,
        f"resourceSpans[0].scopeSpans[1].spans[3].{message}",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"\xff\xfe", "body: not valid JSON"),
        (b"[]", "body: expected a JSON object"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected a list"),
        (b'{"resourceSpans": [1]}', "resourceSpans[0]: expected an object"),
        (b'{"resourceSpans": [{"resource": []}]}', "resourceSpans[0].resource: expected an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": {}}]}]}',
            "resourceSpans[0].scopeSpans[0].spans: expected a list",
        ),
        (b"[" * 100_000, "body: not valid JSON"),
    ],
)
def test_json_wrong_shapes_are_400(body: bytes, message: str) -> None:
    error = reject(body)
    assert error.status == 400
    assert error.message.startswith(message)


@pytest.mark.parametrize(
    "sizes",
    [[1] * 3000, [70_000, 3, 300_000, 1, 1], [5, 64, 65, 128, 129, 1_000_000], [0, 0, 1]],
    ids=["many-tiny", "mixed", "chunk-edges", "empty-members"],
)
def test_every_member_is_read_whatever_their_sizes(sizes: list[int]) -> None:
    # Incompressible members straddle the inflater's chunks; tiny ones share one chunk.
    rng = random.Random(sum(sizes))
    parts = [rng.randbytes(n) for n in sizes]
    body = b"".join(gzip.compress(part, mtime=0) for part in parts)
    assert decompress(body, "gzip", 16 * MB) == b"".join(parts)


def test_a_truncated_member_among_many_is_400() -> None:
    whole = gzip.compress(b"{}", mtime=0)
    body = whole * 500 + whole[:-4] + whole * 500
    with pytest.raises(WebhookRejected, match="not valid gzip|truncated"):
        decompress(body, "gzip", MB)
    with pytest.raises(WebhookRejected, match="truncated"):
        decompress(whole * 500 + whole[:-4], "gzip", MB)


def test_the_wire_count_of_spans_matches_the_parsed_message() -> None:
    message = ExportTraceServiceRequest()
    for r in range(3):
        resource_spans = message.resource_spans.add(schema_url="https://opentelemetry.io/s")
        resource_spans.resource.attributes.extend([kv("service.name", f"svc-{r}"), kv("n", r)])
        for s in range(r + 1):
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "lib"
            for i in range(r + s):
                scope.spans.add(
                    trace_id=TRACE,
                    span_id=SPAN,
                    name=f"op{i}",
                    kind=2,
                    start_time_unix_nano=START,
                    end_time_unix_nano=START + 7,
                    attributes=[kv("big", 2**62), kv("x", 1.5)],
                )
    data = message.SerializeToString()
    total = sum(len(sc.spans) for rs in message.resource_spans for sc in rs.scope_spans)
    assert total == 12
    assert count_protobuf_spans(data, 100) == total
    assert count_protobuf_spans(data, 3) == 4  # stops once past the limit
    assert count_protobuf_spans(data[:-5], 100) < total  # truncated: the parser names it
    assert len(decode(data, PB)) == total
    with pytest.raises(WebhookRejected) as info:
        decode_request(data, content_type=PB, content_encoding=None, max_bytes=MB, max_spans=9)
    assert info.value.status == 413 and "more than 9 spans" in info.value.message


def test_gzip_members_are_capped() -> None:
    body = gzip.compress(b"ab") * 3
    assert decompress(body, "gzip", MB, max_members=3) == b"ababab"
    with pytest.raises(WebhookRejected) as info:
        decompress(body, "gzip", MB, max_members=2)
    assert info.value.status == 413 and "more than 2 gzip members" in info.value.message


def test_serialized_attributes_decode_as_the_real_messages_do() -> None:
    # Span attributes are read from their serialized pairs (a cache of pairs seen, the rest
    # parsed as KeyValue): every value type, twice (the second time from the cache), reads as
    # the real message's attributes read.
    attributes: dict[str, Any] = {
        "http.route": "/vaults/{id}",
        "text": "caf\u00e9 \x00 tab\there",
        "n": -(2**63),
        "yes": True,
        "ratio": 0.25,
        "nan": float("nan"),
        "raw": b"\x00\x01",
        "list": [1, "a", [True]],
        "map": {"a": {"b": 1}},
    }
    message = request(NEW, [span(attributes=attributes)])
    message.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="empty")
    message.resource_spans[0].scope_spans[0].spans[0].attributes.add(
        key="yes", value=AnyValue(string_value="again")
    )
    real = message.resource_spans[0].scope_spans[0].spans[0].attributes
    expected = otlp._proto_attributes(real)
    assert expected["empty"] is None and expected["yes"] == "again"
    first, second = (decode(message.SerializeToString(), PB)[0] for _ in range(2))
    for row in (first, second):
        assert list(row["attributes"]) == list(expected)
        assert json.dumps(row["attributes"]) == json.dumps(expected)
    assert first["attributes"]["list"] is not second["attributes"]["list"]  # never shared


def test_an_attribute_that_is_not_utf8_is_400() -> None:
    body = request(NEW, [span(attributes={"k": "\u00e9\u00e9"})]).SerializeToString()
    broken = body.replace("\u00e9\u00e9".encode(), b"\xff\xfe\xff\xfe")
    assert len(broken) == len(body)
    error = reject(broken, PB)
    assert error.status == 400
    assert error.message.startswith("body: not an ExportTraceServiceRequest")


def test_pairs_read_from_the_wire_are_what_the_real_keyvalue_reads() -> None:
    # The common shapes are read from the serialized pair itself; every shape, length around
    # the one-byte varint boundary and odd text must read as the parsed message does.
    draw = random.Random(16)
    texts = ["", "a", "x" * 127, "y" * 128, "z" * 300, "caf\u00e9", "nul\x00", "\u2603" * 50]
    texts.append("w" * (MAX_VALUE_CHARS + 10))
    values: list[Any] = [*texts, 0, 1, -1, 2**63 - 1, -(2**63), 300, True, False]
    values += [0.0, -0.0, 1.5, float("nan"), float("inf"), b"\x00\xff", [1, "a"], {"k": 2}]
    cases = [kv(key, value) for key in texts[:-1] for value in values]
    cases += [KeyValue(key="empty"), KeyValue(key="no value at all")]
    cases[-1].ClearField("value")
    draw.shuffle(cases)
    for plain in ("v" * 200, -(2**63), True, 0.25):  # read from the wire, not parsed
        assert otlp._plain_pair(kv("k", plain).SerializeToString()) == ("k", plain)
    for case in cases:
        raw = case.SerializeToString()
        expected = otlp._proto_attributes([KeyValue.FromString(raw)])
        key, value = otlp._pair(raw)
        assert {key: value}.keys() == expected.keys()
        assert json.dumps(value) == json.dumps(expected[key]), (case, value)
        assert type(value) is type(expected[key])
