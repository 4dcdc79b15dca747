"""Stored span rows, a batch at a time, as the columns the aggregator folds; pure, no I/O.

The embedded store sends each span's columns and, instead of its JSON attributes, only the
attributes the analysis reads (:data:`WANTED_KEYS`, and label-like keys), packed in one text per
span: ``key US type US value`` items joined by RS (see
:func:`feedbot.store.span_queries.span_column_rows`). Here they become the Arrow lists of OTLP
attributes that :mod:`feedbot.spans.columns` reads, so a batch is checked and read with the same
vectorised code as a file's block; only spans with exception events or an error status are
looked at one at a time. Anything that code would not read as the row path does (an attribute
of another type where a string is read, a control separator inside a value, …) raises
:class:`~feedbot.spans.otlp_scan.Unusual`, and the caller reads the rows instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from feedbot.spans.columns import (
    SpanColumns,
    _attributes,
    _check_hex,
    _group_keys,
    _labels,
    _locations,
    _statements,
    keyed,
)
from feedbot.spans.labels import LABEL_KEYS
from feedbot.spans.otlp import KINDS
from feedbot.spans.otlp_scan import Unusual
from feedbot.spans.semconv import READ_KEYS, exceptions_of

#: The attributes sent for each span, beyond label-like keys.
WANTED_KEYS: tuple[str, ...] = tuple(sorted(READ_KEYS | LABEL_KEYS))
ITEM_SEP, PART_SEP = "\x1e", "\x1f"
#: Values per row: the store's ``COLUMN_KEYS``.
_WIDTH = 13
_KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}  # INTERNAL → 1, the last one
_VALUE = pa.struct(
    [("stringValue", pa.string()), ("intValue", pa.string()), ("boolValue", pa.bool_())]
)


def stored_columns(rows: Sequence[Sequence[Any]]) -> SpanColumns:
    """A batch of rows (the store's ``COLUMN_KEYS``, in order) as :class:`SpanColumns`.

    Raises:
        Unusual: a row the vectorised reader would not read as the row path does.
    """
    n = len(rows)
    # One 2-D object array, sliced per column: Arrow converts an object array's strings in
    # about half the time it takes for a tuple of them (no per-item sequence protocol).
    table = np.array(rows, dtype=object) if n else np.empty((0, _WIDTH), object)
    if table.shape != (n, _WIDTH):
        raise Unusual  # not one value per column (a value numpy took for a sequence)
    (
        trace,
        span,
        parent,
        name,
        kind,
        route,
        method,
        start,
        duration,
        instance,
        error,
        packed,
        events,
    ) = (table[:, i] for i in range(_WIDTH))
    try:
        kinds = pa.array([_KIND_CODES[k] for k in kind.tolist()], pa.int64())
    except KeyError:
        raise Unusual from None
    starts = start.astype(np.int64)
    durations_ns = duration.astype(np.int64)
    durations = np.where(durations_ns < 0, -1.0, np.maximum(durations_ns, 0) / 1e6)
    errors = error.astype(np.bool_)
    trace_ids, span_ids = pa.array(trace, pa.string()), pa.array(span, pa.string())
    parents = pa.array(parent, pa.string())
    _check_hex(trace_ids, 32, nulls=False)
    _check_hex(span_ids, 16, nulls=False)
    _check_hex(parents, 16, nulls=True)
    lists = _lists(pa.array(packed, pa.string()))
    found = keyed(lists)
    attributes = _attributes(found, n)
    statements, statement_codes = _statements(attributes)
    keys, key_codes = _group_keys(
        pa.array(name, pa.string()),
        kinds,
        attributes,
        (statements, statement_codes),
        (pa.array(method, pa.string()), pa.array(route, pa.string())),
    )
    locations, location_codes = _locations(attributes)
    encoded = pc.dictionary_encode(pa.array(instance, pa.string()))
    instances: list[str | None] = encoded.dictionary.to_pylist()
    instance_codes = encoded.indices.fill_null(len(instances)).to_numpy().astype(np.intp)
    if encoded.indices.null_count:
        instances.append(None)
    return SpanColumns(
        trace_ids,
        span_ids,
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
        _exceptions(events, errors, attributes["error.type"]),
        *_labels(found, n),
    )


def _lists(packed: pa.Array) -> pa.Array:
    """The packed texts as OTLP attribute lists (``key``, ``value``: string, int or bool)."""
    items = pc.split_pattern(packed, ITEM_SEP)
    flat = pc.list_flatten(items)
    parts = pc.split_pattern(flat, PART_SEP)
    if len(flat) and not pc.all(pc.equal(pc.list_value_length(parts), 3)).as_py():
        raise Unusual  # a separator inside a key or a value
    key, kind, value = (pc.list_element(parts, i) for i in range(3))
    text = pc.if_else(pc.equal(kind, "text"), value, pa.scalar(None, pa.string()))
    number = pc.if_else(pc.equal(kind, "integer"), value, pa.scalar(None, pa.string()))
    flag = pc.if_else(
        pc.equal(kind, "true"),
        pa.scalar(True),
        pc.if_else(pc.equal(kind, "false"), pa.scalar(False), pa.scalar(None, pa.bool_())),
    )
    values = pa.StructArray.from_arrays([text, number, flag], fields=list(_VALUE))
    pairs = pa.StructArray.from_arrays([key, values], names=["key", "value"])
    offsets = pc.list_value_length(items).fill_null(0).to_numpy()
    bounds = np.concatenate([[0], np.cumsum(offsets)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(bounds), pairs)


def _loads(text: str) -> Any:
    """JSON text as the row path reads it (orjson, else the standard library: big integers)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _exceptions(
    events: np.ndarray[Any, Any], errors: np.ndarray[Any, Any], error_types: pa.Array
) -> list[tuple[int, tuple[tuple[str, str], ...]]]:
    """(row, exceptions) of the spans with events or an error status (few, so one at a time)."""
    found = []
    for row in np.flatnonzero(errors | np.array([e is not None for e in events], np.bool_)):
        listed = events[row]
        decoded = _loads(listed) if listed is not None else []
        error_type = error_types[row].as_py()
        attributes = {} if error_type is None else {"error.type": error_type}
        exceptions = exceptions_of(decoded, attributes, bool(errors[row]))
        if exceptions:
            found.append((int(row), exceptions))
    return found
