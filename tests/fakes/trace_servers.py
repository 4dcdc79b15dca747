"""Jaeger (api_v3) and Zipkin (v2) query APIs served over real HTTP on 127.0.0.1, for tests.

Each fake is a context manager around a ``ThreadingHTTPServer`` on a free loopback port. It
records every request, answers the documented shapes from spans it holds (the upstream
recorded data, ``fixtures_dir``, or spans made by the OpenTelemetry SDK and converted the way
the real backend would store them by :mod:`tests.fakes.sdk_spans`), and can be told to fail::

    fake.fail_next("/api/v3/traces", status=429, retry_after="1")   # rate limited
    fake.fail_next("/api/v3/traces", status=500, times=2)           # server error
    fake.fail_next("/api/v3/traces", delay=1.0)                     # slow: past the timeout
    fake.fail_next("/api/v3/traces", body=b"<html>", status=200)    # garbage
    fake.replay("/api/v3/traces", fixtures_dir / "jaeger/api-v3-snapshots/FindTraces.json")

A failure replaces the answer for the next ``times`` requests to that path; a replay replaces
it for good.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import httpx

JSONDict = dict[str, Any]
Answer = tuple[int, bytes, dict[str, str]]


class Call(NamedTuple):
    """One recorded request."""

    method: str
    path: str
    params: dict[str, list[str]]

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.params.get(name)
        return values[0] if values else None


@dataclass
class Failure:
    """How the next request(s) to a path are answered instead; see ``fail_next``."""

    status: int = 500
    body: bytes | None = None
    retry_after: str | None = None
    delay: float = 0.0
    content_type: str = "application/json"
    times: int = 1


def json_answer(status: int, document: Any) -> Answer:
    return status, json.dumps(document).encode(), {"Content-Type": "application/json"}


class FakeTraceServer:
    """The shared part: server thread, call recording, failures and replays."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._failures: dict[str, list[Failure]] = defaultdict(list)
        self._replays: dict[str, bytes] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeTraceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def client(self, *, timeout: float = 2.0, prefix: str = "") -> httpx.Client:
        """A client for this server, as ``feedbot.backends.http.make_client`` would build."""
        return httpx.Client(base_url=self.base_url + prefix, timeout=timeout)

    def fail_next(self, path: str, **failure: Any) -> None:
        """Answer the next request(s) to ``path`` as :class:`Failure` (``status``, ``times``…)."""
        with self._lock:
            self._failures[path].append(Failure(**failure))

    def replay(self, path: str, file: Path) -> None:
        """Answer every GET of ``path`` with the bytes of ``file`` (a recorded response)."""
        with self._lock:
            self._replays[path] = file.read_bytes()

    def requests(self, path: str) -> list[Call]:
        """The recorded requests to ``path``."""
        with self._lock:
            return [call for call in self.calls if call.path == path]

    def handle(self, method: str, path: str, params: dict[str, list[str]]) -> Answer:
        with self._lock:
            self.calls.append(Call(method, path, params))
            failure = self._take_failure(path)
            replay = self._replays.get(path)
        if failure is not None:
            if failure.delay:
                self._stopping.wait(failure.delay)
            if failure.body is not None or failure.status >= 300:
                return self._failure_answer(failure)
        if replay is not None:
            return 200, replay, {"Content-Type": "application/json"}
        return self.route(method, path, params)

    def route(self, method: str, path: str, params: dict[str, list[str]]) -> Answer:
        raise NotImplementedError

    def _take_failure(self, path: str) -> Failure | None:
        queue = self._failures.get(path)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _failure_answer(self, failure: Failure) -> Answer:
        headers = {"Content-Type": failure.content_type}
        if failure.retry_after is not None:
            headers["Retry-After"] = failure.retry_after
        body = failure.body
        if body is None:
            body = self.error_body(failure.status, f"injected failure {failure.status}")
        return failure.status, body, headers

    def error_body(self, status: int, message: str) -> bytes:
        return message.encode()


def _handler(fake: FakeTraceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self._answer("POST")

        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            params = parse_qs(url.query, keep_blank_values=True)
            status, body, headers = fake.handle(method, url.path, params)
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# Jaeger api_v3 -----------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", re.IGNORECASE
)


