"""Reading OTLP/JSON documents straight into an :class:`Aggregator`, fast; pure, no I/O.

``feedbot report --traces`` reads files of a million spans and more. The validating decoder
(:func:`feedbot.backends.otlp_json.decode_document`) builds a complete span row per span, every
attribute decoded and bounded, because ``POST /v1/traces`` must survive hostile bodies and the
embedded store keeps what it decodes. Reading a file for one release needs far less, so
:class:`Scanner`:

- decodes each ``resourceSpans``' resource once and skips the whole block, without looking at
  its spans, when its service, version or environment is not the query's;
- reads only the span fields and the attributes the analysis uses
  (:data:`~feedbot.backends.semconv.READ_KEYS`), builds no row dict, and hands the aggregator
  plain values (:meth:`Aggregator.add_span`); each distinct group key is labelled once.

It accepts the shape the Collector's file exporter writes: lowerCamelCase keys, lower-case hex
ids, integer enums, 64-bit integers as decimal strings, string or integer values for the
attributes it reads. Anything else in a document (proto field names, base64 or upper-case ids,
enum names, other value types, more than ``MAX_ATTRIBUTES`` attributes) raises :class:`Unusual`
before anything of that document is counted; the caller then decodes it with the validating
decoder, so the answer is the same either way. What it skips (blocks and spans outside the
query, attributes it does not read) it does not validate.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from feedbot.backends.aggregate import Aggregator, GroupKey, to_ns
from feedbot.backends.base import SpanQuery
from feedbot.backends.otlp import (
    KINDS,
    MAX_ATTRIBUTES,
    MAX_INT64,
    MAX_VALUE_CHARS,
    STATUS_ERROR,
    Resource,
    text,
)
from feedbot.backends.otlp_json import decode_resource, exception_events
from feedbot.backends.semconv import CODE_KEYS, READ_KEYS, Extras, extras_of, normalize_statement
from feedbot.errors import WebhookRejected
from feedbot.store.spans import LIMITS

#: Keys the OTLP/JSON mapping gives each object; any other key (a proto field name) is unusual.
_DOCUMENT_KEYS = ("resourceSpans", frozenset(("resourceSpans",)))
_RESOURCE_SPANS_KEYS = ("scopeSpans", frozenset(("scopeSpans", "resource", "schemaUrl")))
_SCOPE_SPANS_KEYS = ("spans", frozenset(("spans", "scope", "schemaUrl")))
_SPAN_KEYS = frozenset(
    ("traceId", "spanId", "parentSpanId", "traceState", "flags", "name", "kind", "status")
    + ("startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount")
    + ("events", "droppedEventsCount", "links", "droppedLinksCount")
)
_NOT_ERROR = frozenset((None, 0, 1, "STATUS_CODE_UNSET", "STATUS_CODE_OK"))
_trace_id = re.compile(r"[0-9a-f]{32}").fullmatch
_span_id = re.compile(r"[0-9a-f]{16}").fullmatch
_MAX_INT64_TEXT = str(MAX_INT64)
#: What :meth:`Aggregator.add_span` takes, gathered per document before any of it is counted.
Fields = tuple[
    str, str, str | None, GroupKey, int, int, str | None, bool, str | None, Extras | None
]
_RawKey = tuple[Any, Any, Any, Any]


class Unusual(Exception):
    """A document outside the common shape: decode it with the validating decoder instead."""


@dataclass(frozen=True)
class Target:
    """Where a resource block's spans go: those starting in ``[low, high)``, to ``aggregator``."""

    low: int
    high: int
    aggregator: Aggregator
    span_name: str | None = None

    @classmethod
    def of(cls, query: SpanQuery, aggregator: Aggregator) -> Target:
        """The target of ``query``'s window and span name."""
        return cls(to_ns(query.start), to_ns(query.end), aggregator, query.span_name)


#: Per ``service.version``, the targets of a block of that version (None: spans without one).
Router = Callable[[str | None], Sequence[Target]]


