"""Decoding OTLP/HTTP trace exports into span rows; pure, no I/O.

Accepts an ``ExportTraceServiceRequest`` as protobuf (``application/x-protobuf``) or OTLP/JSON
(``application/json``: hex ids, 64-bit integers as strings or numbers, enums as integers or
names, lowerCamelCase keys, proto field names tolerated), optionally gzip-compressed. Everything
a sender controls is bounded (attribute count, key and value length, nesting, events) so a
hostile payload cannot grow the store beyond a predictable size per span.
"""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from feedbot.errors import WebhookRejected
from feedbot.store.spans import LIMITS, SpanRow

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


def decode_request(
    body: bytes, *, content_type: str, content_encoding: str | None, max_bytes: int
) -> list[SpanRow]:
    """Decode an OTLP/HTTP trace export into span rows.

    Args:
        body: the request body as received.
        content_type: the ``Content-Type`` header; parameters such as ``charset`` are ignored.
        content_encoding: the ``Content-Encoding`` header: ``gzip``, ``identity`` or absent.
        max_bytes: the largest body accepted after decompression.

    Returns:
        One row per span, in payload order.

    Raises:
        WebhookRejected: 415 for an unsupported type or encoding, 413 when the decompressed body
            is too large, 400 when the body cannot be decoded, naming the field.
    """
    media = media_type(content_type)
    if media not in (PROTOBUF, JSON):
        raise WebhookRejected(
            415, f"Content-Type: {media or '(none)'} is not supported; send {PROTOBUF} or {JSON}"
        )
    data = decompress(body, content_encoding, max_bytes)
    if media == PROTOBUF:
        return _from_protobuf(data)
    return _from_json(data)


