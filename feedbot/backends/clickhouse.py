"""The OpenTelemetry Collector ``clickhouse`` exporter's ``otel_traces`` table, over HTTP.

Differs from the other backends in that everything is computed in ClickHouse: five SQL queries
per release (groups with counts, errors, quantiles and a bounded sample of durations; exception
types; code locations; callers, by a self-join on ``ParentSpanId``; statements repeated under one
parent). User input reaches the server only as bound parameters (``param_<name>`` with
``{name:Type}`` placeholders); the database and table names are validated and bound as
``Identifier`` parameters. Both spellings of ``SpanKind``/``StatusCode`` are matched
(``Server``/``SPAN_KIND_SERVER``, ``Error``/``STATUS_CODE_ERROR``), and both generations of the
``code.*``, ``db.*`` and ``deployment.environment`` attribute names are read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np

from feedbot.backends.base import Traffic
from feedbot.backends.clickhouse_groups import GROUP
from feedbot.backends.http import JsonApi, RetryPolicy
from feedbot.errors import BackendResponseError, ConfigError
from feedbot.spans.aggregate import REMOTE, ROOT, to_ns
from feedbot.spans.group import MAX_CODE_LOCATIONS, MAX_EXCEPTION_TYPES, UNKNOWN_INSTANCE
from feedbot.spans.model import (
    CodeSeen,
    ExceptionSeen,
    ReleaseData,
    RepeatedStatement,
    SpanGroupStats,
    SpanQuery,
    from_ns,
    observed_range,
)
from feedbot.spans.semconv import normalize_statement

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Durations returned per group; larger groups are sampled (``groupArraySample``, fixed seed).
MAX_DURATIONS = 50_000
#: Rows of (trace, parent, statement) repetitions read at most.
MAX_REPEAT_ROWS = 20_000
#: Settings sent with every query: numbers unquoted whatever the server version, and LEFT JOIN
#: misses as default values (``''``) even where a profile sets ``join_use_nulls``.
SETTINGS: dict[str, str | int] = {
    "output_format_json_quote_64bit_integers": 0,
    "join_use_nulls": 0,
}

_KIND = """multiIf(
    SpanKind IN ('Server', 'SPAN_KIND_SERVER'), 'SERVER',
    SpanKind IN ('Client', 'SPAN_KIND_CLIENT'), 'CLIENT',
    SpanKind IN ('Producer', 'SPAN_KIND_PRODUCER'), 'PRODUCER',
    SpanKind IN ('Consumer', 'SPAN_KIND_CONSUMER'), 'CONSUMER', 'INTERNAL')"""
_METHOD = """upper(if(SpanAttributes['http.request.method'] != '',
    SpanAttributes['http.request.method'], SpanAttributes['http.method']))"""
_ENV = """if(ResourceAttributes['deployment.environment.name'] != '',
    ResourceAttributes['deployment.environment.name'],
    ResourceAttributes['deployment.environment'])"""
_INSTANCE = """if(ResourceAttributes['service.instance.id'] != '',
    ResourceAttributes['service.instance.id'], ResourceAttributes['host.name'])"""
_STATEMENT = """if(SpanAttributes['db.query.text'] != '',
    SpanAttributes['db.query.text'], SpanAttributes['db.statement'])"""

#: The spans of one query with the derived columns every statement needs, as a CTE.
_SPANS = f"""WITH f AS (
  SELECT TraceId, SpanId, ParentSpanId, Timestamp, Duration, SpanAttributes,
         Events.Name AS ev_names, Events.Attributes AS ev_attrs,
         StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS is_error,
         {_KIND} AS kind, SpanAttributes['http.route'] AS route, {_METHOD} AS method,
         {GROUP} AS grp,
         {_INSTANCE} AS instance
  FROM {{database:Identifier}}.{{table:Identifier}}
  WHERE ServiceName = {{service:String}}
    AND ResourceAttributes['service.version'] = {{version:String}}
    AND Timestamp >= fromUnixTimestamp64Nano({{start_ns:Int64}})
    AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}}){{extra}}
)
"""

_GROUPS = """SELECT grp, kind, count() AS spans, countIf(is_error) AS errors,
  arrayMap(q -> q / 1e6, quantilesTDigest(0.5, 0.95, 0.99)(Duration)) AS quantiles_ms,
  groupArraySample({cap}, 1)((toFloat64(Duration) / 1e6, instance)) AS sample,
  toUnixTimestamp64Nano(min(Timestamp)) AS first_ns,
  toUnixTimestamp64Nano(max(Timestamp)) AS last_ns,
  (SELECT uniqExact(TraceId) FROM f) AS traces
