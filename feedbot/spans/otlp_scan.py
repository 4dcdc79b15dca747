"""Reading OTLP/JSON lines straight into an :class:`Aggregator`, fast; pure, no I/O.

``feedbot report --traces`` reads files of a million spans and more, a block of lines at a time
(:mod:`feedbot.spans.otlp_arrow`); this module reads a line at a time: the lines of a block
Arrow cannot take, a byte range of a file (:mod:`feedbot.spans.otlp_parallel`), one
document. Its answer is the one both other readers are held to. The validating decoder
(:func:`feedbot.spans.otlp_json.decode_document`) builds a complete span row per span, every
attribute decoded and bounded, because ``POST /v1/traces`` must survive hostile bodies and the
embedded store keeps what it decodes. Reading a file for one release needs far less, so
:class:`Scanner`:

- decodes each line with msgspec into typed structs of only the fields OTLP/JSON defines, in
  C: no dict per object, and the fields the analysis does not read (links, scopes, dropped
  counts, other attributes' nested values) are kept as raw bytes, never parsed into objects;
- decodes each ``resourceSpans``' resource once per distinct text, and skips the whole block
  when its service, version or environment is not the query's;
- reads only the span fields and the attributes the analysis uses
  (:data:`~feedbot.spans.semconv.READ_KEYS`), checks the ids and times of a block at once,
  builds no row dict, and hands the aggregator plain values (:meth:`Aggregator.add_span`);
  each distinct group key is labelled once.

It accepts the shape the Collector's file exporter writes: lowerCamelCase keys, lower-case hex
ids, integer enums, 64-bit integers as decimal strings, string or integer values for the
attributes it reads. Anything else in a document (proto field names, base64 or upper-case ids,
enum names, other value types, more than ``MAX_ATTRIBUTES`` attributes, JSON msgspec cannot
read) raises :class:`Unusual` before anything of that document is counted; the caller then
decodes it with the validating decoder, so the answer is the same either way. What it skips
(blocks and spans outside the query, attributes it does not read) it checks only for shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from msgspec import Raw, Struct

from feedbot.errors import WebhookRejected
from feedbot.spans.aggregate import Aggregator, GroupKey, to_ns
from feedbot.spans.labels import Labels, is_label_key, labels_of
from feedbot.spans.model import SpanQuery
from feedbot.spans.otlp import (
    KINDS,
    MAX_ATTRIBUTES,
    MAX_INT64,
    MAX_VALUE_CHARS,
    STATUS_ERROR,
    Resource,
    text,
)
from feedbot.spans.otlp_json import decode_resource, exception_events
from feedbot.spans.resources import RESOURCE_KEYS
from feedbot.spans.rows import LIMITS
from feedbot.spans.semconv import (
    CODE_KEYS,
    READ_KEYS,
    Extras,
    extras_of,
    normalize_statement,
    resource_key,
)

#: What :meth:`Aggregator.add_span` takes, gathered per document before any of it is counted.
Fields = tuple[
    str, str, str | None, GroupKey, int, int, str | None, bool, str | None, Extras | None, Labels
]
_NOT_ERROR = frozenset((None, 0, 1, "STATUS_CODE_UNSET", "STATUS_CODE_OK"))
_HEX = b"0123456789abcdef"
#: Distinct resource texts decoded per scanner before the cache starts over.
_MAX_RESOURCES = 4096


class _Value(Struct, forbid_unknown_fields=True, gc=False):
    """An ``AnyValue``: the two kinds the analysis reads, the others kept as raw JSON."""

    stringValue: str | None = None
    intValue: int | str | None = None
    boolValue: Raw = Raw()
    doubleValue: Raw = Raw()
    bytesValue: Raw = Raw()
    arrayValue: Raw = Raw()
    kvlistValue: Raw = Raw()


class _KeyValue(Struct, forbid_unknown_fields=True, gc=False):
    key: str
    value: _Value | None = None


class _Status(Struct, gc=False):
    code: int | str | None = None


class _Span(Struct, forbid_unknown_fields=True, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    parentSpanId: str | None = None
    traceState: Raw = Raw()
    flags: Raw = Raw()
    name: str | None = None
    kind: int | None = None
    startTimeUnixNano: str | int | None = None
    endTimeUnixNano: str | int | None = None
    attributes: list[_KeyValue] | None = None
    droppedAttributesCount: Raw = Raw()
    events: Raw = Raw()
    droppedEventsCount: Raw = Raw()
    links: Raw = Raw()
    droppedLinksCount: Raw = Raw()
    status: _Status | None = None


class _ScopeSpans(Struct, forbid_unknown_fields=True, gc=False):
    spans: list[_Span] | None = None
    scope: Raw = Raw()
    schemaUrl: Raw = Raw()


class _ResourceSpans(Struct, forbid_unknown_fields=True, gc=False):
    scopeSpans: list[_ScopeSpans] | None = None
    resource: Raw = Raw()
    schemaUrl: Raw = Raw()


class _Document(Struct, forbid_unknown_fields=True, gc=False):
    resourceSpans: list[_ResourceSpans] | None = None


_decode = msgspec.json.Decoder(_Document).decode

#: Raw group fields remembered with their key (URLs with ids make many).
MAX_KEYS = 65_536


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
    """Feeds the spans of one service, found in OTLP/JSON documents, to aggregators.

    Args:
        service: whose spans are read; blocks of other services are skipped.
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
        self.service, self.environment, self.route = service, environment, route
        self.count_window = count_window
        self.counts: Counter[str] = Counter()
        self._keys: dict[tuple[object, ...], GroupKey] = {}
        self._resources: dict[bytes, Resource] = {}

    @classmethod
    def of(cls, aggregator: Aggregator, query: SpanQuery) -> Scanner:
        """A scanner feeding the spans of one query to ``aggregator``."""
        targets = (Target.of(query, aggregator),)
        return cls(
            query.service, query.environment, lambda v: targets if v == query.version else ()
        )

    def scan(self, data: bytes) -> None:
        """Count the matching spans of one ``ExportTraceServiceRequest`` in OTLP/JSON text.

        Raises:
            Unusual: the document is not in the common shape; nothing of it was counted.
        """
        try:
            document = _decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise Unusual from None
        found: list[tuple[Aggregator, Fields]] = []
        counts: Counter[str] = Counter()
        try:
            for r, resource_spans in enumerate(document.resourceSpans or ()):
                resource = self._resource(resource_spans.resource, r)
                if resource.service != self.service or (
                    self.environment is not None
                    and resource.environment not in (None, self.environment)
                ):
                    continue
                version = resource.version
                targets = self.route(version)
                counted = self.count_window if version else None
                if not targets and counted is None:
                    continue
                for scope_spans in resource_spans.scopeSpans or ():
                    spans = scope_spans.spans
                    if spans:
                        seen = self._spans(spans, resource.instance, targets, counted, found)
                        if seen:
                            counts[version or ""] += seen
        except (TypeError, ValueError, WebhookRejected):
            raise Unusual from None
        for aggregator, fields in found:
            aggregator.add_span(*fields)
        self.counts.update(counts)

    def _resource(self, raw: Raw, r: int) -> Resource:
        key = bytes(raw)
        resource = self._resources.get(key)
        if resource is None:
            if len(self._resources) >= _MAX_RESOURCES:
                self._resources.clear()
            block = {"resource": orjson.loads(key)} if key else {}
            resource = self._resources[key] = decode_resource(block, f"resourceSpans[{r}]")
        return resource

    def _spans(
        self,
        spans: list[_Span],
        instance: str | None,
        targets: Sequence[Target],
        counted: tuple[int, int] | None,
        found: list[tuple[Aggregator, Fields]],
    ) -> int:
        """The hot loop of ``feedbot report --traces``: one pass per span, no avoidable call.

        Returns how many spans started in ``counted``.
        """
        starts = _times([span.startTimeUnixNano for span in spans])
        seen = 0
        if counted is not None:
            low, high = counted
            seen = sum(1 for start in starts if low <= start < high)
        if not targets:
            return seen
        keys, mine = self._keys, []
        for span, start in zip(spans, starts, strict=True):
            key: GroupKey | None = None
            for target in targets:
                if not target.low <= start < target.high:
                    continue
                if key is None:
                    attributes = read_attributes(span.attributes)
                    method = attributes.get("http.request.method")
                    if method is None:
                        method = attributes.get("http.method")
                    given = attributes.get("db.query.text") or attributes.get("db.statement")
                    statement = normalize_statement(str(given)) if given else None
                    route = attributes.get("http.route")
                    raw = (span.name, span.kind, method, route, statement) + tuple(
                        attributes.get(k) for k in RESOURCE_KEYS
                    )
                    key = keys.get(raw)
                    if key is None:
                        key = group_key(span.name, span.kind, method, route, attributes, statement)
                        if len(keys) >= MAX_KEYS:  # raw URLs: one per id, templated on the way
                            keys.clear()
                        keys[raw] = key
                    fields = _fields(span, key, start, attributes, instance, statement)
                    mine.append(fields)
                if target.span_name is None or key[0] == target.span_name:
                    found.append((target.aggregator, fields))
        if mine:
            _check_ids(mine)
        return seen


