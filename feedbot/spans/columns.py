"""The spans of an Arrow block as the columns the aggregator folds; pure, no I/O.

Checks what :mod:`feedbot.spans.otlp_scan` checks of a span it counts (ids, times, kind,
status, the attributes it reads), vectorised, and reads what it reads: the group key, the
duration, the error flag, the normalised DB statement, the code location and the exceptions.
Anything the scanner would call unusual, or this module does not handle, raises
:class:`~feedbot.spans.otlp_scan.Unusual`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from feedbot.spans.aggregate import GroupKey
from feedbot.spans.labels import MAX_VALUE_CHARS as MAX_LABEL_CHARS
from feedbot.spans.labels import Labels, is_label_key
from feedbot.spans.otlp import KINDS, MAX_ATTRIBUTES, MAX_VALUE_CHARS, STATUS_ERROR
from feedbot.spans.otlp_json import exception_events
from feedbot.spans.otlp_scan import Unusual, group_key
from feedbot.spans.resources import RESOURCE_KEYS
from feedbot.spans.semconv import (
    CodeLocation,
    Exceptions,
    exceptions_of,
    normalize_shape,
    normalize_statement,
)

#: The attributes read per span: strings, but for the two line numbers (integers).
STRING_KEYS: tuple[str, ...] = ("http.route", "http.request.method", "http.method", "db.query.text")
STRING_KEYS += ("db.statement", "code.function.name", "code.function", "code.namespace")
STRING_KEYS += ("code.file.path", "code.filepath", "error.type", *RESOURCE_KEYS)
LINE_KEYS: tuple[str, ...] = ("code.line.number", "code.lineno")
_READ = pa.array(STRING_KEYS + LINE_KEYS)
_LINE = np.array([key in LINE_KEYS for key in STRING_KEYS + LINE_KEYS], np.bool_)
_CODE = ("code.function.name", "code.function", "code.file.path", "code.filepath") + LINE_KEYS
#: What a code location reads: the code keys, the line numbers as integers, the namespace.
_CODE_READ = (*_CODE, *(key + "#int" for key in LINE_KEYS), "code.namespace")
SEP, NULL = "\x1f", "\x1e"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdef"
_ONES = np.arange(256, dtype=np.uint8)
_ONES[48:58] = 49
_NO_CODE: CodeLocation = (None, None, None)


@dataclass(eq=False)
class SpanColumns:
    """Spans for one aggregator, in file order; codes index the lists beside them (-1: none)."""

    trace_ids: pa.Array
    span_ids: pa.Array
    parents: pa.Array  # null for a root span
    keys: list[GroupKey]
    key_codes: npt.NDArray[np.intp]
    starts: npt.NDArray[np.int64]
    durations_ms: npt.NDArray[np.float64]
    instances: list[str | None]
    instance_codes: npt.NDArray[np.intp]
    errors: npt.NDArray[np.bool_]
    statements: list[str]
    statement_codes: npt.NDArray[np.intp]
    locations: list[CodeLocation]
    location_codes: npt.NDArray[np.intp]
    #: (row, exceptions) of the spans that recorded some, in order.
    exceptions: list[tuple[int, Exceptions]]
    #: Distinct label sets (:mod:`feedbot.spans.labels`) and each span's.
    label_sets: list[Labels]
    label_codes: npt.NDArray[np.intp]

    def __len__(self) -> int:
        return len(self.starts)

    def select(self, rows: npt.NDArray[np.intp]) -> SpanColumns:
        """The spans at ``rows`` (ascending)."""
        if len(rows) == len(self):
            return self
        index = pa.array(rows)
        at = {int(r): i for i, r in enumerate(rows)} if self.exceptions else {}
        return SpanColumns(
            self.trace_ids.take(index),
            self.span_ids.take(index),
            self.parents.take(index),
            self.keys,
            self.key_codes[rows],
            self.starts[rows],
            self.durations_ms[rows],
            self.instances,
            self.instance_codes[rows],
            self.errors[rows],
            self.statements,
            self.statement_codes[rows],
            self.locations,
            self.location_codes[rows],
            [(at[row], found) for row, found in self.exceptions if row in at],
            self.label_sets,
            self.label_codes[rows],
        )


def span_columns(
    spans: pa.StructArray,
    starts: npt.NDArray[np.int64],
    instances: list[str | None],
    instance_codes: npt.NDArray[np.intp],
) -> SpanColumns:
    """Check and read ``spans`` (their starts already read), of the given instances.

    Raises:
        Unusual: a span the scanner would call unusual, or one this module does not handle.
    """
    if spans.null_count:
        raise Unusual
    field = {name: pc.struct_field(spans, name) for name in ("traceId", "spanId", "name")}
    parents = pc.struct_field(spans, "parentSpanId")
    parents = pc.if_else(pc.equal(parents, ""), pa.scalar(None, pa.string()), parents)
    _check_hex(field["traceId"], 32, nulls=False)
    _check_hex(field["spanId"], 16, nulls=False)
    _check_hex(parents, 16, nulls=True)
    ends = nanos(pc.struct_field(spans, "endTimeUnixNano"))
    # No end time (0), or one before the start: -1 ms, which the aggregator counts untimed.
    durations = np.where((ends > 0) & (ends >= starts), ends - starts, -1_000_000) / 1e6
    errors = _errors(pc.struct_field(spans, "status"))
    found = keyed(pc.struct_field(spans, "attributes"))
    attributes = _attributes(found, len(spans))
    statements, statement_codes = _statements(attributes)
    keys, key_codes = _group_keys(
        field["name"], pc.struct_field(spans, "kind"), attributes, (statements, statement_codes)
    )
    locations, location_codes = _locations(attributes)
    return SpanColumns(
        field["traceId"],
        field["spanId"],
        parents,
        keys,
        key_codes,
        starts,
        durations,
        instances,
        instance_codes,
        errors,
        statements,
        statement_codes,
        locations,
        location_codes,
        _exceptions(pc.struct_field(spans, "events"), errors, attributes["error.type"]),
        *_labels(found, len(spans)),
    )


def nanos(values: pa.Array) -> npt.NDArray[np.int64]:
    """``*UnixNano`` strings: decimal digits only, in ``[0, 2**63)``."""
    if values.null_count:
        raise Unusual
    lengths = pc.binary_length(values)
    if len(values) and (pc.min(lengths).as_py() < 1 or pc.max(lengths).as_py() > 19):
        raise Unusual
    if not _only(_data(values), _DIGITS):
        raise Unusual
    return np.asarray(pc.cast(values, pa.int64()).to_numpy(), dtype=np.int64)


def flatten(lists: pa.Array) -> pa.Array:
    """The items of every list, in order (null lists hold none)."""
    return pc.list_flatten(lists)


def owners(lists: pa.Array) -> npt.NDArray[np.intp]:
    """For each item of :func:`flatten`, the index of its list."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy()
    return np.repeat(np.arange(len(lists)), lengths)