def parse_rfc3339(value: str) -> int:
    """RFC 3339 with up to nine fractional digits → nanoseconds since the epoch."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"parsing time {value!r} as RFC3339")
    zone = "+00:00" if match.group(3).upper() == "Z" else match.group(3)
    seconds = int(datetime.fromisoformat(match.group(1) + zone).timestamp())
    return seconds * 1_000_000_000 + int((match.group(2) or "0").ljust(9, "0"))


def _attr_value(value: JSONDict) -> str:
    """An OTLP AnyValue as Jaeger compares it in tag queries: stringified."""
    for key, found in value.items():
        if key == "boolValue":
            return "true" if found else "false"
        return str(found) if not isinstance(found, dict | list) else json.dumps(found)
    return ""


def _attrs(obj: JSONDict) -> dict[str, str]:
    return {a["key"]: _attr_value(a.get("value") or {}) for a in obj.get("attributes") or []}


class _Stored(NamedTuple):
    resource: JSONDict
    scope: JSONDict
    span: JSONDict
    service: str
    attributes: dict[str, str]  # span and resource attributes, stringified


class FakeJaeger(FakeTraceServer):
    """Jaeger's query service, api_v3 over HTTP (``/api/v3/traces``, ``/services``…).

    Search follows the documented semantics: ``query.service_name``/``serviceName``,
    ``operation_name``, ``start_time_min``/``max`` (RFC 3339, both required),
    ``num_traces``/``search_depth`` (default 100), ``query.attributes`` matched against span and
    resource attributes of one span (``error=true`` means status ERROR, as in Jaeger 2's
    stores); whole traces come back merged into one ``resourceSpans`` list, newest first; 404
    ``No traces found`` when nothing matches. ``/api/v3/operations?service=`` lists span names
    with their kinds.
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[_Stored] = []

    def __enter__(self) -> FakeJaeger:
        super().__enter__()
        return self

    def add_otlp(self, document: JSONDict) -> None:
        """Store every span of an OTLP/JSON ``TracesData`` document."""
        stored = []
        for resource_spans in document.get("resourceSpans") or []:
            resource = resource_spans.get("resource") or {}
            resource_attrs = _attrs(resource)
            for scope_spans in resource_spans.get("scopeSpans") or []:
                scope = scope_spans.get("scope") or {}
                for span in scope_spans.get("spans") or []:
                    attributes = {**resource_attrs, **_attrs(span)}
                    service = resource_attrs.get("service.name", "")
                    stored.append(_Stored(resource, scope, span, service, attributes))
        with self._lock:
            self._spans += stored

    def error_body(self, status: int, message: str) -> bytes:
        return json.dumps({"error": {"httpCode": status, "message": message}}).encode()

    def route(self, method: str, path: str, params: dict[str, list[str]]) -> Answer:
        if method != "GET":
            return json_answer(405, {"error": {"httpCode": 405, "message": "method not allowed"}})
        if path == "/api/v3/traces":
            return self._find_traces(params)
        if path.startswith("/api/v3/traces/"):
            return self._traces_answer([path.rsplit("/", 1)[1]])
        if path == "/api/v3/services":
            return json_answer(200, {"services": sorted({s.service for s in self._spans})})
        if path == "/api/v3/operations":
            return self._operations(params)
        return json_answer(404, {"error": {"httpCode": 404, "message": "404 page not found"}})

    def _find_traces(self, params: dict[str, list[str]]) -> Answer:
        def get(*names: str) -> str | None:
            for name in names:
                if params.get(name):
                    return params[name][0]
            return None

        try:
            window = self._window(get)
            limit = int(get("query.num_traces", "query.search_depth", "query.searchDepth") or 100)
            wanted = json.loads(get("query.attributes") or "{}")
        except ValueError as exc:
            return self._error(400, f"malformed parameter: {exc}")
        service = get("query.service_name", "query.serviceName")
        if not service:
            return self._error(400, "service name must be specified")
        operation = get("query.operation_name", "query.operationName")
        newest: dict[str, int] = {}
        for s in self._snapshot():
            start = int(s.span.get("startTimeUnixNano") or 0)
            if (
                s.service == service
                and window[0] <= start < window[1]
                and operation in (None, s.span.get("name"))
                and all(_attribute_matches(s, k, str(v)) for k, v in wanted.items())
            ):
                newest[s.span["traceId"]] = max(newest.get(s.span["traceId"], 0), start)
        chosen = sorted(newest, key=lambda t: -newest[t])[:limit]
        if not chosen:
            return self._error(404, "No traces found")
        return self._traces_answer(chosen)

    def _operations(self, params: dict[str, list[str]]) -> Answer:
        service = (params.get("service") or [""])[0]
        kinds = ("internal", "internal", "server", "client", "producer", "consumer")
        found = {
            (s.span.get("name", ""), kinds[int(s.span.get("kind") or 0)])
            for s in self._snapshot()
            if s.service == service
        }
        operations = [{"name": name, "spanKind": kind} for name, kind in sorted(found)]
        return json_answer(200, {"operations": operations})

    def _window(self, get: Callable[..., str | None]) -> tuple[int, int]:
        bounds = []
        for canonical, legacy in (
            ("query.startTimeMin", "query.start_time_min"),
            ("query.startTimeMax", "query.start_time_max"),
        ):
            value = get(canonical, legacy)
            if value is None:
                raise ValueError(f"{canonical} is required")
            bounds.append(parse_rfc3339(value))
        return bounds[0], bounds[1]

    def _traces_answer(self, trace_ids: Sequence[str]) -> Answer:
        wanted = set(trace_ids)
        spans = [s for s in self._snapshot() if s.span.get("traceId") in wanted]
        if not spans:
            return self._error(404, "No traces found")
        merged: dict[tuple[int, int], JSONDict] = {}
        for s in spans:
            key = (id(s.resource), id(s.scope))
            entry = merged.setdefault(key, {"resource": s.resource, "scope": s.scope, "spans": []})
            entry["spans"].append(s.span)
        resource_spans = [
            {"resource": e["resource"], "scopeSpans": [{"scope": e["scope"], "spans": e["spans"]}]}
            for e in merged.values()
        ]
        return json_answer(200, {"result": {"resourceSpans": resource_spans}})

    def _snapshot(self) -> list[_Stored]:
        with self._lock:
            return list(self._spans)

    def _error(self, status: int, message: str) -> Answer:
        return status, self.error_body(status, message), {"Content-Type": "application/json"}