def _times(values: list[str | int | None]) -> list[int]:
    """``*UnixNano`` fields: decimal strings (or integers) in ``[0, 2**63)``, checked at once."""
    try:
        digits = "".join(values)  # type: ignore[arg-type]  # TypeError: not all strings
    except TypeError:
        return [nanos(value) for value in values]
    if not (digits.isdigit() and digits.isascii() and all(values)):
        raise Unusual
    found = list(map(int, values))  # type: ignore[arg-type]
    if max(found) > MAX_INT64:
        raise Unusual
    return found


def _check_ids(fields: list[Fields]) -> None:
    """Every trace id 32 and span id 16 lower-case hex digits, parents too (or none)."""
    trace_ids = [f[0] for f in fields]
    span_ids = [f[1] for f in fields]
    parents = [f[2] for f in fields if f[2] is not None]
    try:
        ids = "".join(trace_ids + span_ids + parents).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        raise Unusual from None
    if ids.translate(None, _HEX):
        raise Unusual
    if set(map(len, trace_ids)) != {32} or not set(map(len, span_ids + parents)) <= {16}:
        raise Unusual


def _fields(
    span: _Span,
    key: GroupKey,
    start: int,
    attributes: dict[str, str | int | bool],
    instance: str | None,
    statement: str | None,
) -> Fields:
    status, raw_events = span.status, span.events
    is_error = status is not None and _is_error(status.code)
    extras = None
    if raw_events or is_error or not CODE_KEYS.isdisjoint(attributes):
        events = (
            exception_events({"events": orjson.loads(bytes(raw_events))}, "span")
            if raw_events
            else ()
        )
        extras = extras_of(events, attributes, is_error)
    parent = span.parentSpanId or None
    end = span.endTimeUnixNano
    end = int(end) if type(end) is str and end.isdigit() and end.isascii() else nanos(end)
    if end > MAX_INT64:
        raise Unusual
    return (
        span.traceId,  # type: ignore[return-value]  # checked by _check_ids
        span.spanId,
        parent,
        key,
        start,
        end - start if end > 0 and end >= start else -1,  # -1: no end time, never timed
        instance,
        is_error,
        statement,
        extras,
        labels_of(attributes),
    )