def plain(value: Any) -> Any:
    """A value read back from Arrow without the nulls of fields a JSON object did not have."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _data(values: pa.Array) -> npt.NDArray[np.uint8]:
    """The UTF-8 bytes of a string array's values, end to end."""
    _, offsets, data = values.buffers()
    bounds = np.frombuffer(offsets, np.int32)[values.offset : values.offset + len(values) + 1]
    if data is None or not len(bounds):
        return np.zeros(0, np.uint8)
    return np.frombuffer(data, np.uint8)[bounds[0] : bounds[-1]]


def _has_nul(values: pa.Array) -> bool:
    """Whether any string of ``values`` holds a NUL character (one scan of the bytes)."""
    return b"\x00" in _data(values).tobytes()


def _only(data: npt.NDArray[np.uint8], allowed: bytes) -> bool:
    """Whether every byte of ``data`` is one of ``allowed`` (one C pass, as the scanner checks)."""
    return not data.tobytes().translate(None, allowed)


def _check_hex(ids: pa.Array, length: int, *, nulls: bool) -> None:
    if ids.null_count and not nulls:
        raise Unusual
    lengths = pc.binary_length(ids).drop_null()
    if len(lengths) and (pc.min(lengths).as_py() != length or pc.max(lengths).as_py() != length):
        raise Unusual
    if not _only(_data(ids), _HEX):
        raise Unusual


def _errors(status: pa.Array) -> npt.NDArray[np.bool_]:
    codes = pc.struct_field(status, "code").fill_null(0).to_numpy()
    if not np.isin(codes, (0, 1, STATUS_ERROR)).all():
        raise Unusual
    return np.asarray(codes == STATUS_ERROR)