class Scanner:
    """Feeds the spans of one service, found in parsed OTLP/JSON documents, to aggregators.

    Args:
        service: whose spans are read; blocks of other services are skipped unread.
        environment: as :attr:`SpanQuery.environment` (blocks naming none match too).
        route: the targets for each version; a block whose version has none is skipped
            (unless its spans are counted).
        count_window: when given, spans per version starting in this window of nanoseconds
            are counted in :attr:`counts` (spans without a version are not).
    """

    def __init__(
        self,
        service: str,
        environment: str | None,
        route: Router,
        count_window: tuple[int, int] | None = None,
    ) -> None:
        self._service, self._environment, self._route = service, environment, route
        self._count_window = count_window
        self.counts: Counter[str] = Counter()
        self._keys: dict[_RawKey, GroupKey] = {}

    @classmethod
    def of(cls, aggregator: Aggregator, query: SpanQuery) -> Scanner:
        """A scanner feeding the spans of one query to ``aggregator``."""
        targets = (Target.of(query, aggregator),)
        return cls(
            query.service, query.environment, lambda v: targets if v == query.version else ()
        )

    def scan(self, document: Any) -> None:
        """Count the matching spans of one parsed ``ExportTraceServiceRequest``.

        Raises:
            Unusual: the document is not in the common shape; nothing of it was counted.
        """
        found: list[tuple[Aggregator, Fields]] = []
        counts: Counter[str] = Counter()
        try:
            for r, resource_spans in enumerate(_members(document, _DOCUMENT_KEYS)):
                resource = _resource(resource_spans, r)
                if resource.service != self._service or (
                    self._environment is not None
                    and resource.environment not in (None, self._environment)
                ):
                    continue
                version = resource.version
                targets = self._route(version)
                counted = self._count_window if version else None
                if not targets and counted is None:
                    continue
                for scope_spans in _members(resource_spans, _RESOURCE_SPANS_KEYS):
                    spans = _members(scope_spans, _SCOPE_SPANS_KEYS)
                    seen = self._spans(spans, resource.instance, targets, counted, found)
                    if seen:
                        counts[cast(str, version)] += seen
        except (KeyError, TypeError, ValueError, AttributeError, WebhookRejected):
            raise Unusual from None
        for aggregator, fields in found:
            aggregator.add_span(*fields)
        self.counts.update(counts)

    def _spans(
        self,
        spans: list[Any],
        instance: str | None,
        targets: Sequence[Target],
        counted: tuple[int, int] | None,
        found: list[tuple[Aggregator, Fields]],
    ) -> int:
        """The hot loop of ``feedbot report --traces``: one pass per span, no avoidable call.

        Returns how many spans started in ``counted``.
        """
        keys, span_keys, seen = self._keys, _SPAN_KEYS, 0
        count_low, count_high = counted or (0, -1)
        for span in spans:
            if not span.keys() <= span_keys:
                raise Unusual
            start = span.get("startTimeUnixNano")
            if (
                type(start) is str
                and start.isdigit()
                and start.isascii()
                and (len(start) < 19 or (len(start) == 19 and start <= _MAX_INT64_TEXT))
            ):
                start = int(start)
            else:
                start = nanos(start)
            if count_low <= start < count_high:
                seen += 1
            key: GroupKey | None = None
            for target in targets:
                if not target.low <= start < target.high:
                    continue
                if key is None:
                    attributes = read_attributes(span.get("attributes"))
                    method = attributes.get("http.request.method")
                    if method is None:
                        method = attributes.get("http.method")
                    kind = span.get("kind")
                    if type(kind) is not int and kind is not None:
                        raise Unusual  # True == 1: the cached keys must not accept it
                    raw = (span.get("name"), kind, method, attributes.get("http.route"))
                    key = keys.get(raw)
                    if key is None:
                        key = keys[raw] = group_key(*raw)
                    fields = _fields(span, key, start, attributes, instance)
                if target.span_name is None or key[0] == target.span_name:
                    found.append((target.aggregator, fields))
        return seen


