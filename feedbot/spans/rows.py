"""Spans as rows: one dict of column values per span, as the decoders produce them.

:class:`SpanRow` is what the OTLP decoders yield and the aggregator reads, and what the
embedded backend stores (one ``spans`` table row each, :mod:`feedbot.store.spans`); its string
values are cut to :data:`LIMITS`, the widths of that table's columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict, cast

#: Widths of the string columns; the OTLP decoder cuts values to fit.
LIMITS = {
    "service": 200,
    "version": 200,
    "environment": 100,
    "instance": 200,
    "name": 500,
    "route": 500,
    "method": 16,
}


class SpanRow(TypedDict):
    """One span as a dict of column values, ready for a bulk insert into ``spans``."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    version: str | None
    environment: str | None
    instance: str | None
    name: str
    kind: str
    route: str | None
    method: str | None
    start_ns: int
    duration_ns: int
    is_error: bool
    attributes: dict[str, Any]
    events: list[dict[str, Any]]


#: The keys of :class:`SpanRow`, in the order of the ``spans`` columns they fill.
ROW_KEYS: tuple[str, ...] = tuple(SpanRow.__annotations__)

#: Spans as columns: one list per :data:`ROW_KEYS` key, all of one length (a decoder's output
#: before any row dict is built; ``rows_of`` makes the rows).
Columns = dict[str, list[Any]]


def rows_of(columns: Columns) -> list[SpanRow]:
    """The rows of ``columns``, in order."""
    keys = ROW_KEYS
    values = zip(*(columns[key] for key in keys), strict=True)
    return [cast(SpanRow, dict(zip(keys, row, strict=True))) for row in values]


def columns_of(rows: Sequence[SpanRow]) -> Columns:
    """``rows`` as columns (what :func:`rows_of` undoes)."""
    plain: Sequence[dict[str, Any]] = cast(Sequence[dict[str, Any]], rows)
    return {key: [row[key] for row in plain] for key in ROW_KEYS}