@dataclass(frozen=True)
class Keyed:
    """A block's attributes, flattened, with each one's key as a code (read once for all)."""

    items: pa.Array
    key_codes: npt.NDArray[np.intp]
    key_names: list[str]
    span_of: npt.NDArray[np.intp]

    def which(self, wanted: list[str]) -> npt.NDArray[np.intp]:
        """Per attribute, the index of its key in ``wanted`` (-1: not wanted)."""
        index = {key: k for k, key in enumerate(wanted)}
        per_key = np.array([index.get(key, -1) for key in self.key_names], np.intp)
        return np.asarray(per_key[self.key_codes] if len(per_key) else self.key_codes, np.intp)


def keyed(lists: pa.Array) -> Keyed:
    """The attributes of every span, checked for shape: at most ``MAX_ATTRIBUTES`` a span,
    each with a key.

    Raises:
        Unusual: otherwise (the scanner's call).
    """
    lengths = pc.list_value_length(lists).fill_null(0)
    if len(lengths) and pc.max(lengths).as_py() > MAX_ATTRIBUTES:
        raise Unusual
    items = flatten(lists)
    if items.null_count:
        raise Unusual
    keys = pc.struct_field(items, "key")
    if keys.null_count:
        raise Unusual
    encoded = pc.dictionary_encode(keys)
    codes = np.asarray(encoded.indices.to_numpy(), np.intp)
    return Keyed(items, codes, encoded.dictionary.to_pylist(), owners(lists))


def _attributes(attributes: Keyed, spans: int) -> dict[str, pa.Array]:
    """Per read key, its value per span (null where absent); the last of a repeated key wins.

    Only the two value fields read are taken (not the whole value struct, whose other fields
    Arrow inferred), once for every key present in the block.
    """
    items = attributes.items
    which = attributes.which(list(STRING_KEYS + LINE_KEYS))
    read = np.flatnonzero(which >= 0)
    span_of, which = attributes.span_of[read], which[read]
    value = pc.struct_field(items, "value")
    at = pa.array(read)
    strings = pc.struct_field(value, "stringValue").take(at)
    numbers = pc.struct_field(value, "intValue").take(at)
    no_string = pc.is_null(strings).to_numpy(zero_copy_only=False)
    if no_string.any() and pc.any(pc.is_null(numbers.filter(pa.array(no_string)))).as_py():
        raise Unusual  # another value type, or none: the scanner's call
    if no_string.any() and not _LINE[which[no_string]].all():
        raise Unusual  # an integer where a string is read: the scanner's call
    if len(strings) - strings.null_count:
        # Bytes bound characters: count characters only when some value is that long.
        long = pc.max(pc.binary_length(strings)).as_py() > MAX_VALUE_CHARS
        if (long and pc.max(pc.utf8_length(strings)).as_py() > MAX_VALUE_CHARS) or _has_nul(
            strings
        ):
            raise Unusual
    if len(numbers) - numbers.null_count:
        # A string is read first (and is no line number): an integer counts only alone.
        numbers = pc.if_else(pc.is_valid(strings), pa.scalar(None, pa.string()), numbers)
    # Every key present at once: one row of places per key, one take, a slice per key.
    present = np.flatnonzero(np.bincount(which, minlength=len(_READ)))
    row = np.zeros(len(_READ), np.intp)
    row[present] = np.arange(len(present))
    place = np.full((len(present), spans), -1, np.int64)
    place[row[which], span_of] = np.arange(len(which))  # the last of a repeated key wins
    index = pa.array(place.reshape(-1), mask=place.reshape(-1) < 0)
    taken = strings.take(index)
    lines = [k for k in present.tolist() if _LINE[k]]
    if lines:
        at = pa.array(place[row[lines]].reshape(-1), mask=place[row[lines]].reshape(-1) < 0)
        integers = _integers(numbers.take(at))
    found: dict[str, pa.Array] = {}
    absent = pa.nulls(spans, pa.string())
    for k, key in enumerate(STRING_KEYS + LINE_KEYS):
        found[key] = taken.slice(row[k] * spans, spans) if k in present else absent
        if _LINE[k]:
            found[key + "#int"] = (
                integers.slice(lines.index(k) * spans, spans)
                if k in lines
                else pa.nulls(spans, pa.int64())
            )
    return found