FROM f GROUP BY grp, kind ORDER BY spans DESC, grp, kind
FORMAT JSONEachRow"""

_EXCEPTIONS = """SELECT grp, kind, type, count() AS n,
  any(message) AS message, any(TraceId) AS trace
FROM (
  SELECT grp, kind, TraceId,
    if(attrs['exception.type'] != '', attrs['exception.type'],
       if(attrs['error.type'] != '', attrs['error.type'], '(unknown)')) AS type,
    attrs['exception.message'] AS message
  FROM f ARRAY JOIN ev_names AS name, ev_attrs AS attrs
  WHERE name = 'exception' OR endsWith(name, '.exception')
  UNION ALL
  SELECT grp, kind, TraceId, SpanAttributes['error.type'] AS type, '' AS message
  FROM f
  WHERE is_error AND SpanAttributes['error.type'] != ''
    AND NOT arrayExists(n -> n = 'exception' OR endsWith(n, '.exception'), ev_names)
)
GROUP BY grp, kind, type ORDER BY n DESC, type LIMIT {limit} BY grp, kind
FORMAT JSONEachRow"""

_CODE = """SELECT grp, kind, function, filepath, lineno, count() AS n
FROM (
  SELECT grp, kind,
    if(mapContains(SpanAttributes, 'code.function.name'), SpanAttributes['code.function.name'],
       if(mapContains(SpanAttributes, 'code.function'), SpanAttributes['code.function'], NULL))
      AS bare,
    if(bare IS NOT NULL AND SpanAttributes['code.namespace'] != '' AND position(bare, '.') = 0,
       concat(SpanAttributes['code.namespace'], '.', bare), bare) AS function,
    if(mapContains(SpanAttributes, 'code.file.path'), SpanAttributes['code.file.path'],
       if(mapContains(SpanAttributes, 'code.filepath'), SpanAttributes['code.filepath'], NULL))
      AS filepath,
    toInt64OrNull(if(mapContains(SpanAttributes, 'code.line.number'),
       SpanAttributes['code.line.number'], SpanAttributes['code.lineno'])) AS lineno
  FROM f
)
WHERE function IS NOT NULL OR filepath IS NOT NULL OR lineno IS NOT NULL
GROUP BY grp, kind, function, filepath, lineno
ORDER BY n DESC, function, filepath, lineno LIMIT {limit} BY grp, kind
FORMAT JSONEachRow"""

_CALLERS = f"""SELECT c.grp AS grp, c.kind AS kind,
  multiIf(c.ParentSpanId = '', '{ROOT}', p.SpanId = '', '{REMOTE}', p.grp) AS caller,
  count() AS n
FROM f AS c LEFT JOIN (SELECT TraceId, SpanId, grp FROM f) AS p
  ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId
GROUP BY grp, kind, caller ORDER BY n DESC, caller
FORMAT JSONEachRow"""

# Per trace and parent span, DB statements grouped by ClickHouse's normalizeQuery (literals
# become ?); then per trace, parent group and statement the worst parent span, as the
# streaming aggregator does. The label is re-normalised in Python (aggregate.normalize_statement)
# so that every backend reports the same statement text.
_REPEATS = f"""SELECT TraceId AS trace, parent, argMax(example, n) AS statement,
  max(n) AS repeats, argMax(total_ms, n) AS total_ms