def _fields(
    span: dict[str, Any],
    key: GroupKey,
    start: int,
    attributes: dict[str, Any],
    instance: str | None,
) -> Fields:
    status, events = span.get("status"), span.get("events")
    is_error = status is not None and _is_error(status)
    extras = None
    if events or is_error or not CODE_KEYS.isdisjoint(attributes):
        events = exception_events(span, "span") if events else ()
        extras = extras_of(events, attributes, is_error)
    statement = attributes.get("db.query.text") or attributes.get("db.statement")
    trace_id, span_id, parent = span.get("traceId"), span.get("spanId"), span.get("parentSpanId")
    if type(trace_id) is not str or not _trace_id(trace_id):
        raise Unusual
    if type(span_id) is not str or not _span_id(span_id):
        raise Unusual
    if not parent:
        if parent is not None and parent != "":
            raise Unusual
        parent = None
    elif type(parent) is not str or not _span_id(parent):
        raise Unusual
    end = span.get("endTimeUnixNano")
    if (
        type(end) is str
        and end.isdigit()
        and end.isascii()
        and (len(end) < 19 or (len(end) == 19 and end <= _MAX_INT64_TEXT))
    ):
        end = int(end)
    else:
        end = nanos(end)
    return (
        trace_id,
        span_id,
        parent,
        key,
        start,
        end - start if end > start else 0,
        instance,
        is_error,
        normalize_statement(str(statement)) if statement else None,
        extras,
    )


def count_versions(
    document: Any,
    service: str,
    window: tuple[int, int],
    environment: str | None,
    counts: Counter[str],
) -> None:
    """Add to ``counts`` the spans per ``service.version`` of ``service`` starting in ``window``.

    Raises:
        Unusual: the document is not in the common shape; ``counts`` is unchanged.
    """
    scanner = Scanner(service, environment or None, lambda version: (), window)
    scanner.scan(document)
    counts.update(scanner.counts)


def nanos(value: Any) -> int:
    """A ``*UnixNano`` field: a decimal string (or an integer) in ``[0, 2**63)``."""
    if (
        type(value) is str
        and value.isascii()
        and value.isdigit()
        and (len(value) < 19 or (len(value) == 19 and value <= _MAX_INT64_TEXT))
    ):
        return int(value)
    if type(value) is int and 0 <= value <= MAX_INT64:
        return value
    raise Unusual


def read_attributes(attributes: Any) -> dict[str, Any]:
    """The attributes the analysis reads, decoded as the validating decoder would."""
    found: dict[str, Any] = {}
    if not attributes:
        return found
    if type(attributes) is not list or len(attributes) > MAX_ATTRIBUTES:
        raise Unusual
    for attribute in attributes:
        key = attribute["key"]
        if key in READ_KEYS:
            found[key] = _value(attribute.get("value"))
    return found


def group_key(name: Any, kind: Any, method: Any, route: Any) -> GroupKey:
    """The aggregator's (name, kind, method, route) of raw span fields, bounded like a row's."""
    if not (name is None or type(name) is str) or not (kind is None or type(kind) is int):
        raise Unusual
    kind = kind or 0
    return (
        text(name or "", LIMITS["name"]),
        KINDS[kind] if 0 <= kind < len(KINDS) else "INTERNAL",
        text(str(method), LIMITS["method"]).upper() if method else None,
        text(str(route), LIMITS["route"]) if route else None,
    )


def _value(value: Any) -> Any:
    if type(value) is not dict or len(value) != 1:
        raise Unusual
    found = value.get("stringValue")
    if type(found) is str:
        return found if len(found) <= MAX_VALUE_CHARS and "\x00" not in found else text(found)
    found = value.get("intValue")
    if type(found) is int or (type(found) is str and found.isascii() and found.isdigit()):
        return int(found)
    raise Unusual


def _is_error(status: Any) -> bool:
    if status is None:
        return False
    code = status.get("code")  # AttributeError (caught by the caller) when not an object
    if code == STATUS_ERROR or code == "STATUS_CODE_ERROR":
        return True
    if code in _NOT_ERROR and type(code) is not bool:
        return False
    raise Unusual


def _members(container: Any, shape: tuple[str, frozenset[str]]) -> list[Any]:
    """The list under an OTLP/JSON container's list-valued key, the container's keys checked.

    ``shape`` is (the list's key, every key the container may have).
    """
    member, keys = shape
    if type(container) is not dict or not container.keys() <= keys:
        raise Unusual
    items = container.get(member)
    if items is None:
        return []
    if type(items) is not list:
        raise Unusual
    return items


def _resource(resource_spans: Any, r: int) -> Resource:
    if type(resource_spans) is not dict:
        raise Unusual
    return decode_resource(resource_spans, f"resourceSpans[{r}]")
