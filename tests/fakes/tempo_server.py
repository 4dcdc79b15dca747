"""A loopback Grafana Tempo following its documented HTTP API, with failures on demand.

Serves traces given as ``ExportTraceServiceRequest`` messages (SDK spans, or the OTLP fixtures)
in Tempo's own JSON: gogo jsonpb, so base64 ids, ``SPAN_KIND_*``/``STATUS_CODE_*`` enum names,
64-bit integers as strings and zero values left out (protobuf's ``MessageToDict`` does exactly
that). Endpoints: ``/api/search`` (a TraceQL spanset filter or a spanset ``&&`` of two, whose
spanset is the union of both sides' spans, optionally ``| select(...)``; unix-second
``start``/``end``, ``limit`` traces, ``spss`` spans listed per spanset (at most 100, Tempo's
default ``max_spans_per_span_set``) beside ``matched``; each listed span with the attributes the
query names, keyed as Tempo's engine keys them; trace ids in hex with leading zeros stripped),
``/api/v2/traces/<id>`` (``{"trace": ...}``), ``/api/traces/<id>`` (``{"batches": [...]}``),
``/api/v2/search/tag/name/values`` (span names for a selector), and
``/api/metrics/query_range`` (``count_over_time()`` and ``quantile_over_time(duration, ...)``
``by (...)``, values in seconds). The TraceQL understood is the subset the backend sends; any
other text is answered 400 like a parse error, so a badly escaped literal fails loudly.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

_COND = re.compile(r'\s*([\w.:]+)\s*=\s*("(?:[^"\\\n]|\\.)*"|error)\s*')
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)")
_PIPELINE = re.compile(
    r"\s*\|\s*(count_over_time\(\)|quantile_over_time\(duration((?:,\s*[\d.]+)+)\))"
    r"(?:\s+by\s*\(([^)]*)\))?\s*$"
)
#: Tempo's default ``max_spans_per_span_set``: a larger ``spss`` is refused.
MAX_SPSS = 100
KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")


@dataclass
class Failure:
    """An answer given instead of the real one, ``times`` times, to paths starting ``prefix``."""

    prefix: str
    status: int = 500
    body: bytes = b'{"message": "injected"}'
    times: int = 1
    delay: float = 0.0


def _literal(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        simple = {"n": "\n", "r": "\r", "t": "\t"}
        return chr(int(code[1:], 16)) if code[0] == "x" else simple.get(code, code)

    return _ESCAPE.sub(one, text[1:-1])


def parse_selector(text: str) -> list[tuple[str, str]]:
    """``{ a = "x" && status = error }`` → [("a", "x"), ("status", "error")].

    Raises:
        ValueError: anything outside that grammar (Tempo answers 400).
    """
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"parse error: {text!r}")
    conditions = []
    for part in _split_and(text[1:-1]):
        match = _COND.fullmatch(part)
        if match is None:
            raise ValueError(f"parse error at {part!r}")
        key, value = match.groups()
        conditions.append((key, value if value == "error" else _literal(value)))
    return conditions


_SELECT = re.compile(r"\|\s*select\(([^()]*)\)\s*$")
_SELECTED = re.compile(r"(?:resource|span|event)?\.[\w.]+|span:parentID|event:name|[a-z]+")


def parse_search(text: str) -> tuple[list[list[tuple[str, str]]], list[str]]:
    """A search query: ``{ … }`` or ``({ … } && { … })``, optionally ``| select(a, b)``.

    Returns:
        The conditions of each spanset filter, and the selected attributes.

    Raises:
        ValueError: anything outside that grammar (Tempo answers 400).
    """
    text = text.strip()
    selected: list[str] = []
    pipe = _SELECT.search(text)
    if pipe is not None:
        selected = [part.strip() for part in pipe.group(1).split(",") if part.strip()]
        if not all(_SELECTED.fullmatch(part) for part in selected):
            raise ValueError(f"parse error in select: {pipe.group(1)!r}")
        text = text[: pipe.start()].strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    sides = []
    for side in _split_spansets(text):
        sides.append(parse_selector(side))
    return sides, selected


def _split_spansets(text: str) -> list[str]:
    """``{ a } && { b }`` → ["{ a }", "{ b }"] (``&&`` between braces, outside literals)."""
    parts, depth, quoted, current, i = [], 0, False, "", 0
    while i < len(text):
        char = text[i]
        if quoted and char == "\\":
            current += text[i : i + 2]
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "{":
            depth += 1
        elif not quoted and char == "}":
            depth -= 1
        if not quoted and depth == 0 and text.startswith("&&", i):
            parts.append(current.strip())
            current, i = "", i + 2
            continue
        current += char
        i += 1
    return [*parts, current.strip()]


def _split_and(body: str) -> list[str]:
    """Split on ``&&`` outside string literals."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(body):
        char = body[i]
        if quoted and char == "\\":
            current += body[i : i + 2]
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        if not quoted and body.startswith("&&", i):
            parts.append(current)
            current, i = "", i + 2
            continue
        current += char
        i += 1
    if quoted:
        raise ValueError("parse error: unterminated string")
    return [*parts, current]