FROM (
  SELECT s.TraceId AS TraceId, s.example AS example, s.norm AS norm, s.n AS n,
    s.total_ms AS total_ms,
    multiIf(s.ParentSpanId = '', '{ROOT}', p.SpanId = '', '{REMOTE}', p.grp) AS parent
  FROM (
    SELECT TraceId, ParentSpanId, normalizeQuery(stmt) AS norm, any(stmt) AS example,
      count() AS n, sum(toFloat64(Duration)) / 1e6 AS total_ms
    FROM (SELECT TraceId, ParentSpanId, Duration, {_STATEMENT} AS stmt FROM f)
    WHERE stmt != '' GROUP BY TraceId, ParentSpanId, norm HAVING n >= 2
  ) AS s LEFT JOIN (SELECT TraceId, SpanId, grp FROM f) AS p
    ON s.TraceId = p.TraceId AND s.ParentSpanId = p.SpanId
)
GROUP BY TraceId, parent, norm ORDER BY trace, parent, statement LIMIT {{limit}}
FORMAT JSONEachRow"""


#: Spans per version of a service in a window (the CTE's filters, any version).
#: The service's spans that name a version in a window: ``{columns}`` and ``{tail}`` (grouping)
#: say what is counted, ``{extra}`` the environment (:meth:`ClickHouseBackend.filters`).
_VERSIONED = """SELECT {columns}
FROM {database:Identifier}.{table:Identifier}
WHERE ServiceName = {service:String}
  AND ResourceAttributes['service.version'] != ''
  AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
  AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64}){extra}{tail}
FORMAT JSONEachRow"""
_SPAN_TIMES = """toUnixTimestamp64Nano(min(Timestamp)) AS first_ns,
  toUnixTimestamp64Nano(max(Timestamp)) AS last_ns"""
#: Spans per version.
_VERSIONS = (
    "ResourceAttributes['service.version'] AS version, count() AS spans",
    "\nGROUP BY version ORDER BY spans DESC, version",
)
#: First and last span start and spans per version.
_SERVING = (
    f"ResourceAttributes['service.version'] AS version, count() AS spans,\n  {_SPAN_TIMES}",
    "\nGROUP BY version ORDER BY version",
)
#: The service's spans, every version together, and its entry spans (requests).
_TRAFFIC = (
    f"count() AS spans,\n  countIf({_KIND} IN ('SERVER', 'CONSUMER')) AS entries,\n  {_SPAN_TIMES}",
    "",
)


_CENSUS = f"""SELECT {_ENV} AS environment,
    ResourceAttributes['service.version'] AS version, count() AS spans
FROM {{database:Identifier}}.{{table:Identifier}}
WHERE ServiceName = {{service:String}}
  AND Timestamp >= fromUnixTimestamp64Nano({{start_ns:Int64}})
  AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}})
