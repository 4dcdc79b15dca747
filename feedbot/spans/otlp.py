"""Decoding OTLP/HTTP trace exports into span rows; pure, no I/O.

Accepts an ``ExportTraceServiceRequest`` as protobuf (``application/x-protobuf``) or OTLP/JSON
(``application/json``: hex ids, 64-bit integers as strings or numbers, enums as integers or
names, lowerCamelCase keys, proto field names tolerated), optionally gzip-compressed. Everything
a sender controls is bounded (attribute count, key and value length, nesting, events) so a
hostile payload cannot grow the store beyond a predictable size per span.
"""

from __future__ import annotations

import base64
import functools
import math
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from feedbot.errors import WebhookRejected
from feedbot.spans.rows import LIMITS, ROW_KEYS, Columns, SpanRow, rows_of
from feedbot.spans.semconv import is_exception_event

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_ATTRIBUTES = 128
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = 4096
MAX_ITEMS = 64
MAX_DEPTH = 4
MAX_EVENTS = 8
MAX_INT64 = 2**63 - 1
KINDS = ("INTERNAL", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_ERROR = 2
#: Bytes of a gzip member first fed to the inflater, doubled up to the most (:func:`decompress`).
GZIP_FIRST_CHUNK, GZIP_MAX_CHUNK = 64, 256 * 1024
#: Gzip members accepted in one body: exporters send one; thousands only cost the receiver time.
MAX_GZIP_MEMBERS = 10_000


@dataclass(frozen=True)
class Resource:
    """The resource attributes feedbot keeps on every span row."""

    service: str
    version: str | None
    environment: str | None
    instance: str | None

    @classmethod
    def from_attributes(cls, attributes: dict[str, Any]) -> Resource:
        """Read both semantic-convention generations (``deployment.environment[.name]``)."""

        def pick(field: str, *keys: str) -> str | None:
            for key in keys:
                if attributes.get(key) not in (None, ""):
                    return text(str(attributes[key]), LIMITS[field])
            return None

        return cls(
            service=pick("service", "service.name") or "unknown_service",
            version=pick("version", "service.version"),
            environment=pick(
                "environment", "deployment.environment.name", "deployment.environment"
            ),
            instance=pick("instance", "service.instance.id", "host.name"),
        )


def media_type(content_type: str | None) -> str:
    """The bare media type of a ``Content-Type`` header, lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(
    body: bytes,
    content_encoding: str | None,
    max_bytes: int,
    *,
    max_members: int | None = MAX_GZIP_MEMBERS,
) -> bytes:
    """Undo ``Content-Encoding``, refusing output over ``max_bytes`` (gzip bombs).

    Args:
        body: the body as received.
        content_encoding: the ``Content-Encoding`` header: ``gzip``, ``identity`` or None.
        max_bytes: the largest output accepted.
        max_members: the most gzip members accepted in one body; None for no limit.

    Raises:
        WebhookRejected: 415 for an unknown encoding, 413 over either limit, 400 for corrupt gzip.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise WebhookRejected(
            415, f"Content-Encoding: {encoding} is not supported; send gzip or identity"
        )
    # Each member is fed in chunks that start small and double: its unused_data (the bytes after
    # it) is then at most about its own size, not the rest of the body, so a body of many small
    # members costs linear time, and a large member is still read in large chunks.
    view, pos, out, members = memoryview(body), 0, bytearray(), 0
    while pos < len(view):
        members += 1
        if max_members is not None and members > max_members:
            raise WebhookRejected(
                413, f"body: more than {max_members} gzip members; send one gzip stream"
            )
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        size = GZIP_FIRST_CHUNK
        while not inflater.eof and pos < len(view):
            chunk = view[pos : pos + size]
            pos, size = pos + len(chunk), min(size * 2, GZIP_MAX_CHUNK)
            try:
                out += inflater.decompress(chunk, max_bytes + 1 - len(out))
            except zlib.error as exc:
                raise WebhookRejected(400, f"body: not valid gzip ({exc})") from None
            if len(out) > max_bytes:
                raise WebhookRejected(
                    413, f"body: over the limit of {max_bytes} bytes decompressed"
                )
        if not inflater.eof:
            raise WebhookRejected(400, "body: gzip stream is truncated")
        pos -= len(inflater.unused_data)
    return bytes(out)


def text(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` cut to ``limit`` characters, storable everywhere (no NUL, no lone surrogates)."""
    value = value[:limit]
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd")


def leaf(value: Any) -> Any:
    """A scalar attribute value made safe for a JSON column: bounded text, finite numbers."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or infinities (PostgreSQL refuses them); keep OTLP/JSON's spelling.
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return base64.b64encode(value[:MAX_VALUE_CHARS]).decode("ascii")
    return value


#: The duration of a span without a (valid) end time: counted, never timed.
UNTIMED = -1


def duration_ns(start: int, end: int) -> int:
    """``end - start``, or :data:`UNTIMED` when the end is missing (0) or before the start."""
    return end - start if end > 0 and end >= start else UNTIMED


def span_row(
    resource: Resource,
    *,
    ids: tuple[str, str, str | None],
    name: str,
    kind: int,
    times: tuple[int, int],
    error: bool,
    attributes: dict[str, Any],
    events: list[dict[str, Any]],
) -> SpanRow:
    """Assemble a row; ``ids`` is (trace, span, parent), ``times`` is (start, end) in ns."""
    route, method = attributes.get("http.route"), attributes.get("http.request.method")
    method = method if method is not None else attributes.get("http.method")
    return SpanRow(
        trace_id=ids[0],
        span_id=ids[1],
        parent_span_id=ids[2],
        service=resource.service,
        version=resource.version,
        environment=resource.environment,
        instance=resource.instance,
        name=text(name, LIMITS["name"]),
        kind=KINDS[kind] if 0 <= kind < len(KINDS) else "INTERNAL",
        route=text(str(route), LIMITS["route"]) if route else None,
        method=text(str(method), LIMITS["method"]).upper() if method else None,
        start_ns=times[0],
        duration_ns=duration_ns(*times),
        is_error=error,
        attributes=attributes,
        events=events,
    )


def reject(path: str, problem: str) -> WebhookRejected:
    """A 400 naming the field: ``resourceSpans[0].scopeSpans[1].spans[3].traceId: …``."""
    return WebhookRejected(400, f"{path}: {problem}")


# Protobuf ---------------------------------------------------------------------------------------


def too_many_spans(limit: int) -> WebhookRejected:
    """The 413 for a request of more than ``limit`` spans."""
    return WebhookRejected(
        413,
        f"body: more than {limit} spans in one request; send smaller batches "
        "(OTEL_BSP_MAX_EXPORT_BATCH_SIZE)",
    )


def decode_protobuf(data: bytes, *, max_spans: int | None = None) -> list[SpanRow]:
    """Rows of an OTLP/protobuf ``ExportTraceServiceRequest``, naming the field on failure.

    Args:
        data: the serialized request.
        max_spans: the most spans accepted; counted on the wire before anything is parsed.

    Raises:
        WebhookRejected: 400 naming the field, 413 over ``max_spans``.
    """
    return rows_of(decode_protobuf_columns(data, max_spans=max_spans))


def decode_protobuf_columns(data: bytes, *, max_spans: int | None = None) -> Columns:
    """:func:`decode_protobuf`'s rows as columns, no dict built per span (what ingest stores:
    the columns go to the store's COPY text or tuples as they are).

    Raises:
        WebhookRejected: 400 naming the field, 413 over ``max_spans``.
    """
    if max_spans is not None and count_protobuf_spans(data, max_spans) > max_spans:
        raise too_many_spans(max_spans)
    from google.protobuf.message import DecodeError

    request = _lean_request()()
    columns: Columns = {key: [] for key in ROW_KEYS}
    try:
        request.ParseFromString(data)
        for r, resource_spans in enumerate(request.resource_spans):
            attributes = _proto_attributes(resource_spans.resource.attributes)
            resource = Resource.from_attributes(attributes)
            for s, scope_spans in enumerate(resource_spans.scope_spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}]"
                _proto_spans(scope_spans.spans, resource, columns, where)
    except DecodeError as exc:
        raise WebhookRejected(400, f"body: not an ExportTraceServiceRequest ({exc})") from None
    return columns


@functools.cache
def _lean_request() -> Any:
    """``ExportTraceServiceRequest`` but that a span's ``attributes`` are ``repeated bytes``:
    the same wire format, each ``KeyValue`` left serialized (:func:`_raw_attributes`).

    upb builds a Python object for each ``KeyValue`` and ``AnyValue`` read, then for each of
    their fields: those were most of protobuf ingest's decoding (benchmarks/ingest.py). A
    span's attributes mostly repeat (route, method, code location), so the serialized pair is
    looked up in a cache of what it decodes to; a new one is read from the wire when it has the
    shape SDKs send (:func:`_pair`), else parsed as a real ``KeyValue``, checked and read as
    before. Every other field is the real message's: the copied descriptors point at the real
    types.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    pool = descriptor_pool.DescriptorPool()
    real = (common_pb2.DESCRIPTOR, resource_pb2.DESCRIPTOR, trace_pb2.DESCRIPTOR)
    for file in real:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
    lean = descriptor_pb2.FileDescriptorProto(
        name="feedbot/lean_trace.proto", package="feedbot.lean", syntax="proto3"
    )
    lean.dependency.extend(file.name for file in real)
    copies = (
        (trace_pb2.Span, "attributes", None),
        (trace_pb2.ScopeSpans, "spans", ".feedbot.lean.Span"),
        (trace_pb2.ResourceSpans, "scope_spans", ".feedbot.lean.ScopeSpans"),
        (
            trace_service_pb2.ExportTraceServiceRequest,
            "resource_spans",
            ".feedbot.lean.ResourceSpans",
        ),
    )
    for message, changed, target in copies:
        copy = lean.message_type.add()
        message.DESCRIPTOR.CopyToProto(copy)
        del copy.nested_type[:], copy.enum_type[:]  # the fields name the real ones
        for field in copy.field:
            if field.name != changed:
                continue
            if target is None:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                field.ClearField("type_name")
            else:
                field.type_name = target
    pool.Add(lean)
    found = pool.FindMessageTypeByName("feedbot.lean.ExportTraceServiceRequest")
    return message_factory.GetMessageClass(found)


def _proto_spans(spans: Any, resource: Resource, columns: Columns, where: str) -> None:
    """Append the rows of one ``scopeSpans``' spans to ``columns`` (the hot loop of protobuf
    ingest: the checks of :func:`span_row` inline, repeated texts from bounded caches)."""
    n = len(spans)
    for key in ("service", "version", "environment", "instance"):
        columns[key].extend([getattr(resource, key)] * n)
    trace_ids, span_ids, parents = (
        columns["trace_id"],
        columns["span_id"],
        columns["parent_span_id"],
    )
    names, kinds, routes, methods = (
        columns["name"],
        columns["kind"],
        columns["route"],
        columns["method"],
    )
    starts, durations, errors = columns["start_ns"], columns["duration_ns"], columns["is_error"]
    attributes_column, events_column = columns["attributes"], columns["events"]
    texts, kind_names, attributes_of = _TEXTS, KINDS, _raw_attributes
    for i, span in enumerate(spans):
        trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
        if len(trace_id) != 16 or len(span_id) != 8 or (parent and len(parent) != 8):
            path = f"{where}.spans[{i}]"
            _proto_id(trace_id, 16, f"{path}.traceId")
            _proto_id(span_id, 8, f"{path}.spanId")
            _proto_id(parent, 8, f"{path}.parentSpanId", required=False)
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        if start > MAX_INT64 or end > MAX_INT64:
            field, value = (
                ("startTimeUnixNano", start) if start > MAX_INT64 else ("endTimeUnixNano", end)
            )
            raise reject(f"{where}.spans[{i}].{field}", f"{value} is out of range")
        trace_ids.append(trace_id.hex())
        span_ids.append(span_id.hex())
        parents.append(parent.hex() if parent else None)
        name = span.name
        safe = texts.get(("name", name))
        if safe is None:
            safe = _cached(("name", name), text(name, LIMITS["name"]))
        names.append(safe)
        kind = span.kind
        kinds.append(kind_names[kind] if 0 <= kind < len(kind_names) else "INTERNAL")
        # A slice: iterating upb's repeated field takes it item by item, four times slower.
        attributes = attributes_of(span.attributes[:])
        route = attributes.get("http.route")
        method = attributes.get("http.request.method")
        if method is None:
            method = attributes.get("http.method")
        routes.append(_route(route) if route else None)
        methods.append(_method(method) if method else None)
        starts.append(start)
        durations.append(end - start if end > 0 and end >= start else UNTIMED)
        errors.append(span.status.code == STATUS_ERROR)
        attributes_column.append(attributes)
        events = span.events
        events_column.append(_proto_events(events) if events else [])


#: Safe texts of repeated span names, routes and methods (bounded like :data:`_KEYS`).
_TEXTS: dict[tuple[str, Any], str] = {}


def _cached(key: tuple[str, Any], safe: str) -> str:
    if len(_TEXTS) < MAX_CACHED_KEYS:
        _TEXTS[key] = safe
    return safe


def _route(route: Any) -> str:
    safe = _TEXTS.get(("route", route)) if type(route) is str else None
    if safe is None:
        safe = text(str(route), LIMITS["route"])
        if type(route) is str:
            _cached(("route", route), safe)
    return safe


def _method(method: Any) -> str:
    safe = _TEXTS.get(("method", method)) if type(method) is str else None
    if safe is None:
        safe = text(str(method), LIMITS["method"]).upper()
        if type(method) is str:
            _cached(("method", method), safe)
    return safe


def _proto_events(events: Any) -> list[dict[str, Any]]:
    kept = [
        {
            "name": text(event.name, MAX_KEY_CHARS),
            "time_ns": event.time_unix_nano,
            "attributes": _proto_attributes(event.attributes),
        }
        for event in events
        if is_exception_event(event.name)
    ]
    return kept[:MAX_EVENTS]


def _proto_id(raw: bytes, size: int, path: str, *, required: bool = True) -> str:
    if not raw and not required:
        return ""
    if len(raw) != size:
        raise reject(path, f"expected {size} bytes, got {len(raw)}")
    return raw.hex()


def _proto_attributes(attributes: Iterable[Any]) -> dict[str, Any]:
    # The hot loop of protobuf ingest: keys repeat (a cache of their safe text) and most values
    # are plain strings, ints or bools (checked here without the generic path's calls).
    out: dict[str, Any] = {}
    keys = _KEYS
    for attribute in attributes:
        if len(out) >= MAX_ATTRIBUTES:
            break
        raw = attribute.key
        key = keys.get(raw)
        if key is None:
            key = text(raw, MAX_KEY_CHARS)
            if len(keys) < MAX_CACHED_KEYS:
                keys[raw] = key
        value = attribute.value
        which = value.WhichOneof("value")
        if which == "string_value":
            string = value.string_value
            if len(string) > MAX_VALUE_CHARS or not string.isascii() or "\x00" in string:
                string = text(string)
            out[key] = string
        elif which == "int_value" or which == "bool_value":
            out[key] = getattr(value, which)
        else:
            out[key] = _proto_value(value)
    return out


def _raw_attributes(attributes: Iterable[bytes]) -> dict[str, Any]:
    """:func:`_proto_attributes` of serialized ``KeyValue`` messages: each from the cache of
    pairs seen, else parsed and read as that function reads it.

    Raises:
        DecodeError: a pair is not a valid ``KeyValue``.
    """
    out: dict[str, Any] = {}
    seen = _PAIRS
    for raw in attributes:
        if len(out) >= MAX_ATTRIBUTES:
            break
        pair = seen.get(raw)
        if pair is None:
            pair = _pair(raw)
            if len(raw) <= MAX_CACHED_PAIR_BYTES and type(pair[1]) in _IMMUTABLE:
                if len(seen) >= MAX_CACHED_PAIRS:
                    seen.clear()  # bounded; a new working set fills it again
                seen[raw] = pair
        out[pair[0]] = pair[1]
    return out


def _pair(raw: bytes) -> tuple[str, Any]:
    """The (key, value) of a serialized ``KeyValue``, as :func:`_proto_attributes` reads it.

    The shapes SDKs send (the key, then a string, integer, boolean or double value) are read
    from the wire here; anything else, or text that is not UTF-8, is parsed as a ``KeyValue``.
    """
    try:
        pair = _plain_pair(raw)
    except (ValueError, IndexError):  # UnicodeDecodeError is a ValueError
        pair = None
    if pair is not None:
        return pair
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    ((key, value),) = _proto_attributes([KeyValue.FromString(raw)]).items()
    return key, value


def _plain_pair(raw: bytes) -> tuple[str, Any] | None:
    end = len(raw)
    if raw[0] != 0x0A:  # key = 1, length-delimited
        return None
    size, pos = (raw[1], 2) if raw[1] < 0x80 else _varint(raw, 1, end)
    key_end = pos + size
    if key_end >= end or raw[key_end] != 0x12:  # value = 2, length-delimited
        return None
    raw_key = raw[pos:key_end].decode()
    at = key_end + 1
    size, pos = (raw[at], at + 1) if raw[at] < 0x80 else _varint(raw, at, end)
    if pos + size != end:
        return None
    value: Any
    if pos == end:
        value = None  # an empty AnyValue
    else:
        tag, pos = raw[pos], pos + 1
        if tag == 0x0A:  # string_value
            size, pos = (raw[pos], pos + 1) if raw[pos] < 0x80 else _varint(raw, pos, end)
            if pos + size != end:
                return None
            value = raw[pos:end].decode()
            if len(value) > MAX_VALUE_CHARS or not value.isascii() or "\x00" in value:
                value = text(value)
        elif tag in (0x10, 0x18):  # bool_value, int_value
            number, pos = _varint(raw, pos, end)
            if pos != end:
                return None
            number &= _UINT64  # as protobuf reads a varint into 64 bits
            value = bool(number) if tag == 0x10 else number - (number >> 63 << 64)
        elif tag == 0x21 and pos + 8 == end:  # double_value
            value = leaf(_DOUBLE.unpack_from(raw, pos)[0])
        else:
            return None
    key = _KEYS.get(raw_key)
    if key is None:
        key = text(raw_key, MAX_KEY_CHARS)
        if len(_KEYS) < MAX_CACHED_KEYS:
            _KEYS[raw_key] = key
    return key, value


#: Serialized attribute pairs and what they decode to (scalars only: a row may share them).
_PAIRS: dict[bytes, tuple[str, Any]] = {}
MAX_CACHED_PAIRS = 8192
MAX_CACHED_PAIR_BYTES = 512
_IMMUTABLE = (str, int, bool, float, type(None))
_DOUBLE = struct.Struct("<d")
_UINT64 = 2**64 - 1


#: Attribute keys seen by :func:`_proto_attributes` and their safe text (bounded: keys an
#: attacker varies stop being cached once it is full).
_KEYS: dict[str, str] = {}
MAX_CACHED_KEYS = 4096


def _proto_value(value: Any, depth: int = 0) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which not in ("array_value", "kvlist_value"):
        return leaf(getattr(value, which))
    if depth >= MAX_DEPTH:
        return "…"
    if which == "array_value":
        return [_proto_value(item, depth + 1) for item in value.array_value.values[:MAX_ITEMS]]
    pairs = value.kvlist_value.values[:MAX_ITEMS]
    return {text(kv.key, MAX_KEY_CHARS): _proto_value(kv.value, depth + 1) for kv in pairs}


def count_protobuf_spans(data: bytes, limit: int) -> int:
    """Spans in a serialized ``ExportTraceServiceRequest``, read from its wire format.

    Walks ``resource_spans`` (field 1) → ``scope_spans`` (2) → ``spans`` (2) by their length
    prefixes without building messages, and stops once the count passes ``limit``. A malformed
    body ends the count early: the parser that follows names what is wrong with it.
    """
    view, count = memoryview(data), 0
    try:
        for r_start, r_end in _delimited(view, 0, len(view), 1):
            for s_start, s_end in _delimited(view, r_start, r_end, 2):
                for _ in _delimited(view, s_start, s_end, 2):
                    count += 1
                    if count > limit:
                        return count
    except ValueError:
        pass
    return count


def _delimited(view: memoryview, pos: int, end: int, wanted: int) -> Iterable[tuple[int, int]]:
    """(start, end) of each length-delimited field numbered ``wanted`` in ``view[pos:end]``."""
    while pos < end:
        tag, pos = _varint(view, pos, end)
        wire = tag & 7
        if wire == 0:
            _, pos = _varint(view, pos, end)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            size, pos = _varint(view, pos, end)
            if pos + size > end:
                raise ValueError("truncated field")
            if tag >> 3 == wanted:
                yield pos, pos + size
            pos += size
        else:
            raise ValueError(f"wire type {wire}")


def _varint(view: memoryview | bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 64:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise ValueError("bad varint")