def _attribute_matches(stored: _Stored, key: str, value: str) -> bool:
    """Jaeger's tag match; ``error=true`` means the span's status is ERROR (the v2 stores)."""
    if key == "error" and value == "true":
        return int((stored.span.get("status") or {}).get("code") or 0) == 2
    return stored.attributes.get(key) == value


# Zipkin v2 ---------------------------------------------------------------------------------------


def _lower_names(span: JSONDict) -> JSONDict:
    """What Zipkin does on ingest: span and service names lower-cased."""
    span = dict(span)
    if isinstance(span.get("name"), str):
        span["name"] = span["name"].lower()
    for key in ("localEndpoint", "remoteEndpoint"):
        endpoint = span.get(key)
        if isinstance(endpoint, dict) and isinstance(endpoint.get("serviceName"), str):
            span[key] = {**endpoint, "serviceName": endpoint["serviceName"].lower()}
    return span


def _service(span: JSONDict) -> str:
    return str((span.get("localEndpoint") or {}).get("serviceName") or "")


class FakeZipkin(FakeTraceServer):
    """Zipkin's v2 query API (``/api/v2/traces``, ``/trace/{id}``, ``/services``, ``/spans``).

    Search follows the server: ``serviceName``, ``spanName``, ``annotationQuery`` (``key=value``
    tag terms and bare tag keys or annotation values, joined by `` and ``), ``endTs`` and
    ``lookback`` in ms (defaults now and one day), ``limit`` (default 10); whole traces, newest
    first. ``/api/v2/spans?serviceName=`` lists the service's span names. Bad numbers answer
    400 with a plain-text message, as the server does.
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[JSONDict] = []

    def __enter__(self) -> FakeZipkin:
        super().__enter__()
        return self

    def add_spans(self, spans: Iterable[JSONDict]) -> None:
        """Store v2 spans (a fixture file's list, or ``sdk_spans.zipkin_spans`` output)."""
        lowered = [_lower_names(span) for span in spans]
        with self._lock:
            self._spans += lowered

    def route(self, method: str, path: str, params: dict[str, list[str]]) -> Answer:
        if path == "/api/v2/traces":
            return self._find_traces(params)
        if path.startswith("/api/v2/trace/"):
            trace = self._trace(path.rsplit("/", 1)[1])
            return json_answer(200, trace) if trace else (404, b"", {})
        if path == "/api/v2/services":
            return json_answer(200, sorted({_service(s) for s in self._snapshot()}))
        if path == "/api/v2/spans":
            service = (params.get("serviceName") or [""])[0].lower()
            if not service:
                return 400, b"serviceName is required", {"Content-Type": "text/plain"}
            names = {str(s.get("name") or "") for s in self._snapshot() if _service(s) == service}
            return json_answer(200, sorted(names - {""}))
        return 404, b"Not Found", {"Content-Type": "text/plain"}

    def _find_traces(self, params: dict[str, list[str]]) -> Answer:
        get = {name: values[0] for name, values in params.items() if values}
        try:
            end_ms = int(get.get("endTs", "4102444800000"))
            lookback = int(get.get("lookback", "86400000"))
            limit = int(get.get("limit", "10"))
        except ValueError as exc:
            return 400, str(exc).encode(), {"Content-Type": "text/plain"}
        if end_ms <= 0 or lookback < 0 or limit <= 0:
            return 400, b"endTs, lookback and limit should be positive", {}
        low, high = (end_ms - lookback) * 1000, end_ms * 1000
        terms = [t for t in get.get("annotationQuery", "").split(" and ") if t]
        service, name = get.get("serviceName", "").lower(), get.get("spanName", "").lower()
        newest: dict[str, int] = {}
        for span in self._snapshot():
            stamp = int(span.get("timestamp") or 0)
            if (
                low <= stamp <= high
                and service in ("", _service(span))
                and name in ("", span.get("name"))
                and all(_term_matches(term, span) for term in terms)
            ):
                newest[span["traceId"]] = max(newest.get(span["traceId"], 0), stamp)
        chosen = sorted(newest, key=lambda t: -newest[t])[:limit]
        return json_answer(200, [self._trace(trace_id) for trace_id in chosen])

    def _trace(self, trace_id: str) -> list[JSONDict]:
        return [s for s in self._snapshot() if s.get("traceId") == trace_id]

    def _snapshot(self) -> list[JSONDict]:
        with self._lock:
            return list(self._spans)


def _term_matches(term: str, span: JSONDict) -> bool:
    tags = span.get("tags") or {}
    key, equals, value = term.partition("=")
    if equals:
        return bool(tags.get(key) == value)
    values = {a.get("value") for a in span.get("annotations") or []}
    return term in tags or term in values