def count_versions(
    data: bytes,
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
    scanner.scan(data)
    counts.update(scanner.counts)


def nanos(value: object) -> int:
    """A ``*UnixNano`` field: a decimal string (or an integer) in ``[0, 2**63)``."""
    if type(value) is str and value.isascii() and value.isdigit() and int(value) <= MAX_INT64:
        return int(value)
    if type(value) is int and 0 <= value <= MAX_INT64:
        return value
    raise Unusual


def read_attributes(attributes: list[_KeyValue] | None) -> dict[str, str | int | bool]:
    """The attributes the analysis reads, decoded as the validating decoder would.

    Labels (:func:`~feedbot.spans.labels.is_label_key`) of a type labels do not take are left
    out rather than called unusual.
    """
    found: dict[str, str | int | bool] = {}
    if not attributes:
        return found
    if len(attributes) > MAX_ATTRIBUTES:
        raise Unusual
    for attribute in attributes:
        key = attribute.key
        if key in READ_KEYS:
            found[key] = _value(attribute.value)
        elif is_label_key(key):
            value = _label_value(attribute.value)
            if value is None:
                found.pop(key, None)  # The last of a repeated key wins, as when decoded.
            else:
                found[key] = value
    return found


def group_key(
    name: str | None,
    kind: int | None,
    method: object,
    route: object,
    attributes: Mapping[str, Any],
    statement: str | None,
) -> GroupKey:
    """The aggregator's key of raw span fields, bounded like a row's (as ``row_key``).

    ``attributes`` need hold only :data:`~feedbot.spans.resources.RESOURCE_KEYS`;
    ``statement`` is the normalised DB statement.
    """
    kind = kind or 0
    if not 0 <= kind < len(KINDS):
        raise Unusual
    raw = (
        text(name or "", LIMITS["name"]),
        KINDS[kind],
        text(str(method), LIMITS["method"]).upper() if method else None,
        text(str(route), LIMITS["route"]) if route else None,
    )
    return (*raw, resource_key(raw, attributes, statement))


def _value(value: _Value | None) -> str | int:
    """A read attribute's value: its string, else its integer (the validating decoder's order)."""
    if value is None:
        raise Unusual
    found = value.stringValue
    if found is not None:
        return found if len(found) <= MAX_VALUE_CHARS and "\x00" not in found else text(found)
    if value.boolValue or value.bytesValue:
        raise Unusual
    number = value.intValue
    if type(number) is int or (type(number) is str and number.isascii() and number.isdigit()):
        return int(number)
    raise Unusual


def _label_value(value: _Value | None) -> str | int | bool | None:
    """A label's value as the validating decoder gives it, or None for a type labels skip."""
    if value is None:
        raise Unusual
    if value.stringValue is not None or value.intValue is not None:
        return _value(value)
    flag = bytes(value.boolValue)
    if flag in (b"true", b"false"):
        return flag == b"true"
    return None


def _is_error(code: int | str | None) -> bool:
    if code == STATUS_ERROR or code == "STATUS_CODE_ERROR":
        return True
    if code in _NOT_ERROR:
        return False
    raise Unusual