def _labels(attributes: Keyed, spans: int) -> tuple[list[Labels], npt.NDArray[np.intp]]:
    """Each span's labels as a code into distinct label sets (as ``labels_of`` reads them)."""
    wanted = [key for key in attributes.key_names if is_label_key(key)]
    if not wanted or not spans:
        return [()], np.zeros(spans, np.intp)
    which = attributes.which(wanted)
    read = np.flatnonzero(which >= 0)
    span_of, which = attributes.span_of[read], which[read]
    value = pc.struct_field(attributes.items, "value")
    at = pa.array(read)
    names = [f.name for f in value.type if f.name in ("stringValue", "intValue", "boolValue")]
    fields = [pc.struct_field(value, name).take(at) for name in names]
    texts = _label_texts(pa.StructArray.from_arrays(fields, names))
    table, codes = [], np.full((spans, len(wanted)), -1, np.int64)
    for k in range(len(wanted)):
        mine = np.flatnonzero(which == k)
        place = np.full(spans, -1, np.int64)
        place[span_of[mine]] = mine  # The last of a repeated key wins.
        encoded = pc.dictionary_encode(texts.take(pa.array(place, mask=place < 0)))
        codes[:, k] = encoded.indices.fill_null(-1).to_numpy()
        table.append(encoded.dictionary.to_pylist())
    unique, inverse = _unique_rows(codes)
    sets = [
        tuple(
            sorted(
                (wanted[k], table[k][code][:MAX_LABEL_CHARS])
                for k, code in enumerate(row)
                if code >= 0
            )
        )
        for row in unique.tolist()
    ]
    return sets, np.asarray(inverse, np.intp).reshape(-1)