GROUP BY environment, version ORDER BY spans DESC, environment, version
FORMAT JSONEachRow"""


class ClickHouseBackend:
    """Spans in the ``otel_traces`` table of the Collector's ClickHouse exporter.

    Args:
        http: a client whose ``base_url`` is the ClickHouse HTTP interface (port 8123), with
            authentication headers (``X-ClickHouse-User``/``X-ClickHouse-Key``) set.
        table: the exporter's ``traces_table_name``.
        database: the exporter's ``database``.
        ui_url: the team's trace UI, for links to example traces (kept for the report).
        max_durations: durations returned per group before the group is sampled.
        retry: the retry policy (tests pass one that does not sleep).

    Raises:
        ConfigError: ``table`` or ``database`` is not a plain identifier.
    """

    name = "clickhouse"

    def __init__(
        self,
        http: httpx.Client,
        *,
        table: str = "otel_traces",
        database: str = "default",
        ui_url: str | None = None,
        max_durations: int = MAX_DURATIONS,
        retry: RetryPolicy | None = None,
    ) -> None:
        problems = [
            f"traces.{key}: {value!r} is not a ClickHouse identifier ([A-Za-z_][A-Za-z0-9_]*)"
            for key, value in (("table", table), ("database", database))
            if not IDENTIFIER.fullmatch(value)
        ]
        if problems:
            raise ConfigError(problems)
        self.api = JsonApi(http, backend=self.name, retry=retry)
        self.table, self.database, self.ui_url = table, database, ui_url
        self.max_durations = max(1, int(max_durations))

    def close(self) -> None:
        """Close the HTTP client it was given."""
        self.api.close()

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Everything is computed in SQL; durations of groups over ``max_durations`` spans are a
        fixed-seed random sample, which the notes say (with the exact SQL quantiles)."""
        rows = list(self.select(query, _GROUPS.format(cap=self.max_durations)))
        if not rows:
            return ReleaseData(groups=[], notes=("clickhouse: no spans matched",))
        groups = {(r["grp"], r["kind"]): _group(r) for r in rows}
        notes = _sample_notes(rows, self.max_durations)
        extras = (
            (_EXCEPTIONS.format(limit=MAX_EXCEPTION_TYPES), _add_exception),
            (_CODE.format(limit=MAX_CODE_LOCATIONS), _add_code),
            (_CALLERS, _add_caller),
        )
        parts: dict[tuple[str, str], dict[str, list[Any]]] = {key: {} for key in groups}
        for sql, add in extras:
            for row in self.select(query, sql):
                add(parts.setdefault((row["grp"], row["kind"]), {}), row)
        repeats, more = self._repeats(query)
        if query.warmup > timedelta(0):
            more += ("warm-up exclusion not applied by the clickhouse backend",)
        stats = [replace(group, **_finish(parts.get(key, {}))) for key, group in groups.items()]
        stats.sort(key=lambda s: (-s.count, s.name, s.kind))
        return ReleaseData(
            groups=stats,
            repeats=repeats,
            traces=int(rows[0]["traces"]),
            notes=notes + more,
            observed=observed_range(
                min(int(r["first_ns"]) for r in rows), max(int(r["last_ns"]) for r in rows)
            ),
        )

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """Spans per ``service.version`` of ``service`` in ``[start, end)``, counted in SQL.

        Raises:
            BackendUnavailable: ClickHouse did not answer (after retries).
            BackendResponseError: it refused the query or answered something else.
        """
        rows = self._versioned(_VERSIONS, service, start, end, environment)
        return {str(r["version"]): int(r["spans"]) for r in rows}

    def serving(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, tuple[datetime, datetime, int]]:
        """First and last span start and spans per version in ``[start, end)``, in SQL.

        Raises:
            BackendUnavailable: ClickHouse did not answer (after retries).
            BackendResponseError: it refused the query or answered something else.
        """
        rows = self._versioned(_SERVING, service, start, end, environment)
        return {
            str(r["version"]): (
                from_ns(int(r["first_ns"])),
                from_ns(int(r["last_ns"])),
                int(r["spans"]),
            )
            for r in rows
        }

    def traffic(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> Traffic | None:
        """The service's spans in ``[start, end)``, every version together, in one SQL count.

        Raises:
            BackendUnavailable: ClickHouse did not answer (after retries).
            BackendResponseError: it refused the query or answered something else.
        """
        rows = self._versioned(_TRAFFIC, service, start, end, environment)
        if not rows or not int(rows[0]["spans"]):
            return None
        row = rows[0]
        return Traffic(
            from_ns(int(row["first_ns"])),
            from_ns(int(row["last_ns"])),
            int(row["spans"]),
            int(row["entries"]),
        )

    def _versioned(
        self,
        shape: tuple[str, str],
        service: str,
        start: datetime,
        end: datetime,
        environment: str | None,
    ) -> list[dict[str, Any]]:
        """The rows of :data:`_VERSIONED` with ``shape``'s columns and grouping."""
        extra, params = self.filters(SpanQuery(service, "", start, end, environment))
        del params["param_version"]
        columns, tail = shape
        sql = (
            _VERSIONED.replace("{columns}", columns)
            .replace("{extra}", extra)
            .replace("{tail}", tail)
        )
        response = self.api.send("POST", "/", params=params, content=sql.encode())
        assert response is not None
        return list(parse_rows(response.text, self.name))

    def census(
        self, service: str, start: datetime, end: datetime
    ) -> dict[tuple[str | None, str | None], int]:
        """Spans of ``service`` in ``[start, end)`` per (environment, version), counted in SQL.

        An empty map value (the exporter writes ``''`` for a missing attribute) is None.

        Raises:
            BackendUnavailable: ClickHouse did not answer (after retries).
            BackendResponseError: it refused the query or answered something else.
        """
        _, params = self.filters(SpanQuery(service, "", start, end, None))
        del params["param_version"]
        response = self.api.send("POST", "/", params=params, content=_CENSUS.encode())
        assert response is not None
        counts: dict[tuple[str | None, str | None], int] = {}
        for r in parse_rows(response.text, self.name):
            key = (str(r["environment"]) or None, str(r["version"]) or None)
            counts[key] = counts.get(key, 0) + int(r["spans"])
        return counts

    def _repeats(self, query: SpanQuery) -> tuple[list[RepeatedStatement], tuple[str, ...]]:
        rows = list(self.select(query, _REPEATS.format(limit=MAX_REPEAT_ROWS + 1)))
        notes: tuple[str, ...] = ()
        if len(rows) > MAX_REPEAT_ROWS:
            rows = rows[:MAX_REPEAT_ROWS]
            notes = (f"clickhouse: repeated statements read from the first {len(rows)} rows",)
        return repeated_statements(rows), notes

    def select(self, query: SpanQuery, statement: str) -> Iterator[dict[str, Any]]:
        """Run one statement of this module over the spans of ``query``; its rows.

        Raises:
            BackendUnavailable: ClickHouse did not answer (after retries).
            BackendResponseError: it refused the query or answered something other than
                JSONEachRow.
        """
        sql, params = self.bind(query, statement)
        response = self.api.send("POST", "/", params=params, content=sql.encode())
        assert response is not None
        return parse_rows(response.text, self.name)

    def bind(self, query: SpanQuery, statement: str) -> tuple[str, dict[str, str | int]]:
        """The SQL text (the spans CTE + ``statement``) and the URL parameters binding it."""
        extra, params = self.filters(query)
        return _SPANS.replace("{extra}", extra) + statement, params

    def filters(self, query: SpanQuery) -> tuple[str, dict[str, str | int]]:
        """The optional conditions of ``query`` (SQL) and the URL parameters of every filter."""
        extra = ""
        params: dict[str, str | int] = {
            "param_database": self.database,
            "param_table": self.table,
            "param_service": query.service,
            "param_version": query.version,
            "param_start_ns": to_ns(query.start),
            "param_end_ns": to_ns(query.end),
            **SETTINGS,
        }
        if query.environment is not None:
            # Spans without deployment.environment belong to every environment (as in
            # aggregate.matches): a release must not look unused because the SDK left it out.
            extra += f"\n    AND {_ENV} IN ('', {{environment:String}})"
            params["param_environment"] = query.environment
        if query.span_name is not None:
            extra += "\n    AND SpanName = {span_name:String}"
            params["param_span_name"] = query.span_name
        return extra, params


def parse_rows(body: str, backend: str = "clickhouse") -> Iterator[dict[str, Any]]:
    """The objects of a JSONEachRow answer.

    Raises:
        BackendResponseError: a line is not a JSON object (ClickHouse reports an error that
            happens after the first rows were sent by appending it to the body).
    """
    rows = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            detail = " ".join(line.split())[:300]
            raise BackendResponseError(
                f"{backend}: POST / answered a line {number} that is not a JSONEachRow "
                f"object: {detail}"
            )
        rows.append(row)
    return iter(rows)


def _group(row: dict[str, Any]) -> SpanGroupStats:
    sample = row["sample"]
    durations = np.fromiter((float(ms) for ms, _ in sample), dtype=np.float64, count=len(sample))
    ids: dict[str, int] = {}
    indices = np.fromiter(
        (ids.setdefault(instance, len(ids)) for _, instance in sample),
        dtype=np.int32,
        count=len(sample),
    )
    names: tuple[str, ...] = tuple(name or UNKNOWN_INSTANCE for name in ids)
    if list(ids) == [""]:
        names, indices = (), indices[:0]
    return SpanGroupStats(
        name=row["grp"],
        kind=row["kind"],
        count=int(row["spans"]),
        errors=int(row["errors"]),
        durations_ms=durations,
        instances=indices,
        instance_names=names,
    )


def _sample_notes(rows: list[dict[str, Any]], cap: int) -> tuple[str, ...]:
    notes = []
    for row in rows:
        if int(row["spans"]) > cap:
            p50, p95, p99 = (float(q) for q in row["quantiles_ms"])
            notes.append(
                f"clickhouse: {row['grp']} ({row['kind']}): durations of {cap} of "
                f"{int(row['spans'])} spans sampled; SQL p50/p95/p99 over all spans "
                f"{p50:.1f}/{p95:.1f}/{p99:.1f} ms (t-digest)"
            )
    return tuple(notes)


def _add_exception(part: dict[str, list[Any]], row: dict[str, Any]) -> None:
    seen = ExceptionSeen(
        type=row["type"], count=int(row["n"]), message=row["message"], example_trace_id=row["trace"]
    )
    part.setdefault("exceptions", []).append(seen)


def _add_code(part: dict[str, list[Any]], row: dict[str, Any]) -> None:
    lineno = row["lineno"]
    seen = CodeSeen(
        function=row["function"],
        filepath=row["filepath"],
        lineno=None if lineno is None else int(lineno),
        count=int(row["n"]),
    )
    part.setdefault("code", []).append(seen)


def _add_caller(part: dict[str, list[Any]], row: dict[str, Any]) -> None:
    part.setdefault("callers", []).append((row["caller"], int(row["n"])))


def _finish(part: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "exceptions": tuple(sorted(part.get("exceptions", []), key=lambda e: (-e.count, e.type))),
        "code": tuple(
            sorted(
                part.get("code", []),
                key=lambda c: (-c.count, c.function or "", c.filepath or "", c.lineno or 0),
            )
        ),
        "callers": tuple(sorted(part.get("callers", []), key=lambda c: (-c[1], c[0]))),
    }


def repeated_statements(rows: list[dict[str, Any]]) -> list[RepeatedStatement]:
    """Fold (trace, parent group, statement, repeats, total_ms) rows into one
    :class:`RepeatedStatement` per parent group and statement, as the streaming aggregator does.
    """
    merged: dict[tuple[str, str], tuple[list[int], list[float], list[Any]]] = {}
    for row in rows:
        key = (row["parent"], normalize_statement(row["statement"]))
        counts, totals, example = merged.setdefault(key, ([], [], [0, ""]))
        count = int(row["repeats"])
        counts.append(count)
        totals.append(float(row["total_ms"]))
        if count > example[0]:
            example[:] = [count, row["trace"]]
    return [
        RepeatedStatement(
            parent=parent,
            statement=statement,
            repeats=np.array(counts, dtype=np.int32),
            total_ms=np.array(totals, dtype=np.float64),
            example_trace_id=str(example[1]),
        )
        for (parent, statement), (counts, totals, example) in sorted(merged.items())
    ]