class TempoServer:
    """Tempo's query API on 127.0.0.1:<free port> over the traces given; a context manager.

    Args:
        requests: the traces to serve.
        v2: serve ``/api/v2/traces`` (Tempo ≥ 2.6); False answers it 404 like older versions.
        metrics: serve TraceQL metrics; False answers 400 as Tempo 2.x without local-blocks.
        latency: seconds every answer waits, as a remote Tempo's round trip (benchmarks).
    """

    def __init__(
        self,
        requests: Iterable[ExportTraceServiceRequest],
        *,
        v2: bool = True,
        metrics: bool = True,
        latency: float = 0.0,
    ) -> None:
        self.latency = latency
        self.spans: list[tuple[ResourceSpans, Any]] = []
        for request in requests:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((resource_spans, span) for span in scope_spans.spans)
        self.by_trace: dict[bytes, list[tuple[ResourceSpans, Any]]] = {}
        for resource, span in self.spans:
            self.by_trace.setdefault(span.trace_id, []).append((resource, span))
        self.v2, self.metrics = v2, metrics
        self.failures: list[Failure] = []
        self.log: list[tuple[str, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> TempoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def fail(self, prefix: str, status: int = 500, **kwargs: Any) -> None:
        """Answer the next request(s) under ``prefix`` with a failure (see :class:`Failure`)."""
        self.failures.append(Failure(prefix, status, **kwargs))

    # Routing ------------------------------------------------------------------------------------

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        self.log.append((path, params))
        if self.latency:
            time.sleep(self.latency)
        for failure in self.failures:
            if path.startswith(failure.prefix) and failure.times > 0:
                failure.times -= 1
                time.sleep(failure.delay)
                return failure.status, failure.body
        try:
            status, document = self._route(path, params)
        except ValueError as exc:
            return 400, str(exc).encode()
        return status, json.dumps(document).encode()

    def _route(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path == "/api/search":
            return 200, self.search(params)
        if path == "/api/v2/search/tag/name/values":
            return 200, self.names(params)
        if path == "/api/metrics/query_range":
            if not self.metrics:
                return 400, {"message": "localblocks processor not found"}
            return 200, self.query_range(params)
        for prefix, wrap in (("/api/v2/traces/", "trace"), ("/api/traces/", "batches")):
            if path.startswith(prefix) and (wrap == "batches" or self.v2):
                trace = self.trace(path.removeprefix(prefix))
                if trace is None:
                    return 404, {"message": "trace not found"}
                return 200, {"trace": {"resourceSpans": trace}} if wrap == "trace" else {
                    "batches": trace
                }
        return 404, {"message": "404 page not found"}

    # Matching -----------------------------------------------------------------------------------

    def _attribute(self, resource: ResourceSpans, span: Any, key: str) -> Any:
        if key in ("name", "span:name"):
            return span.name
        if key in ("kind", "span:kind"):
            return KINDS[span.kind]
        if key in ("status", "span:status"):
            return ("unset", "ok", "error")[span.status.code]
        scope, _, name = key.partition(".")
        source = resource.resource.attributes if scope == "resource" else span.attributes
        for kv in source:
            if kv.key == name:
                value = json_format.MessageToDict(kv.value)
                return next(iter(value.values()), None)
        return None

    def _matching(self, conditions: list[tuple[str, str]], start_ns: int, end_ns: int) -> Any:
        for resource, span in self.spans:
            if not start_ns <= span.start_time_unix_nano < end_ns:
                continue
            if all(str(self._attribute(resource, span, k)) == v for k, v in conditions):
                yield resource, span

    def search(self, params: dict[str, str]) -> dict[str, Any]:
        """``/api/search`` as Tempo answers a TraceQL query (see :func:`parse_search`).

        Traces in store order, at most ``limit``; per trace one spanset of the matching spans
        (the union of both sides of a spanset ``&&``), at most ``spss`` of them listed, with
        ``matched`` the full count. Each listed span carries ``spanID``, ``name``,
        ``startTimeUnixNano``, ``durationNanos`` and, as ``attributes``, the attributes the
        query names (filter and ``select``), keyed the way Tempo's engine keys them: the bare
        name for scoped attributes (``service.version``, ``http.route``, ``exception.type``),
        the intrinsic's name otherwise (``status``, ``kind``, ``span:parentID``,
        ``event:name``); one entry per event for event attributes.
        """
        start, end = (_seconds(params, key) for key in ("start", "end"))
        limit = int(params.get("limit", "20"))
        if limit <= 0:
            raise ValueError("invalid limit: must be a positive number")
        spss = int(params.get("spss", "3"))
        if not 0 < spss <= MAX_SPSS:
            raise ValueError(f"invalid spss: must be between 1 and {MAX_SPSS}")
        sides, selected = parse_search(params["q"])
        low, high = start * 10**9, end * 10**9
        found: dict[bytes, list[list[tuple[ResourceSpans, Any]]]] = {}
        for index, conditions in enumerate(sides):
            for resource, span in self._matching(conditions, low, high):
                per_side = found.setdefault(span.trace_id, [[] for _ in sides])
                per_side[index].append((resource, span))
        keys = [k for conditions in sides for k, _ in conditions] + selected
        traces = []
        for trace_id, per_side in found.items():
            if not all(per_side):
                continue
            union = list({id(span): (r, span) for side in per_side for r, span in side}.values())
            union.sort(key=lambda pair: pair[1].start_time_unix_nano)
            traces.append(
                {
                    "traceID": trace_id.hex().lstrip("0"),
                    "rootServiceName": "<root span not yet received>",
                    "startTimeUnixNano": str(min(s.start_time_unix_nano for _, s in union)),
                    "spanSets": [
                        {
                            "spans": [self._listed(r, s, keys) for r, s in union[:spss]],
                            "matched": len(union),
                        }
                    ],
                }
            )
            if len(traces) >= limit:
                break
        return {"traces": traces, "metrics": {"inspectedTraces": len(found)}}

    def _listed(self, resource: ResourceSpans, span: Any, keys: list[str]) -> dict[str, Any]:
        """One span of a spanset as Tempo lists it (jsonpb: zero values left out)."""
        listed: dict[str, Any] = {
            "spanID": span.span_id.hex(),
            "name": span.name,
            "startTimeUnixNano": str(span.start_time_unix_nano),
        }
        duration = span.end_time_unix_nano - span.start_time_unix_nano
        if duration:
            listed["durationNanos"] = str(duration)
        attributes: list[dict[str, Any]] = []
        for key in dict.fromkeys(keys):
            for name, value in self._returned(resource, span, key):
                attributes.append({"key": name, "value": value})
        if attributes:
            listed["attributes"] = attributes
        return listed

    def _returned(self, resource: ResourceSpans, span: Any, key: str) -> list[tuple[str, Any]]:
        """(key, AnyValue) pairs Tempo puts in a listed span's attributes for ``key``."""
        if key in ("name", "span:name", "duration", "span:duration", "span:id", "trace:id"):
            return []  # fields of their own, or left out by Tempo
        if key in ("status", "span:status", "kind", "span:kind"):
            name = key.removeprefix("span:")
            return [(name, {"stringValue": str(self._attribute(resource, span, key))})]
        if key == "span:parentID":
            return (
                [(key, {"stringValue": span.parent_span_id.hex()})] if span.parent_span_id else []
            )
        if key == "event:name":
            return [(key, {"stringValue": event.name}) for event in span.events]
        scope, _, name = key.partition(".")
        if scope == "event":
            return [
                (name, json_format.MessageToDict(kv.value))
                for event in span.events
                for kv in event.attributes
                if kv.key == name
            ]
        sources = {"resource": [resource.resource.attributes], "span": [span.attributes]}
        for source in sources.get(scope, [span.attributes, resource.resource.attributes]):
            for kv in source:
                if kv.key == name:
                    return [(name, json_format.MessageToDict(kv.value))]
        return []

    def names(self, params: dict[str, str]) -> dict[str, Any]:
        """Tag values of the intrinsic ``name`` for a ``q`` selector, in ``[start, end]``."""
        start, end = (_seconds(params, key) for key in ("start", "end"))
        conditions = parse_selector(params.get("q", "{}")) if params.get("q") else []
        found = {span.name for _, span in self._matching(conditions, start * 10**9, end * 10**9)}
        return {"tagValues": [{"type": "string", "value": name} for name in sorted(found)]}

    def trace(self, hex_id: str) -> list[dict[str, Any]] | None:
        wanted = bytes.fromhex(hex_id.rjust(32, "0"))
        batches: dict[int, ResourceSpans] = {}
        for resource, span in self.by_trace.get(wanted, []):
            batch = batches.get(id(resource))
            if batch is None:
                batch = batches[id(resource)] = ResourceSpans(resource=resource.resource)
                batch.scope_spans.add()
            batch.scope_spans[0].spans.append(span)
        if not batches:
            return None
        return [json_format.MessageToDict(batch) for batch in batches.values()]

    def query_range(self, params: dict[str, str]) -> dict[str, Any]:
        query = params.get("q") or params.get("query") or ""
        brace = query.rfind("}") + 1
        pipeline = _PIPELINE.fullmatch(query[brace:])
        if pipeline is None:
            raise ValueError(f"parse error in pipeline {query[brace:]!r}")
        conditions = parse_selector(query[:brace])
        keys = [k.strip() for k in (pipeline.group(3) or "").split(",") if k.strip()]
        start, end = int(params["start"]), int(params["end"])
        groups: dict[tuple[Any, ...], list[float]] = {}
        for resource, span in self._matching(conditions, start, end):
            key = tuple(self._attribute(resource, span, k) for k in keys)
            duration = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
            groups.setdefault(key, []).append(duration)
        quantiles = pipeline.group(2)
        series = []
        for key, durations in groups.items():
            labels = [
                {"key": k, "value": {"stringValue": str(v)}}
                for k, v in zip(keys, key, strict=True)
                if v is not None
            ]
            if quantiles is None:
                series.append(_series(labels, len(durations), end))
                continue
            for q in (float(p) for p in quantiles.strip(", ").split(",")):
                value = float(np.quantile(durations, q))
                series.append(
                    _series([*labels, {"key": "p", "value": {"doubleValue": q}}], value, end)
                )
        return {"series": series, "metrics": {"completedJobs": 1, "totalJobs": 1}}


def _seconds(params: dict[str, str], key: str) -> int:
    value = params.get(key, "")
    if not value.isdigit() or len(value) > 10:
        raise ValueError(f"invalid {key}: unix seconds expected")
    return int(value)


def _series(labels: list[dict[str, Any]], value: float, end_ns: int) -> dict[str, Any]:
    sample: dict[str, Any] = {"timestampMs": str(end_ns // 10**6)}
    if value:
        sample["value"] = value
    # A leading empty step, as Tempo's step alignment gives: its zero value is left out.
    return {"labels": labels, "samples": [{"timestampMs": "0"}, sample]}


def _handler(server: TempoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body = server.answer(parts.path, dict(parse_qsl(parts.query)))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
