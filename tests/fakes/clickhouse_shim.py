"""A loopback ClickHouse HTTP interface answered by chDB, with the exporter's real schema.

:class:`ClickHouseShim` is a ``ThreadingHTTPServer`` on 127.0.0.1 that runs each POSTed (or
``?query=``) statement on one in-process chDB session. ``param_<name>`` URL parameters are bound
by chDB itself (``Session.query(sql, params=...)``: the server's ``{name:Type}`` substitution,
no string pasting in the shim); any other URL parameter is a ClickHouse setting and is applied
with ``SET`` after checking it is a plain name and value. Errors are answered the way the server
does: the ``Code: N. DB::Exception: ...`` text, an ``X-ClickHouse-Exception-Code`` header and
the server's HTTP status for that code.

:func:`exporter_rows` turns an ``ExportTraceServiceRequest`` (from the OpenTelemetry SDK or an
OTLP/JSON fixture) into ``otel_traces`` rows the way the Collector's exporter writes them,
current (``Server``, ``Error``, ``ScopeName`` column) or legacy (``SPAN_KIND_SERVER``,
``STATUS_CODE_ERROR``, scope in ``SpanAttributes``) spelling.
"""

from __future__ import annotations

import atexit
import base64
import json
import re
import threading
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from chdb import session as chdb_session
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

#: The Collector exporter's DDL (internal/sqltemplates/traces_table.sql, non-full-text variant).
DDL = """CREATE TABLE IF NOT EXISTS {db}.{table} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
        CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
        CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
LEGACY_KINDS = tuple(f"SPAN_KIND_{k.upper()}" for k in KINDS)
STATUSES = ("Unset", "Ok", "Error")
LEGACY_STATUSES = tuple(f"STATUS_CODE_{s.upper()}" for s in STATUSES)
#: HTTP statuses ClickHouse answers for some exception codes (the rest: 500).
HTTP_STATUS = {60: 404, 62: 400, 47: 400, 46: 400, 36: 400, 43: 400, 456: 400, 457: 400}
_SETTING = re.compile(r"[a-z_][a-z0-9_]*")
_VALUE = re.compile(r"[A-Za-z0-9_.]*")
_CODE = re.compile(r"Code: (\d+)\.")


# Exporter conversion ----------------------------------------------------------------------------


def request_from_otlp_json(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """Parse OTLP/JSON (hex ids) into the protobuf message (whose JSON mapping wants base64)."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    base64.b64encode(bytes.fromhex(v)).decode()
                    if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                    else fix(v)
                )
                for k, v in node.items()
            }
        return [fix(item) for item in node] if isinstance(node, list) else node

    return json_format.ParseDict(fix(document), ExportTraceServiceRequest())


