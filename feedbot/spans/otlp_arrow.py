"""Reading a block of OTLP/JSON lines as columns, with Arrow's JSON reader; pure, no I/O.

:mod:`feedbot.spans.otlp_scan` reads a line at a time and hands the aggregator one span at a
time: at a million spans the per-span Python work costs four times the JSON parse. Here a block
of whole lines (megabytes) is parsed by ``pyarrow.json`` in C++ into columns (the file reader
decodes blocks on threads of its own, the GIL released in Arrow's and numpy's kernels);
spans are filtered, checked and labelled with Arrow and numpy kernels, and each target's spans
go to :func:`feedbot.spans.aggregate_columns.fold` as one :class:`SpanColumns`. Python runs
once per distinct resource, group key and statement shape, and once per span only for the few
spans with exception events or an error status.

The answer is the scanner's: what the scanner would call unusual (:class:`Unusual`), and
anything Arrow cannot read or this module does not handle (proto field names, ids not in
lower-case hex, read attributes of other value types or too long, a code location holding the
separators used below), makes :func:`decode_block` raise before anything of the block is
counted; the caller then reads that block's lines one at a time as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from feedbot.errors import WebhookRejected
from feedbot.spans.aggregate import Aggregator
from feedbot.spans.columns import (
    NULL,
    SEP,
    SpanColumns,
    flatten,
    nanos,
    owners,
    plain,
    span_columns,
)
from feedbot.spans.otlp import Resource
from feedbot.spans.otlp_json import decode_resource
from feedbot.spans.otlp_scan import Scanner, Target, Unusual

_VALUE = pa.struct([("stringValue", pa.string()), ("intValue", pa.string())])
_ATTRIBUTES = pa.list_(pa.struct([("key", pa.string()), ("value", _VALUE)]))
_SPAN = pa.struct(
    [
        ("traceId", pa.string()),
        ("spanId", pa.string()),
        ("parentSpanId", pa.string()),
        ("name", pa.string()),
        ("kind", pa.int64()),
        ("startTimeUnixNano", pa.string()),
        ("endTimeUnixNano", pa.string()),
        ("attributes", _ATTRIBUTES),
        ("status", pa.struct([("code", pa.int64())])),
        ("events", pa.list_(pa.struct([("name", pa.string())]))),
    ]
)
_RESOURCE_SPANS = pa.struct(
    [
        ("resource", pa.struct([("attributes", _ATTRIBUTES)])),
        ("scopeSpans", pa.list_(pa.struct([("spans", pa.list_(_SPAN))]))),
    ]
)
SCHEMA = pa.schema([("resourceSpans", pa.list_(_RESOURCE_SPANS))])
#: Per object, the fields OTLP/JSON gives it: those :data:`SCHEMA` leaves out are read with
#: inferred types; any other name (a proto field name, a misspelling) sends the block to the
#: scanner, which knows what to do with it. Objects not listed here are not looked into.
_FIELDS = {
    "resourceSpans": {"resource", "scopeSpans", "schemaUrl"},
    "resource": {"attributes", "droppedAttributesCount", "entityRefs"},
    "scopeSpans": {"spans", "scope", "schemaUrl"},
    "spans": {"traceId", "spanId", "parentSpanId", "traceState", "flags", "name", "kind"}
    | {"startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount"}
    | {"events", "droppedEventsCount", "links", "droppedLinksCount", "status"},
    "attributes": {"key", "value"},
    "value": {"stringValue", "intValue", "boolValue", "doubleValue", "bytesValue"}
    | {"arrayValue", "kvlistValue"},
    "status": {"code", "message"},
    "events": {"timeUnixNano", "name", "attributes", "droppedAttributesCount"},
}
_PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="infer")
#: One thread per block (the file reader parses blocks on threads of its own), read as one
#: chunk: smaller chunks only made Arrow join them again (combine_chunks), 8% of the parse.
_READ = pj.ReadOptions(block_size=16 << 20, use_threads=False)
#: A block's route per resourceSpans: (resource, targets) or None: skipped.
Route = tuple[Resource, Sequence[Target]] | None
Found = tuple[Aggregator, SpanColumns]


class BlockReader:
    """Decodes blocks of lines for one :class:`Scanner`'s service, environment and targets."""

    def __init__(self, scanner: Scanner) -> None:
        self._scanner = scanner
        self._resources: dict[str, Resource] = {}

    def decode_block(self, data: bytes | memoryview) -> tuple[list[Found], Counter[str]]:
        """The spans of each target in a block of whole lines, and spans counted per version.

        Raises:
            Unusual: read this block's lines with the scanner instead; nothing was counted.
        """
        return self.decode(parse_block(data))

    def decode(self, documents: pa.Array) -> tuple[list[Found], Counter[str]]:
        """As :meth:`decode_block`, of the documents :func:`parse_block` read."""
        try:
            return self._decode(documents)
        except (pa.ArrowException, WebhookRejected):
            raise Unusual from None

    def _decode(self, documents: pa.Array) -> tuple[list[Found], Counter[str]]:
        blocks = flatten(documents)
        scope_lists = pc.struct_field(blocks, "scopeSpans")
        scopes = flatten(scope_lists)
        span_lists = pc.struct_field(scopes, "spans")
        spans = flatten(span_lists)
        block_of = owners(scope_lists)[owners(span_lists)]
        routes = [self._route(r) for r in self._resources_of(blocks)]
        found: list[Found] = []
        counts: Counter[str] = Counter()
        wanted = np.array([r is not None for r in routes], np.bool_)[block_of]
        if not wanted.any():
            return found, counts
        rows = np.flatnonzero(wanted)
        if len(rows) < len(spans):
            spans, block_of = spans.take(pa.array(rows)), block_of[rows]
        starts = nanos(pc.struct_field(spans, "startTimeUnixNano"))
        self._count(routes, block_of, starts, counts)
        targets = _targets(routes)
        masks = [_in_target(t, routes, block_of, starts) for t in targets]
        if not masks or not np.logical_or.reduce(masks).any():
            return found, counts
        mine = np.flatnonzero(np.logical_or.reduce(masks))
        if len(mine) < len(spans):
            spans, block_of, starts = spans.take(pa.array(mine)), block_of[mine], starts[mine]
            masks = [mask[mine] for mask in masks]
        instances: dict[str | None, int] = {}
        per_block = [
            instances.setdefault(None if r is None else r[0].instance, len(instances))
            for r in routes
        ]
        codes = np.array(per_block, np.intp)[block_of]
        columns = span_columns(spans, starts, list(instances), codes)
        for target, mask in zip(targets, masks, strict=True):
            selected = np.flatnonzero(mask)
            name = target.span_name
            if name is not None:
                named = [columns.keys[c][0] == name for c in columns.key_codes[selected]]
                selected = selected[np.array(named, np.bool_)]
            if len(selected):
                found.append((target.aggregator, columns.select(selected)))
        return found, counts

    def _resources_of(self, blocks: pa.Array) -> list[Resource]:
        """The resource of each ``resourceSpans``, decoded once per distinct text."""
        resources = pc.struct_field(blocks, "resource")
        attributes = pc.struct_field(resources, "attributes")
        flat = flatten(attributes)
        value = pc.struct_field(flat, "value")
        texts = pc.binary_join_element_wise(
            pc.struct_field(flat, "key"),
            pc.coalesce(pc.struct_field(value, "stringValue"), ""),
            pc.coalesce(pc.struct_field(value, "intValue"), ""),
            SEP,
            null_handling="replace",
            null_replacement=NULL,
        )
        lengths = pc.list_value_length(attributes).fill_null(0).to_numpy()
        offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))), pa.int32())
        lists = pa.ListArray.from_arrays(offsets, texts)
        keys = pc.binary_join(lists, "\x1d").fill_null(NULL).to_pylist()
        simple = value.type.num_fields == 2  # no value of another type: the text says it all
        found = []
        for r, key in enumerate(keys):
            resource = self._resources.get(key) if simple else None
            if resource is None:
                document = plain(resources[r].as_py())
                block = {} if document is None else {"resource": document}
                resource = decode_resource(block, f"resourceSpans[{r}]")
                if simple:
                    self._resources[key] = resource
            found.append(resource)
        return found

    def _route(self, resource: Resource) -> Route:
        scanner = self._scanner
        if resource.service != scanner.service or (
            scanner.environment is not None
            and resource.environment not in (None, scanner.environment)
        ):
            return None
        targets = scanner.route(resource.version)
        counted = scanner.count_window is not None and resource.version
        return (resource, targets) if targets or counted else None

    def _count(
        self,
        routes: list[Route],
        block_of: npt.NDArray[np.intp],
        starts: npt.NDArray[np.int64],
        counts: Counter[str],
    ) -> None:
        window = self._scanner.count_window
        if window is None:
            return
        inside = (starts >= window[0]) & (starts < window[1])
        per_block = np.bincount(block_of[inside], minlength=len(routes))
        for route, seen in zip(routes, per_block.tolist(), strict=True):
            version = None if route is None else route[0].version
            if seen and version:  # spans without a version are not counted
                counts[version] += seen


