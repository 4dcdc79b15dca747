"""Decoding OTLP/JSON trace exports into span rows; pure, no I/O.

OTLP/JSON is protobuf's JSON mapping with the OTLP deviations: hex ids (base64 from generic
protobuf encoders is tolerated), 64-bit integers as strings or numbers, enums as integers or
names, lowerCamelCase keys (proto field names tolerated). Used for ``POST /v1/traces`` with
``application/json`` (through :func:`feedbot.spans.otlp_http.decode_request`) and for the lines of
the Collector's file exporter (:mod:`feedbot.backends.otlp_file`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import orjson

from feedbot.errors import WebhookRejected
from feedbot.spans.otlp import (
    KINDS,
    MAX_ATTRIBUTES,
    MAX_DEPTH,
    MAX_EVENTS,
    MAX_INT64,
    MAX_ITEMS,
    MAX_KEY_CHARS,
    STATUS_ERROR,
    Resource,
    leaf,
    reject,
    span_row,
    text,
    too_many_spans,
)
from feedbot.spans.rows import SpanRow
from feedbot.spans.semconv import is_exception_event

KIND_NAMES = tuple(f"SPAN_KIND_{k}" for k in ("UNSPECIFIED", *KINDS[1:]))
STATUS_NAMES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
_HEX = re.compile(r"[0-9a-fA-F]*")
_INT = re.compile(r"-?[0-9]+")
_NOT_SCALAR = object()
_MAX_INT64_TEXT = str(MAX_INT64)


def loads(data: bytes | str) -> Any:
    """Parse JSON with orjson, falling back to the standard library for what orjson refuses.

    orjson is several times faster but stricter (lone surrogates, integers over 64 bits); the
    fallback keeps the standard library's answer for those.

    Raises:
        WebhookRejected: 400, the text is not JSON.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise WebhookRejected(400, f"body: not valid JSON ({exc})") from None


def decode_json(data: bytes | str, *, max_spans: int | None = None) -> list[SpanRow]:
    """Decode one OTLP/JSON ``ExportTraceServiceRequest`` into span rows.

    Args:
        data: the JSON text.
        max_spans: the most spans accepted; counted before any row is built.

    Raises:
        WebhookRejected: 400 naming the field, as for
            :func:`feedbot.spans.otlp_http.decode_request`; 413 over ``max_spans``.
    """
    return decode_document(loads(data), max_spans=max_spans)


def decode_document(document: Any, *, max_spans: int | None = None) -> list[SpanRow]:
    """Decode an already-parsed OTLP/JSON document (see :func:`decode_json`)."""
    if not isinstance(document, dict):
        raise reject("body", "expected a JSON object")
    if max_spans is not None and count_json_spans(document) > max_spans:
        raise too_many_spans(max_spans)
    rows: list[SpanRow] = []
    for r_path, resource_spans in _items(document, "resourceSpans", ""):
        resource = decode_resource(resource_spans, r_path)
        for s_path, scope_spans in _items(resource_spans, "scopeSpans", r_path):
            for path, span in _items(scope_spans, "spans", s_path):
                rows.append(_json_span(span, resource, path))
    return rows


def count_json_spans(document: dict[str, Any]) -> int:
    """Spans in a parsed OTLP/JSON request, from the lengths of its ``spans`` lists.

    Raises:
        WebhookRejected: 400 naming a ``resourceSpans`` or ``scopeSpans`` that is malformed.
    """
    count = 0
    for r_path, resource_spans in _items(document, "resourceSpans", ""):
        for _, scope_spans in _items(resource_spans, "scopeSpans", r_path):
            spans = _field(scope_spans, "spans")
            count += len(spans) if isinstance(spans, list) else 0
    return count


def decode_resource(resource_spans: dict[str, Any], path: str) -> Resource:
    """The :class:`Resource` of one ``resourceSpans`` object found at ``path``.

    Raises:
        WebhookRejected: 400 naming the field that is malformed.
    """
    resource = _object(_field(resource_spans, "resource"), f"{path}.resource")
    return Resource.from_attributes(_json_attributes(resource, f"{path}.resource"))


def exception_events(span: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The exception events of the span at ``path`` (at most ``MAX_EVENTS``), as rows hold them.

    Raises:
        WebhookRejected: 400 naming the field that is malformed.
    """
    events = [
        {
            "name": text(event["name"], MAX_KEY_CHARS),
            "time_ns": _json_time(event, "timeUnixNano", e_path),
            "attributes": _json_attributes(event, e_path),
        }
        for e_path, event in _items(span, "events", path)
        if isinstance(event.get("name"), str) and is_exception_event(event["name"])
    ]
    return events[:MAX_EVENTS]


def _json_span(span: dict[str, Any], resource: Resource, path: str) -> SpanRow:
    ids = (
        _json_id(span, "traceId", 16, path),
        _json_id(span, "spanId", 8, path),
        _json_id(span, "parentSpanId", 8, path, required=False) or None,
    )
    times = (_json_time(span, "startTimeUnixNano", path), _json_time(span, "endTimeUnixNano", path))
    status = _object(_field(span, "status"), f"{path}.status")
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
        events=exception_events(span, path),
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
    value = obj.get(key)
    if type(value) is str and len(value) == 2 * size and _HEX.fullmatch(value):
        return value.lower()
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
    value = obj.get(key)
    if (
        type(value) is str
        and value.isascii()
        and value.isdigit()
        and (len(value) < 19 or (len(value) == 19 and value <= _MAX_INT64_TEXT))
    ):
        return int(value)
    value = _json_int(_field(obj, key) or 0, f"{path}.{key}")
    if not 0 <= value <= MAX_INT64:
        raise reject(f"{path}.{key}", f"{value} is out of range")
    return value


def _json_enum(value: Any, names: tuple[str, ...], path: str) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if isinstance(value, str) and value in names:
        return names.index(value)
    return _json_int(value, path)


def _json_attributes(obj: dict[str, Any], path: str) -> dict[str, Any]:
    items = obj.get("attributes")
    if items is None:
        return {}
    if type(items) is not list:
        raise reject(f"{path}.attributes", "expected a list")
    out: dict[str, Any] = {}
    for i, attribute in enumerate(items):
        if len(out) >= MAX_ATTRIBUTES:
            break
        if type(attribute) is not dict:
            raise reject(f"{path}.attributes[{i}]", "expected an object")
        key = attribute.get("key")
        if type(key) is not str:
            raise reject(f"{path}.attributes[{i}].key", "expected a string")
        value = _scalar(attribute.get("value"))
        if value is _NOT_SCALAR:
            value = _json_value(attribute.get("value"), f"{path}.attributes[{i}].value")
        out[text(key, MAX_KEY_CHARS)] = value
    return out


def _scalar(value: Any) -> Any:
    """The common well-formed one-key ``AnyValue`` scalars, decoded without building paths.

    Anything else (containers, proto field names, wrong types) returns ``_NOT_SCALAR`` and goes
    through :func:`_json_value`, which gives the same answer or names what is wrong.
    """
    if type(value) is not dict or len(value) != 1:
        return _NOT_SCALAR
    ((key, found),) = value.items()
    kind = type(found)
    if key == "stringValue" and kind is str:
        return text(found)
    if key == "intValue" and (kind is int or (kind is str and found.isascii() and found.isdigit())):
        return int(found)
    if (key == "boolValue" and kind is bool) or (key == "doubleValue" and kind is float):
        return leaf(found)
    return _NOT_SCALAR


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