def as_string(value: Any) -> str:
    """pcommon ``Value.AsString``: how the exporter stringifies attribute values for its Maps."""
    which = value.WhichOneof("value")
    if which is None:
        return ""
    if which == "string_value":
        return str(value.string_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return str(np.format_float_positional(value.double_value, trim="-"))
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return json.dumps(_raw(value), separators=(",", ":"))


def _raw(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None if which is None else getattr(value, which)


def _attributes(attributes: Iterable[Any]) -> dict[str, str]:
    return {kv.key: as_string(kv.value) for kv in attributes}


def _time(ns: int) -> str:
    """DateTime64(9) as ``seconds.nanoseconds`` text, which ClickHouse parses exactly."""
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def exporter_rows(
    request: ExportTraceServiceRequest, *, legacy: bool = False
) -> list[dict[str, Any]]:
    """One ``otel_traces`` row per span, as the Collector's ``clickhouse`` exporter writes it."""
    rows = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                rows.append(_row(span, resource, scope_spans.scope, legacy))
    return rows


def _row(span: Any, resource: dict[str, str], scope: Any, legacy: bool) -> dict[str, Any]:
    attributes = _attributes(span.attributes)
    if legacy:
        # Exporters before mid-2024 had no Scope columns and put the scope into SpanAttributes.
        attributes.update({"otel.scope.name": scope.name, "otel.scope.version": scope.version})
    events = list(span.events)
    links = list(span.links)
    return {
        "Timestamp": _time(span.start_time_unix_nano),
        "TraceId": span.trace_id.hex(),
        "SpanId": span.span_id.hex(),
        "ParentSpanId": span.parent_span_id.hex(),
        "TraceState": span.trace_state,
        "SpanName": span.name,
        "SpanKind": (LEGACY_KINDS if legacy else KINDS)[span.kind],
        "ServiceName": resource.get("service.name", ""),
        "ResourceAttributes": dict(resource),
        "ScopeName": "" if legacy else scope.name,
        "ScopeVersion": "" if legacy else scope.version,
        "SpanAttributes": attributes,
        "Duration": max(0, span.end_time_unix_nano - span.start_time_unix_nano),
        "StatusCode": (LEGACY_STATUSES if legacy else STATUSES)[span.status.code],
        "StatusMessage": span.status.message,
        "Events.Timestamp": [_time(e.time_unix_nano) for e in events],
        "Events.Name": [e.name for e in events],
        "Events.Attributes": [_attributes(e.attributes) for e in events],
        "Links.TraceId": [link.trace_id.hex() for link in links],
        "Links.SpanId": [link.span_id.hex() for link in links],
        "Links.TraceState": [link.trace_state for link in links],
        "Links.Attributes": [_attributes(link.attributes) for link in links],
    }


# The server -------------------------------------------------------------------------------------


class ClickHouseShim:
    """chDB behind ClickHouse's HTTP interface on 127.0.0.1:<free port>; a context manager.

    chDB allows one session per process, so one shim serves a whole test session; tests call
    :meth:`reset` and :meth:`insert`. ``requests`` records ``(params, sql)`` of every query.

    Args:
        database: the database holding the table.
        table: the table name (the exporter's ``traces_table_name``).
    """

    def __init__(self, database: str = "default", table: str = "otel_traces") -> None:
        self.database, self.table = database, table
        self.session = chdb_session.Session()
        self.lock = threading.Lock()
        self.requests: list[tuple[dict[str, str], str]] = []
        self.run(f"CREATE DATABASE IF NOT EXISTS {database}")
        self.run(DDL.format(db=database, table=table))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> ClickHouseShim:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        self.session.close()

    def run(self, sql: str, params: dict[str, str] | None = None, fmt: str = "JSONEachRow") -> str:
        """Run one statement on the session; its output as text."""
        with self.lock:
            result = self.session.query(sql, fmt, params=params or {})
        return "" if result is None else str(result.bytes().decode())

    def reset(self) -> None:
        """Empty the table and forget recorded requests."""
        self.run(f"TRUNCATE TABLE {self.database}.{self.table}")
        self.requests.clear()

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert exporter rows (see :func:`exporter_rows`)."""
        if rows:
            lines = "\n".join(json.dumps(row) for row in rows)
            self.run(f"INSERT INTO {self.database}.{self.table} FORMAT JSONEachRow\n{lines}\n")

    def answer(self, params: dict[str, str], sql: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one HTTP-interface request."""
        self.requests.append((params, sql))
        bound = {k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if not k.startswith("param_")}
        settings.pop("query", None)
        settings.pop("database", None)
        try:
            for key, value in settings.items():
                if not (_SETTING.fullmatch(key) and _VALUE.fullmatch(value)):
                    raise ValueError(f"Code: 115. DB::Exception: Unknown setting {key}")
                self.run(f"SET {key} = {value if value.isdigit() else repr(value)}")
            output = self.run(sql, bound, fmt="TabSeparated")
        except Exception as exc:  # chdb raises ChdbError (a RuntimeError) with the server text
            message = str(exc)
            code = int(match.group(1)) if (match := _CODE.search(message)) else 1000
            headers = {"X-ClickHouse-Exception-Code": str(code)}
            return HTTP_STATUS.get(code, 500), headers, message.encode()
        return 200, {"Content-Type": "application/x-ndjson; charset=UTF-8"}, output.encode()


def _handler(shim: ClickHouseShim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(self.rfile.read(length).decode())

        def do_GET(self) -> None:
            self._answer("")

        def _answer(self, body: str) -> None:
            params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            sql = (params.get("query", "") + "\n" + body).strip()
            status, headers, content = shim.answer(params, sql)
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(content))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


_SHARED: list[ClickHouseShim] = []


def shared_shim() -> ClickHouseShim:
    """The process's one shim, started on first use and stopped at exit; callers reset it.

    chDB allows one session per process, so every test module that needs ClickHouse (the unit
    tests, the contract suite) shares this one rather than starting its own.
    """
    if not _SHARED:
        shim = ClickHouseShim().__enter__()
        atexit.register(shim.__exit__, None, None, None)
        _SHARED.append(shim)
    return _SHARED[0]