def media_type(content_type: str | None) -> str:
    """The bare media type of a ``Content-Type`` header, lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding``, refusing output over ``max_bytes`` (gzip bombs).

    Raises:
        WebhookRejected: 415 for an unknown encoding, 413 over the limit, 400 for corrupt gzip.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise WebhookRejected(
            415, f"Content-Encoding: {encoding} is not supported; send gzip or identity"
        )
    out = bytearray()
    rest = body
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise WebhookRejected(400, f"body: not valid gzip ({exc})") from None
        if len(out) > max_bytes:
            raise WebhookRejected(413, f"body: over the limit of {max_bytes} bytes decompressed")
        if not inflater.eof:
            raise WebhookRejected(400, "body: gzip stream is truncated")
        rest = inflater.unused_data
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


def is_exception_event(name: str) -> bool:
    """``exception``, or a domain event such as ``db.client.operation.exception``."""
    return name == "exception" or name.endswith(".exception")


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
        duration_ns=max(0, times[1] - times[0]),
        is_error=error,
        attributes=attributes,
        events=events,
    )


def reject(path: str, problem: str) -> WebhookRejected:
    """A 400 naming the field: ``resourceSpans[0].scopeSpans[1].spans[3].traceId: …``."""
    return WebhookRejected(400, f"{path}: {problem}")


# Protobuf ---------------------------------------------------------------------------------------


def _from_protobuf(data: bytes) -> list[SpanRow]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        raise WebhookRejected(400, f"body: not an ExportTraceServiceRequest ({exc})") from None
    rows: list[SpanRow] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = Resource.from_attributes(_proto_attributes(resource_spans.resource.attributes))
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                path = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                rows.append(_proto_span(span, resource, path))
    return rows


def _proto_span(span: Any, resource: Resource, path: str) -> SpanRow:
    ids = (
        _proto_id(span.trace_id, 16, f"{path}.traceId"),
        _proto_id(span.span_id, 8, f"{path}.spanId"),
        _proto_id(span.parent_span_id, 8, f"{path}.parentSpanId", required=False) or None,
    )
    for field, value in (
        ("startTimeUnixNano", span.start_time_unix_nano),
        ("endTimeUnixNano", span.end_time_unix_nano),
    ):
        if value > MAX_INT64:
            raise reject(f"{path}.{field}", f"{value} is out of range")
    events = [
        {
            "name": text(event.name, MAX_KEY_CHARS),
            "time_ns": event.time_unix_nano,
            "attributes": _proto_attributes(event.attributes),
        }
        for event in span.events
        if is_exception_event(event.name)
    ]
    return span_row(
        resource,
        ids=ids,
        name=span.name,
        kind=span.kind,
        times=(span.start_time_unix_nano, span.end_time_unix_nano),
        error=span.status.code == STATUS_ERROR,
        attributes=_proto_attributes(span.attributes),
        events=events[:MAX_EVENTS],
    )


def _proto_id(raw: bytes, size: int, path: str, *, required: bool = True) -> str:
    if not raw and not required:
        return ""
    if len(raw) != size:
        raise reject(path, f"expected {size} bytes, got {len(raw)}")
    return raw.hex()


def _proto_attributes(attributes: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in attributes:
        if len(out) >= MAX_ATTRIBUTES:
            break
        out[text(attribute.key, MAX_KEY_CHARS)] = _proto_value(attribute.value)
    return out


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


# OTLP/JSON --------------------------------------------------------------------------------------

KIND_NAMES = tuple(f"SPAN_KIND_{k}" for k in ("UNSPECIFIED", *KINDS[1:]))
STATUS_NAMES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
_HEX = re.compile(r"[0-9a-fA-F]*")
_INT = re.compile(r"-?[0-9]+")


def _from_json(data: bytes) -> list[SpanRow]:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise WebhookRejected(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise reject("body", "expected a JSON object")
    rows: list[SpanRow] = []
    for r_path, resource_spans in _items(document, "resourceSpans", ""):
        resource_obj = _object(_field(resource_spans, "resource"), f"{r_path}.resource")
        attributes = _json_attributes(resource_obj, f"{r_path}.resource")
        resource = Resource.from_attributes(attributes)
        for s_path, scope_spans in _items(resource_spans, "scopeSpans", r_path):
            for path, span in _items(scope_spans, "spans", s_path):
                rows.append(_json_span(span, resource, path))
    return rows


def _json_span(span: dict[str, Any], resource: Resource, path: str) -> SpanRow:
    ids = (
        _json_id(span, "traceId", 16, path),
        _json_id(span, "spanId", 8, path),
        _json_id(span, "parentSpanId", 8, path, required=False) or None,
    )
    times = (_json_time(span, "startTimeUnixNano", path), _json_time(span, "endTimeUnixNano", path))
    status = _object(_field(span, "status"), f"{path}.status")
    events = [
        {
            "name": text(event["name"], MAX_KEY_CHARS),
            "time_ns": _json_time(event, "timeUnixNano", e_path),
            "attributes": _json_attributes(event, e_path),
        }
        for e_path, event in _items(span, "events", path)
        if isinstance(event.get("name"), str) and is_exception_event(event["name"])
    ]
    name = _field(span, "name")
    if not isinstance(name, str | None):
        raise reject(f"{path}.name", "expected a string")
    return span_row(
        resource,
        ids=ids,
        name=name or "",
        kind=_json_enum(_field(span, "kind"), KIND_NAMES, f"{path}.kind"),
        times=times,
        error=_json_enum(_field(status, "code"), STATUS_NAMES, f"{path}.status.code")
        == STATUS_ERROR,
        attributes=_json_attributes(span, path),
        events=events[:MAX_EVENTS],
    )


@cache
def _snake(key: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), key)


def _field(obj: dict[str, Any], key: str) -> Any:
    """``obj[key]``, else the proto field name (``start_time_unix_nano``), else None."""
    value = obj.get(key)
    return obj.get(_snake(key)) if value is None else value


def _object(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise reject(path, "expected an object")
    return value


def _items(obj: dict[str, Any], key: str, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    where = f"{path}.{key}" if path else key
    value = _field(obj, key)
    if value is None:
        return
    if not isinstance(value, list):
        raise reject(where, "expected a list")
    for i, item in enumerate(value):
        yield f"{where}[{i}]", _object(item, f"{where}[{i}]")


def _json_id(obj: dict[str, Any], key: str, size: int, path: str, *, required: bool = True) -> str:
    value = _field(obj, key)
    if value in (None, "") and not required:
        return ""
    if isinstance(value, str) and len(value) == 2 * size and _HEX.fullmatch(value):
        return value.lower()
    if isinstance(value, str) and len(value) == 4 * ((size + 2) // 3):
        # Generic protobuf JSON encoders send base64; the OTLP spec says hex. Accept both.
        try:
            return base64.b64decode(value, validate=True).hex()
        except ValueError:
            pass
    raise reject(f"{path}.{key}", f"expected {2 * size} hex characters")


def _json_int(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise reject(path, "expected an integer")


def _json_time(obj: dict[str, Any], key: str, path: str) -> int:
    value = _json_int(_field(obj, key) or 0, f"{path}.{key}")
    if not 0 <= value <= MAX_INT64:
        raise reject(f"{path}.{key}", f"{value} is out of range")
    return value


def _json_enum(value: Any, names: tuple[str, ...], path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value in names:
        return names.index(value)
    return _json_int(value, path)


def _json_attributes(obj: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a_path, attribute in _items(obj, "attributes", path):
        if len(out) >= MAX_ATTRIBUTES:
            break
        key = attribute.get("key")
        if not isinstance(key, str):
            raise reject(f"{a_path}.key", "expected a string")
        out[text(key, MAX_KEY_CHARS)] = _json_value(attribute.get("value"), f"{a_path}.value")
    return out


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    """The ``AnyValue`` at ``where`` as a plain value: ``{"intValue": "42"}`` → 42."""
    any_value = _object(value, where)
    for key, expected in (("stringValue", str), ("boolValue", bool), ("bytesValue", str)):
        found = _field(any_value, key)
        if found is not None:
            if not isinstance(found, expected):
                raise reject(f"{where}.{key}", f"expected a {expected.__name__}")
            return leaf(found)
    if (found := _field(any_value, "intValue")) is not None:
        return _json_int(found, f"{where}.intValue")
    if (found := _field(any_value, "doubleValue")) is not None:
        if found in ("NaN", "Infinity", "-Infinity"):
            found = float(found)
        if not isinstance(found, int | float) or isinstance(found, bool):
            raise reject(f"{where}.doubleValue", "expected a number")
        return leaf(float(found))
    return _json_container(any_value, where, depth)


def _json_container(any_value: dict[str, Any], where: str, depth: int) -> Any:
    for key in ("arrayValue", "kvlistValue"):
        if _field(any_value, key) is None:
            continue
        if depth >= MAX_DEPTH:
            return "…"
        container = _object(_field(any_value, key), f"{where}.{key}")
        members = list(_items(container, "values", f"{where}.{key}"))[:MAX_ITEMS]
        if key == "arrayValue":
            return [_json_value(item, path, depth + 1) for path, item in members]
        return {
            text(str(pair.get("key")), MAX_KEY_CHARS): _json_value(
                pair.get("value"), f"{path}.value", depth + 1
            )
            for path, pair in members
        }
    return None