def parse_block(data: bytes | memoryview) -> pa.Array:
    """The documents of a block of whole lines, one per line (safe to call on any thread).

    Raises:
        Unusual: Arrow cannot read the block, or found a field OTLP/JSON does not have there.
    """
    # Any Arrow error hands the block over, not only ArrowInvalid: on some mutated documents
    # combine_chunks raised ArrowIndexError ("array slice would exceed array length").
    try:
        table = pj.read_json(pa.BufferReader(data), read_options=_READ, parse_options=_PARSE)
        _check_fields(table.schema.field("resourceSpans").type, "resourceSpans")
        column = table.column(0)
        # One chunk as a rule (see _READ): combine_chunks would still concatenate it.
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    except pa.ArrowException:
        raise Unusual from None


def _check_fields(kind: pa.DataType, name: str) -> None:
    """Every field Arrow found is one OTLP/JSON gives that object (:data:`_FIELDS`)."""
    if isinstance(kind, pa.ListType):
        _check_fields(kind.value_type, name)
        return
    if not isinstance(kind, pa.StructType) or name not in _FIELDS:
        return
    for field in kind:
        if field.name not in _FIELDS[name]:
            raise Unusual
        _check_fields(field.type, field.name)


def _targets(routes: list[Route]) -> list[Target]:
    seen: dict[int, Target] = {}
    for route in routes:
        if route is not None:
            for target in route[1]:
                seen.setdefault(id(target), target)
    return list(seen.values())


def _in_target(
    target: Target,
    routes: list[Route],
    block_of: npt.NDArray[np.intp],
    starts: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    blocks = np.array([r is not None and any(t is target for t in r[1]) for r in routes], np.bool_)
    return np.asarray(blocks[block_of] & (starts >= target.low) & (starts < target.high))