def _unique_rows(
    codes: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """``np.unique(codes, axis=0, return_inverse=True)`` for codes of at least -1, in the same
    (row-lexicographic) order: each row as one mixed-radix number, unique in one 1-D sort."""
    sizes = (codes.max(axis=0) + 2).tolist()
    if math.prod(sizes) >= 2**62:
        unique, inverse = np.unique(codes, axis=0, return_inverse=True)
        return unique, np.asarray(inverse, np.intp).reshape(-1)
    number = np.zeros(len(codes), np.int64)
    for k, size in enumerate(sizes):
        number = number * size + (codes[:, k] + 1)
    distinct, inverse = np.unique(number, return_inverse=True)
    unique = np.empty((len(distinct), len(sizes)), np.int64)
    for k in range(len(sizes) - 1, -1, -1):
        distinct, digit = np.divmod(distinct, sizes[k])
        unique[:, k] = digit - 1
    return unique, np.asarray(inverse, np.intp).reshape(-1)


def _label_texts(values: pa.StructArray) -> pa.Array:
    """Label values as text: strings, integers in decimal, booleans; null for other types."""
    names = {values.type.field(i).name for i in range(values.type.num_fields)}
    found = pc.struct_field(values, "stringValue")
    if "intValue" in names:
        numbers = pc.struct_field(values, "intValue")
        if pa.types.is_string(numbers.type):
            given = numbers.drop_null()
            if len(given) and not pc.all(pc.match_substring_regex(given, "^[0-9]+$")).as_py():
                raise Unusual  # Signed or not a number: the scanner's call.
            numbers = _integers(numbers)
        found = pc.coalesce(found, pc.cast(numbers, pa.string()))
    if "boolValue" in names:
        flags = pc.struct_field(values, "boolValue")
        words = pc.if_else(flags, pa.scalar("true"), pa.scalar("false"))
        found = pc.coalesce(found, words)
    text = found.drop_null()
    if len(text) and (pc.max(pc.utf8_length(text)).as_py() > MAX_VALUE_CHARS or _has_nul(text)):
        raise Unusual
    return found


def _integers(values: pa.Array) -> pa.Array:
    """``intValue`` decimal strings (non-negative, as the scanner takes them) as int64."""
    present = values.drop_null()
    if len(present) and not _only(_data(present), _DIGITS):
        raise Unusual
    return pc.cast(values, pa.int64())


def _group_keys(
    names: pa.Array,
    kinds: pa.Array,
    attributes: dict[str, pa.Array],
    statements: tuple[list[str], npt.NDArray[np.intp]],
    stored: tuple[pa.Array, pa.Array] | None = None,
) -> tuple[list[GroupKey], npt.NDArray[np.intp]]:
    """The group keys (as :func:`~feedbot.spans.otlp_scan.group_key`) once per distinct input.

    ``stored`` is (method, route) as a stored row holds them, read instead of the attributes.
    """
    kind = kinds.fill_null(0)
    if len(kind) and (pc.min(kind).as_py() < 0 or pc.max(kind).as_py() >= len(KINDS)):
        raise Unusual
    if stored is None:
        method = pc.coalesce(attributes["http.request.method"], attributes["http.method"])
        route = attributes["http.route"]
    else:
        method, route = stored
    texts, codes = statements
    # Each column as codes into its distinct values (-1: null), the codes of a span as one
    # number (mixed radix), its distinct numbers in first-seen order: no string is built.
    tables: list[list[Any]] = []
    digits = [np.asarray(kind.to_numpy(zero_copy_only=False), np.int64), codes.astype(np.int64)]
    for column in (names, method, route, *(attributes[key] for key in RESOURCE_KEYS)):
        table, code = _encoded(column)
        tables.append(table)
        digits.append(code)
    distinct, inverse = _first_seen_rows(digits)
    keys = []
    for kind_code, statement_code, *rest in distinct.tolist():
        name, method_text, route_text, *values = (
            None if code < 0 else table[code] for table, code in zip(tables, rest, strict=True)
        )
        statement = texts[statement_code] if statement_code >= 0 else None
        found = {k: v for k, v in zip(RESOURCE_KEYS, values, strict=True) if v is not None}
        keys.append(group_key(name, kind_code, method_text, route_text, found, statement))
    return keys, inverse


def _encoded(column: pa.Array) -> tuple[list[Any], npt.NDArray[np.int64]]:
    """A column's distinct values, and each row's code into them (-1: null)."""
    if column.null_count == len(column):
        return [], np.full(len(column), -1, np.int64)
    encoded = pc.dictionary_encode(column)
    indices = encoded.indices.fill_null(-1) if column.null_count else encoded.indices
    return encoded.dictionary.to_pylist(), np.asarray(indices.to_numpy(), np.int64)


def _first_seen_rows(
    digits: list[npt.NDArray[np.int64]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """The distinct rows of columns of codes (each at least -1) in first-seen order, and each
    row's index among them. Each row as one mixed-radix number, hashed in first-seen order by
    Arrow's dictionary encoding (no sort); rows too wide for 63 bits are sorted instead."""
    rows = len(digits[0])
    sizes = [int(d.max()) + 2 if rows else 1 for d in digits]
    if math.prod(sizes) >= 2**62:
        unique, first, inverse = np.unique(
            np.stack(digits, axis=1), axis=0, return_index=True, return_inverse=True
        )
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(order), np.intp)
        rank[order] = np.arange(len(order))
        return unique[order], rank[np.asarray(inverse).reshape(-1)]
    number = np.zeros(rows, np.int64)
    for column, size in zip(digits, sizes, strict=True):
        number = number * size + (column + 1)
    encoded = pc.dictionary_encode(pa.array(number))
    distinct = encoded.dictionary.to_numpy()
    unique = np.empty((len(distinct), len(sizes)), np.int64)
    for k in range(len(sizes) - 1, -1, -1):
        distinct, digit = np.divmod(distinct, sizes[k])
        unique[:, k] = digit - 1
    return unique, np.asarray(encoded.indices.to_numpy(), np.intp)


def _statements(attributes: dict[str, pa.Array]) -> tuple[list[str], npt.NDArray[np.intp]]:
    """The normalised statement per span, as codes into a list (-1: none).

    As :func:`~feedbot.spans.semconv.normalize_statement`: once per shape (digits all "1"),
    and per statement only where a digit survives in the shape's answer.
    """
    query, legacy = attributes["db.query.text"], attributes["db.statement"]
    statement = pc.if_else(pc.not_equal(query, "").fill_null(False), query, legacy)
    statement = pc.if_else(pc.equal(statement, ""), pa.scalar(None, pa.string()), statement)
    codes = np.full(len(statement), -1, np.intp)
    present = np.flatnonzero(pc.is_valid(statement).to_numpy(zero_copy_only=False))
    if not len(present):
        return [], codes
    texts = statement.take(pa.array(present))
    encoded = pc.dictionary_encode(_shapes(texts))
    answers = [normalize_shape(shape) for shape in encoded.dictionary.to_pylist()]
    found: dict[str, int] = {}
    per_shape = np.array([found.setdefault(a, len(found)) for a in answers], np.intp)
    shape_codes = encoded.indices.to_numpy()
    codes[present] = per_shape[shape_codes]
    exact = np.array(["1" in answer for answer in answers], np.bool_)
    for row in np.flatnonzero(exact[shape_codes]).tolist():
        answer = normalize_statement(texts[row].as_py())
        codes[present[row]] = found.setdefault(answer, len(found))
    return list(found), codes


def _shapes(texts: pa.Array) -> pa.Array:
    """Each string with its ASCII digits all "1" (UTF-8 puts no ASCII byte inside a character)."""
    validity, offsets, data = texts.buffers()
    ones = _ONES[np.frombuffer(data, np.uint8)] if data is not None else np.zeros(0, np.uint8)
    return pa.StringArray.from_buffers(
        len(texts), offsets, pa.py_buffer(ones), validity, texts.null_count, texts.offset
    )


def _locations(
    attributes: dict[str, pa.Array],
) -> tuple[list[CodeLocation], npt.NDArray[np.intp]]:
    """As :func:`~feedbot.spans.semconv.code_location`, per span with a ``code.*`` key."""
    present = np.zeros(len(attributes["http.route"]), np.bool_)
    for key in _CODE + tuple(key + "#int" for key in LINE_KEYS):
        present |= pc.is_valid(attributes[key]).to_numpy(zero_copy_only=False)
    codes = np.full(len(present), -1, np.intp)
    rows = np.flatnonzero(present)
    if not len(rows):
        return [], codes
    index = pa.array(rows)
    column = {key: attributes[key].take(index) for key in _CODE_READ}
    function = pc.coalesce(column["code.function.name"], column["code.function"])
    namespace = column["code.namespace"]
    qualify = pc.and_(
        pc.and_(pc.is_valid(function), pc.not_equal(namespace.fill_null(""), "")),
        pc.invert(pc.match_substring(function, ".")),
    )
    function = pc.if_else(
        qualify.fill_null(False),
        pc.binary_join_element_wise(namespace, function, "."),
        function,
    )
    path = pc.coalesce(column["code.file.path"], column["code.filepath"])
    new_line = pc.or_(
        pc.is_valid(column["code.line.number"]), pc.is_valid(column["code.line.number#int"])
    )
    line = pc.if_else(new_line, column["code.line.number#int"], column["code.lineno#int"])
    joined = pc.binary_join_element_wise(
        function,
        path,
        pc.cast(line, pa.string()),
        SEP,
        null_handling="replace",
        null_replacement=NULL,
    )
    encoded = pc.dictionary_encode(joined)
    locations: list[CodeLocation] = []
    for text in encoded.dictionary.to_pylist():
        parts = [None if part == NULL else part for part in text.split(SEP)]
        if len(parts) != 3:
            raise Unusual
        locations.append((parts[0], parts[1], None if parts[2] is None else int(parts[2])))
    per_text = np.array([-1 if loc == _NO_CODE else i for i, loc in enumerate(locations)])
    codes[rows] = per_text[encoded.indices.to_numpy()]
    return locations, codes


def _exceptions(
    events: pa.Array, errors: npt.NDArray[np.bool_], error_types: pa.Array
) -> list[tuple[int, Exceptions]]:
    """(row, exceptions) of the spans with events or an error status (few, so one at a time)."""
    counts = pc.list_value_length(events).fill_null(0).to_numpy()
    found = []
    for row in np.flatnonzero((counts > 0) | errors).tolist():
        listed = plain(events[row].as_py()) or []
        decoded = exception_events({"events": listed}, "span") if listed else []
        error_type = error_types[row].as_py()
        attributes = {} if error_type is None else {"error.type": error_type}
        exceptions = exceptions_of(decoded, attributes, bool(errors[row]))
        if exceptions:
            found.append((row, exceptions))
    return found
