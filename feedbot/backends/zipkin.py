"""Zipkin, through its v2 HTTP API: ``GET /api/v2/traces`` answering lists of v2 spans.

Differs from the contract in that Zipkin can only search (at most ``limit`` whole traces per
request, newest first), so a collect is a planned sample as for Jaeger
(:mod:`feedbot.backends.sampling`: operations from ``/api/v2/spans``, error traces by
``annotationQuery=error``, span counts estimated: Zipkin has no exact counts), and in its span
model:

* times are epoch **microseconds** (``timestamp``, ``duration``); query windows are epoch
  **milliseconds** (``endTs``, ``lookback``);
* service and span names are lower-cased by Zipkin on ingest, so the query's are too;
* resource attributes (``service.version``, ``deployment.environment[.name]``) are copied into
  every span's ``tags``, as flat strings;
* ``kind`` is absent for local (INTERNAL) spans; a span is an error when it has an ``error``
  tag (any value) or ``otel.status_code`` says so;
* exception events are annotations, ``exception|{json attributes}|0`` from the Collector's
  exporter or ``{"exception": {attributes}}`` from the OpenTelemetry SDK exporters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from datetime import datetime
from typing import Any

from feedbot.backends.http import Primitive, SearchBackend
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import SpanQuery
from feedbot.spans.otlp import (
    MAX_ATTRIBUTES,
    MAX_EVENTS,
    MAX_KEY_CHARS,
    Resource,
    leaf,
    span_row,
    text,
)
from feedbot.spans.rows import SpanRow
from feedbot.spans.semconv import is_exception_event

SEARCH = "/api/v2/traces"
SPAN_NAMES = "/api/v2/spans"
#: OTLP kind numbers (as :func:`feedbot.spans.otlp.span_row` takes them); absent = INTERNAL.
KINDS = {"SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
#: Tags that are resource attributes feedbot keeps in columns, not in ``attributes``.
RESOURCE_TAGS = frozenset(
    {
        "service.version",
        "deployment.environment",
        "deployment.environment.name",
        "service.instance.id",
        "host.name",
    }
)
#: Tags Zipkin stringified that feedbot reads as integers.
INTEGER_TAGS = frozenset(
    {
        "code.lineno",
        "code.line.number",
        "code.column",
        "code.column.number",
        "http.status_code",
        "http.response.status_code",
    }
)
STATEMENT_TAGS = frozenset({"db.query.text", "db.statement"})
ERROR_STATUSES = frozenset({"ERROR", "STATUS_CODE_ERROR"})
_HEX = re.compile(r"[0-9a-f]{1,32}")


class ZipkinBackend(SearchBackend):
    """Zipkin's query API (port 9411); ``filter_version`` sends
    ``annotationQuery=service.version=<version>`` (see :class:`SearchBackend` for the rest).

    Zipkin lowercases service and span names, so the query is matched lowercased.
    """

    name = "zipkin"
    trace_page = "/traces/{id}"

    def searched(self, query: SpanQuery) -> SpanQuery:
        """``query`` with its service and span name lowercased, as Zipkin stores them."""
        return dataclasses.replace(
            query,
            service=query.service.lower(),
            span_name=query.span_name.lower() if query.span_name is not None else None,
        )

    @staticmethod
    def fold(name: str) -> str:
        """Zipkin lower-cases span names on ingest."""
        return name.lower()

    def operations(self, service: str) -> list[str]:
        """The service's span names from ``/api/v2/spans`` (lower-cased, as Zipkin keeps them).

        Raises:
            BackendUnavailable: Zipkin did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        document = self.api.get_json(SPAN_NAMES, {"serviceName": service.lower()})
        if not isinstance(document, list):
            raise self.api.malformed(f"GET {SPAN_NAMES}", "body", "expected a list of names")
        return [str(name) for name in document if isinstance(name, str) and name]

    def find_traces(
        self,
        query: SpanQuery,
        start: datetime,
        end: datetime,
        *,
        limit: int,
        operation: str | None = None,
        errors: bool = False,
    ) -> list[SpanRow]:
        """Every span of the traces Zipkin finds for ``query``'s service in ``[start, end)``.

        Raises:
            BackendUnavailable: Zipkin did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        first_ms = to_ns(start) // 1_000_000
        end_ms = -(-to_ns(end) // 1_000_000)  # rounded up: the window must cover ``end``
        params: dict[str, Primitive] = {
            "serviceName": query.service.lower(),
            "endTs": end_ms,
            "lookback": end_ms - first_ms,
            "limit": limit,
        }
        name = operation if operation is not None else query.span_name
        if name is not None:
            params["spanName"] = name.lower()
        terms = []
        if self.filter_version and query.version:
            terms.append(f"service.version={query.version}")
        if errors:
            terms.append("error")  # a bare key: spans carrying an error tag
        if terms:
            params["annotationQuery"] = " and ".join(terms)
        return self.decode_traces(self.api.get_json(SEARCH, params))

    def decode_traces(self, document: Any) -> list[SpanRow]:
        """Span rows of a ``/api/v2/traces`` answer: a list of traces, each a list of spans.

        Raises:
            BackendResponseError: naming the first field not in Zipkin's v2 shape.
        """
        if not isinstance(document, list):
            raise self.api.malformed(f"GET {SEARCH}", "body", "expected a list of traces")
        rows: list[SpanRow] = []
        for t, trace in enumerate(document):
            if not isinstance(trace, list):
                raise self.api.malformed(f"GET {SEARCH}", f"[{t}]", "expected a list of spans")
            for s, span in enumerate(trace):
                try:
                    rows.append(zipkin_row(span, f"[{t}][{s}]"))
                except ValueError as exc:
                    raise self.api.malformed(f"GET {SEARCH}", *exc.args) from None
        return rows


def zipkin_row(span: Any, where: str = "span") -> SpanRow:
    """One Zipkin v2 span as a span row.

    Args:
        span: the span object as decoded from JSON.
        where: its path in the answer, for error messages.

    Raises:
        ValueError: ``(field path, problem)`` for a span not in Zipkin's v2 shape.
    """
    if not isinstance(span, dict):
        raise ValueError(where, "expected a span object")
    tags = _tags(span, where)
    endpoint = span.get("localEndpoint") or {}
    service = endpoint.get("serviceName") if isinstance(endpoint, dict) else None
    resource = Resource.from_attributes({**tags, "service.name": service or ""})
    kind = span.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{where}.kind", f"{kind!r} is not a Zipkin span kind")
    start_ns = _micros(span, "timestamp", where) * 1000
    attributes = {k: _typed(k, v) for k, v in tags.items() if k not in RESOURCE_TAGS}
    if "sql.query" in attributes and not STATEMENT_TAGS & attributes.keys():
        # Brave's JDBC instrumentation names the statement sql.query.
        attributes["db.statement"] = attributes["sql.query"]
    name = span.get("name")
    return span_row(
        resource,
        ids=(
            _hex_id(span, "traceId", where, width=32),
            _hex_id(span, "id", where, width=16),
            _hex_id(span, "parentId", where, width=16) if span.get("parentId") else None,
        ),
        name=name if isinstance(name, str) else "",
        kind=KINDS.get(kind, 1) if isinstance(kind, str) else 1,
        times=(start_ns, start_ns + _micros(span, "duration", where) * 1000),
        error="error" in tags or tags.get("otel.status_code") in ERROR_STATUSES,
        attributes=dict(list(attributes.items())[:MAX_ATTRIBUTES]),
        events=_exception_events(span, where)[:MAX_EVENTS],
    )


def _tags(span: dict[str, Any], where: str) -> dict[str, str]:
    tags = span.get("tags")
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise ValueError(f"{where}.tags", "expected an object of strings")
    return {text(str(k), MAX_KEY_CHARS): text(str(v)) for k, v in tags.items()}


def _typed(key: str, value: str) -> Any:
    if key in INTEGER_TAGS and value.lstrip("-").isdigit():
        return int(value)
    return value


def _micros(span: dict[str, Any], key: str, where: str) -> int:
    """An epoch-µs timestamp or a µs duration; absent (incomplete spans) reads as 0."""
    value = span.get(key)
    if value is None:
        return 0
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63 // 1000:
        raise ValueError(f"{where}.{key}", "expected microseconds as a non-negative integer")
    return value


def _hex_id(span: dict[str, Any], key: str, where: str, *, width: int) -> str:
    value = span.get(key)
    if not isinstance(value, str) or not _HEX.fullmatch(value.lower()) or len(value) > width:
        raise ValueError(f"{where}.{key}", f"expected up to {width} hex characters")
    # Zipkin pads ids it stores to 16 or 32 characters; do the same for lenient senders.
    return value.lower().zfill(16 if len(value) <= 16 else 32)


def _exception_events(span: dict[str, Any], where: str) -> list[dict[str, Any]]:
    annotations = span.get("annotations")
    if annotations is None:
        return []
    if not isinstance(annotations, list):
        raise ValueError(f"{where}.annotations", "expected a list")
    events: list[dict[str, Any]] = []
    for i, annotation in enumerate(annotations):
        value = annotation.get("value") if isinstance(annotation, dict) else None
        if not isinstance(value, str):
            raise ValueError(f"{where}.annotations[{i}].value", "expected a string")
        name, attributes = parse_annotation(value)
        if is_exception_event(name):
            timestamp = _micros(annotation, "timestamp", f"{where}.annotations[{i}]")
            events.append({"name": name, "time_ns": timestamp * 1000, "attributes": attributes})
    return events


def parse_annotation(value: str) -> tuple[str, dict[str, Any]]:
    """The event name and attributes an exporter encoded into an annotation value.

    Understands ``name|{json}|dropped`` (OpenTelemetry Collector), ``{"name": {json}}``
    (OpenTelemetry SDK Zipkin exporters); anything else is a bare event name.
    """
    if value.startswith("{"):
        document = _json_object(value)
        if document is not None and len(document) == 1:
            name, attributes = next(iter(document.items()))
            if isinstance(attributes, dict):
                return text(name, MAX_KEY_CHARS), _attributes(attributes)
    name, bar, rest = value.partition("|")
    body, bar2, dropped = rest.rpartition("|")
    if bar and bar2 and dropped.isdigit():
        document = _json_object(body)
        if document is not None:
            return text(name, MAX_KEY_CHARS), _attributes(document)
    return text(value, MAX_KEY_CHARS), {}


def _json_object(value: str) -> dict[str, Any] | None:
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _attributes(document: dict[str, Any]) -> dict[str, Any]:
    pairs = list(document.items())[:MAX_ATTRIBUTES]
    return {
        text(str(k), MAX_KEY_CHARS): leaf(v) if not isinstance(v, dict | list) else text(str(v))
        for k, v in pairs
    }
