"""Grafana Tempo: TraceQL metrics for exact counts, a sample of whole traces for the rest.

Differs from the other backends in that it combines two sources. TraceQL metrics
(``/api/metrics/query_range``) give each span group's exact span and error counts over the
window, and approximate quantiles (power-of-two buckets) for the notes. The analysis also needs
per-span durations, exceptions, code locations, callers and N+1 repeats, which metrics cannot
give, so a sample of traces is found with TraceQL search (``/api/search``). The search itself
carries the spans: each query ends in ``select(...)`` of every attribute the analysis reads
(resource version, instance and environment; ``kind``, ``status``, ``span:parentID``; the
exception events' type and message; the span attributes of
:data:`feedbot.spans.semconv.READ_KEYS` and :data:`feedbot.spans.labels.LABEL_KEYS`) and asks
for ``spss`` spans per spanset, so one request brings up to ``limit`` traces' spans of the
version (:func:`spanset_rows`). A search for one operation or for errors is a spanset ``&&``
(``{ version } && { version && name = … }``), whose spanset is the union of both sides: every
span of the version in each trace found, as a whole-trace read would give. Only a trace whose
spanset lists fewer spans than it ``matched`` is read whole by id (``/api/v2/traces/<id>``,
falling back to ``/api/traces/<id>`` on Tempo < 2.6), at most ``max_traces`` of them; with
``select=False`` (Tempo before ``span:parentID``) every trace found is. Other services' spans
are not in the spansets: a span whose parent belongs to another service has a remote caller.
The sample is planned as for Jaeger
(:mod:`feedbot.backends.sampling`): the range where the version served, one search per span
name (tag values of ``name``) and slice, error traces by ``status = error``. Tempo's search
is not documented to answer newest first, so the sample's own counts are kept where metrics
do not replace them (DB and client groups), and its errors too: error traces add exception
types only. Label keys outside :data:`~feedbot.spans.labels.LABEL_KEYS` (``tenant``-like
words) are not selected, so contrasts see only the named ones.
Tempo's JSON quirks
(base64 ids, ``SPAN_KIND_*``/``STATUS_CODE_*`` enum names, 64-bit numbers as strings, omitted
zero values, the ``batches`` key, hex search ids without leading zeros) are handled here and in
:mod:`feedbot.spans.otlp_json`. Every value put into TraceQL goes through
:func:`escape_traceql`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx

from feedbot.backends.http import ANY_VERSION, JsonApi, RetryPolicy, count_census, split_window
from feedbot.backends.sampling import Probe, SearchBudget, note, sampled_collect, served
from feedbot.errors import BackendResponseError, WebhookRejected
from feedbot.spans.aggregate import to_ns
from feedbot.spans.labels import LABEL_KEYS
from feedbot.spans.model import ReleaseData, SpanGroupStats, SpanQuery
from feedbot.spans.otlp_json import decode_document, decode_json
from feedbot.spans.rows import SpanRow
from feedbot.spans.semconv import READ_KEYS, label, resource_key

#: Labels the metrics queries group by: the span group's parts and both environment names.
GROUP_BY = (
    "name",
    "kind",
    "span.http.route",
    "span.http.request.method",
    "span.http.method",
    "resource.deployment.environment.name",
    "resource.deployment.environment",
)
#: Labels of the census query: the version and both environment names.
CENSUS_BY = (
    "resource.service.version",
    "resource.deployment.environment.name",
    "resource.deployment.environment",
)
#: Traces searched to list the versions in a window (a sample when the window is busy).
VERSION_TRACES = 1000
#: Tempo's default ``query_frontend.metrics.max_duration``.
MAX_METRICS_WINDOW = timedelta(hours=24)
#: Spans are read from traces fetched with this margin around the window (long traces).
TRACE_MARGIN_S = 3600
MAX_TRACE_BYTES = 64 * 1024 * 1024
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

GroupKey = tuple[str, str]


def escape_traceql(value: str) -> str:
    """``value`` as a double-quoted TraceQL string literal.

    Backslashes, double quotes and control characters are escaped (TraceQL strings follow Go's
    escape rules), so no value can end the literal or the selector.
    """
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def selector(query: SpanQuery, *conditions: str) -> str:
    """The TraceQL spanset filter of ``query`` (service, version, span name) plus ``conditions``.

    The environment is not in it: spans without ``deployment.environment`` belong to every
    environment, which TraceQL cannot say portably; the sample and the metric series are
    filtered on it instead.
    """
    parts = [f"resource.service.name = {escape_traceql(query.service)}"]
    if query.version != ANY_VERSION:
        parts.append(f"resource.service.version = {escape_traceql(query.version)}")
    if query.span_name is not None:
        parts.append(f"name = {escape_traceql(query.span_name)}")
    return "{ " + " && ".join([*parts, *conditions]) + " }"


class TempoBackend:
    """Spans in Grafana Tempo (HTTP API on port 3200; ``X-Scope-OrgID`` set on the client).

    Args:
        http: a client whose ``base_url`` is Tempo's query frontend.
        ui_url: the team's trace UI, for links to example traces (kept for the report).
        budget: what one collect searches for (default :meth:`SearchBudget.from_policy`).
        budget_for: the budget of one service (its own detection policy), when it has one;
            ``budget`` for the others.
        max_traces: traces read whole by id per collect at most, one request each (those whose
            spanset was cut at ``spss``, or all with ``select=False``); also caps the search
            of :meth:`census` without metrics.
        slices: :meth:`census` without metrics searches its window in this many slices.
        spss: spans per spanset asked of search (100, Tempo's default most): a trace with
            more spans of the version than that is read whole by id.
        select: read the spans from the search's spansets (``select(...)``, Tempo ≥ 2.6 for
            ``span:parentID``); False reads every trace found by id, one request each.
        metrics: ask TraceQL metrics for exact counts (needs ``local-blocks`` on Tempo 2.x).
        retry: the retry policy (tests pass one that does not sleep).
        concurrency: trace reads in flight at once (8; 1 reads them one by one).
    """

    name = "tempo"

    def __init__(
        self,
        http: httpx.Client,
        *,
        ui_url: str | None = None,
        budget: SearchBudget | None = None,
        budget_for: Callable[[str], SearchBudget | None] | None = None,
        max_traces: int = 4000,
        slices: int = 4,
        spss: int = 100,
        select: bool = True,
        metrics: bool = True,
        retry: RetryPolicy | None = None,
        concurrency: int = 8,
    ) -> None:
        self.api = JsonApi(http, backend=self.name, retry=retry)
        self.ui_url = ui_url
        self.budget = budget or SearchBudget.from_policy()
        self.budget_for = budget_for
        self.max_traces, self.slices, self.spss = max(1, max_traces), max(1, slices), spss
        self.metrics, self.select = metrics, select
        self.concurrency = concurrency
        self._v1_traces = False

    def close(self) -> None:
        """Close the HTTP client it was given."""
        self.api.close()

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Counts from TraceQL metrics where Tempo has them; everything else from a sample."""
        before = self.api.requests
        reader = _Reader(self, query)
        data, figures = sampled_collect(
            reader.find,
            lambda: self.operations(query),
            query,
            self.budget_of(query.service),
            newest_first=False,
        )
        # Metrics take a day at most: past that, ask where the version served (unless traces
        # went unread, when that range may be short).
        over = query.end - query.start > MAX_METRICS_WINDOW
        counted = served(query, figures) if over and not reader.dropped else query
        counts, metric_notes = self.metric_counts(counted) if self.metrics else (None, [])
        if counts is not None:
            data = with_counts(data, counts)
        notes = [note(self.name, figures, self.api.requests - before, exact=_EXACT)]
        if reader.partial:
            notes.append(f"tempo: {reader.partial} of the sampled traces came back partial")
        if reader.truncated:
            notes.append(
                f"tempo: {reader.truncated} traces had more than {self.spss} spans of this "
                "version in a spanset and were read whole"
            )
        if reader.dropped:
            notes.append(f"tempo: {reader.dropped} traces found were not read (max_traces)")
        sampled = figures["sampled"] if figures.get("full") or reader.dropped else None
        return replace(data, sampled_traces=sampled, notes=(*data.notes, *notes, *metric_notes))

    def budget_of(self, service: str) -> SearchBudget:
        """What one collect of ``service`` may ask: its own budget, else the default."""
        own = self.budget_for(service) if self.budget_for is not None else None
        return own or self.budget

    def operations(self, query: SpanQuery) -> list[str]:
        """The service's span names in the window: tag values of ``name``.

        Raises:
            BackendUnavailable: Tempo did not answer (a refusal gives no names).
        """
        params: dict[str, str | int] = {
            "q": "{ resource.service.name = " + escape_traceql(query.service) + " }",
            "start": unix_seconds(query.start),
            "end": max(unix_seconds(query.end, ceil=True), unix_seconds(query.start) + 1),
        }
        try:
            document = self.api.get_json("/api/v2/search/tag/name/values", params)
        except BackendResponseError:
            return []
        values = document.get("tagValues") if isinstance(document, dict) else None
        return [
            str(v["value"])
            for v in values or []
            if isinstance(v, dict) and isinstance(v.get("value"), str) and v["value"]
        ]

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """Spans per ``service.version`` of ``service`` in ``[start, end)``: :meth:`census`
        summed over the environments that match (spans naming none match every one).

        Raises:
            BackendUnavailable: Tempo did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        counts: dict[str, int] = {}
        for (env, version), spans in self.census(service, start, end).items():
            if version is not None and (environment is None or env in (None, environment)):
                counts[version] = counts.get(version, 0) + spans
        return counts

    def census(
        self, service: str, start: datetime, end: datetime
    ) -> dict[tuple[str | None, str | None], int]:
        """Spans of ``service`` in ``[start, end)`` per (environment, version).

        Exact from one TraceQL metrics query (``count_over_time() by`` the version and both
        environment names); where metrics are off or the window is over 24 h, from the
        spansets of up to ``VERSION_TRACES`` traces found by search over the window
        (``select`` of the same three attributes, no trace read by id).

        Raises:
            BackendUnavailable: Tempo did not answer.
            BackendResponseError: the search answered with an error or a shape not understood.
        """
        query = SpanQuery(service, ANY_VERSION, start, end, None)
        if self.metrics and end - start <= MAX_METRICS_WINDOW:
            try:
                series = self.series(query, selector(query), "count_over_time()", CENSUS_BY)
            except BackendResponseError:
                pass  # no local-blocks: count a sample instead
            else:
                return census_of(series)
        return self.census_sample(query)

    def census_sample(self, query: SpanQuery) -> dict[tuple[str | None, str | None], int]:
        """:meth:`census` from the spansets of a search over the window (a sample if busy)."""
        windows = split_window(query.start, query.end, self.slices)
        per_slice = math.ceil(min(self.max_traces, VERSION_TRACES) / len(windows))
        rows: list[SpanRow] = []
        for start, end in windows:
            params: dict[str, str | int] = {
                "q": f"{selector(query)} | select({', '.join(RESOURCE_SELECT)})",
                "start": unix_seconds(start),
                "end": max(unix_seconds(end, ceil=True), unix_seconds(start) + 1),
                "limit": per_slice,
                "spss": self.spss,
            }
            document = self.api.get_json("/api/search", params)
            search_ids(document, self.api)  # the answer's shape
            found, _ = spanset_rows(document, query, self.api)
            rows += (row for trace in found.values() for row in trace)
        return count_census(rows, query)

    def traces(self, ids: list[str], query: SpanQuery) -> Iterator[tuple[list[SpanRow], bool]]:
        """:meth:`trace` of each id, in order, with up to ``concurrency`` requests in flight.

        The first trace is read alone: it tells whether this Tempo has the v2 endpoint, so the
        others don't each ask twice. The rest overlap their round trips; httpx's client is
        thread-safe, and the spans are aggregated afterwards in ``ids`` order, so the answer is
        the same as reading them one by one.
        """
        if not ids:
            return
        yield self.trace(ids[0], query)
        rest = ids[1:]
        if self.concurrency <= 1 or len(rest) <= 1:
            yield from (self.trace(trace_id, query) for trace_id in rest)
            return
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(rest))) as pool:
            yield from pool.map(lambda trace_id: self.trace(trace_id, query), rest)

    def trace(self, trace_id: str, query: SpanQuery) -> tuple[list[SpanRow], bool]:
        """The span rows of one trace and whether Tempo returned it complete (not PARTIAL).

        A trace that is gone by now (404) gives no rows.
        """
        params = {
            "start": unix_seconds(query.start) - TRACE_MARGIN_S,
            "end": unix_seconds(query.end, ceil=True) + TRACE_MARGIN_S,
        }
        document = None
        if not self._v1_traces:
            document = self.api.get_json(f"/api/v2/traces/{trace_id}", params, missing_ok=True)
        if document is None:
            # Tempo < 2.6 has no v2 endpoint: its 404 looks like "no such trace", so ask v1.
            document = self.api.get_json(f"/api/traces/{trace_id}", params, missing_ok=True)
            self._v1_traces = self._v1_traces or document is not None
        if document is None:
            return [], True
        return trace_rows(document, f"GET /api/v2/traces/{trace_id}"), is_complete(document)

    def metric_counts(self, query: SpanQuery) -> tuple[dict[GroupKey, list[int]] | None, list[str]]:
        """Exact (spans, errors) per group from TraceQL metrics, or None with the reason.

        Raises:
            BackendUnavailable: Tempo did not answer (a refusal only drops the metrics).
        """
        if query.end - query.start > MAX_METRICS_WINDOW:
            return None, ["tempo: window over 24 h; counts are from the sample"]
        try:
            totals = self.series(query, selector(query), "count_over_time()")
            errors = self.series(query, selector(query, "status = error"), "count_over_time()")
            quantiles = self.series(
                query, selector(query), "quantile_over_time(duration, .5, .95, .99)"
            )
        except BackendResponseError as exc:
            return None, [f"tempo: TraceQL metrics unavailable, counts are from the sample ({exc})"]
        counts = {key: [total, 0] for key, total in sum_series(totals, query).items()}
        for key, value in sum_series(errors, query).items():
            counts.setdefault(key, [0, 0])[1] = value
        notes = [f"tempo: span and error counts of {len(counts)} groups from TraceQL metrics"]
        return counts, notes + quantile_notes(quantiles, query, counts)

    def series(
        self, query: SpanQuery, spans: str, function: str, by: Iterable[str] = GROUP_BY
    ) -> list[dict[str, Any]]:
        """The series of ``spans | function by (by)`` over the window, one step."""
        seconds = max(1, math.ceil((query.end - query.start).total_seconds()))
        params: dict[str, str | int] = {
            "q": f"{spans} | {function} by ({', '.join(by)})",
            "start": to_ns(query.start),
            "end": to_ns(query.end),
            "step": f"{seconds}s",
        }
        document = self.api.get_json("/api/metrics/query_range", params)
        series = document.get("series", []) if isinstance(document, dict) else None
        if not isinstance(series, list):
            raise self.api.malformed("GET /api/metrics/query_range", "series", "expected a list")
        return [s for s in series if isinstance(s, dict)]


_EXACT = "DB and client span counts are the sample's; routed groups are exact (TraceQL metrics)"


class _Reader:
    """Runs one probe against Tempo: a TraceQL search whose spansets carry the spans' data.

    The query selects (``select(...)``) every attribute the analysis reads, and asks for up to
    ``spss`` spans per spanset, so each answer holds the version's spans of each trace found
    (:func:`spanset_rows`). Only a trace with more matching spans than ``spss`` (``matched``
    above the spans listed) is read whole by id, within ``max_traces``. With ``select`` off
    (Tempo before 2.6 lacks ``span:parentID``) every trace found is read by id.
    """

    def __init__(self, backend: TempoBackend, query: SpanQuery) -> None:
        self.backend, self.query = backend, query
        self.read: dict[str, list[SpanRow]] = {}
        self.partial = 0
        self.dropped = 0
        self.truncated = 0

    def find(self, probe: Probe) -> list[SpanRow]:
        backend = self.backend
        named = replace(self.query, span_name=probe.operation or self.query.span_name)
        errors = ["status = error"] if probe.errors else []
        params: dict[str, str | int] = {
            "q": search_query(self.query, named, errors, select=backend.select),
            "start": unix_seconds(probe.start),
            "end": max(unix_seconds(probe.end, ceil=True), unix_seconds(probe.start) + 1),
            "limit": probe.limit,
            "spss": backend.spss,
        }
        document = backend.api.get_json("/api/search", params)
        ids = search_ids(document, backend.api)
        listed: dict[str, list[SpanRow]] = {}
        if backend.select:
            listed, whole = spanset_rows(document, self.query, backend.api)
            wanted = [i for i in ids if i not in whole and i not in self.read]
            self.truncated += len(wanted)
        else:
            wanted = [i for i in ids if i not in self.read]
        room = max(0, backend.max_traces - len(self.read))
        self.dropped += max(0, len(wanted) - room)
        for trace_id, (rows, complete) in zip(
            wanted[:room], backend.traces(wanted[:room], self.query), strict=True
        ):
            self.read[trace_id] = rows
            self.partial += not complete
        return [row for i in ids for row in (self.read[i] if i in self.read else listed.get(i, []))]


#: What the search selects of each span: everything :mod:`feedbot.spans.aggregate` reads.
RESOURCE_SELECT = {
    "resource.service.name": "service.name",
    "resource.service.version": "service.version",
    "resource.service.instance.id": "service.instance.id",
    "resource.deployment.environment.name": "deployment.environment.name",
    "resource.deployment.environment": "deployment.environment",
}
INTRINSIC_SELECT = ("kind", "status", "span:parentID", "event:name")
EVENT_SELECT = {
    "event.exception.type": "exception.type",
    "event.exception.message": "exception.message",
}
SPAN_SELECT = tuple(sorted(READ_KEYS | LABEL_KEYS))
_KIND_NUMBERS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4}
_KIND_NUMBERS["consumer"] = 5


def selected() -> str:
    """The ``select(...)`` stage of every search: resource, intrinsic, event and span fields."""
    fields = [*RESOURCE_SELECT, *INTRINSIC_SELECT, *EVENT_SELECT]
    fields += [f"span.{key}" for key in SPAN_SELECT]
    return "select(" + ", ".join(fields) + ")"


def search_query(query: SpanQuery, named: SpanQuery, conditions: list[str], *, select: bool) -> str:
    """The TraceQL of one probe: the version's spans of the traces where ``named`` matches.

    ``{ version } && { version, name, status = error }`` is a spanset ``&&``: traces with a
    span matching each side, and the union of both sides' spans, so that a search for one
    operation or for errors still lists every span of the version in each trace found.
    """
    spans = selector(query)
    if named.span_name != query.span_name or conditions:
        spans = f"({spans} && {selector(named, *conditions)})"
    return f"{spans} | {selected()}" if select else spans


def spanset_rows(
    document: Any, query: SpanQuery, api: JsonApi
) -> tuple[dict[str, list[SpanRow]], set[str]]:
    """Span rows per trace id from a search answer's spansets, and the ids listed whole.

    A trace is listed whole when every spanset lists all its ``matched`` spans. Selected
    attributes come keyed as Tempo's engine keys them: the bare name of a scoped attribute
    (``service.version``, ``http.route``, ``exception.type``), the intrinsic's own name
    (``status``, ``kind``, ``span:parentID``, ``event:name``).

    Raises:
        BackendResponseError: a spanset's span is not the shape Tempo sends, naming the field.
    """
    rows: dict[str, list[SpanRow]] = {}
    whole: set[str] = set()
    where = "GET /api/search"
    for i, trace in enumerate(document.get("traces") or []):
        trace_id = str(trace["traceID"]).lower().rjust(32, "0")
        spans: dict[str, dict[str, Any]] = {}
        complete = True
        sets = trace.get("spanSets") or ([trace["spanSet"]] if trace.get("spanSet") else [])
        if not isinstance(sets, list):
            raise api.malformed(where, f"traces[{i}].spanSets", "expected a list")
        for j, spanset in enumerate(sets):
            listed = spanset.get("spans") if isinstance(spanset, dict) else None
            if not isinstance(listed, list):
                raise api.malformed(where, f"traces[{i}].spanSets[{j}].spans", "expected a list")
            matched = spanset.get("matched", len(listed))
            complete &= isinstance(matched, int) and matched <= len(listed)
            for k, span in enumerate(listed):
                path = f"traces[{i}].spanSets[{j}].spans[{k}]"
                otlp = _otlp_span(span, trace_id, path, api)
                spans[otlp["scopeSpans"][0]["spans"][0]["spanId"]] = otlp
        try:
            found = decode_document({"resourceSpans": list(spans.values())})
        except WebhookRejected as exc:
            raise api.malformed(where, f"traces[{i}]", exc.message) from None
        rows[trace_id] = [r for r in found if r["service"] == query.service]
        if complete:
            whole.add(trace_id)
    return rows, whole


def _otlp_span(span: Any, trace_id: str, path: str, api: JsonApi) -> dict[str, Any]:
    """One listed span as an OTLP/JSON ``resourceSpans`` entry of one span."""
    where = "GET /api/search"
    if not isinstance(span, dict) or not isinstance(span.get("spanID"), str):
        raise api.malformed(where, f"{path}.spanID", "expected hex")
    resource: list[dict[str, Any]] = []
    attributes: list[dict[str, Any]] = []
    names: list[str] = []
    exceptions: dict[str, list[Any]] = {key: [] for key in EVENT_SELECT.values()}
    kind, status, parent = 0, 0, ""
    resource_keys = set(RESOURCE_SELECT.values())
    for item in span.get("attributes") or []:
        key, value = (item.get("key"), item.get("value")) if isinstance(item, dict) else (0, 0)
        if not isinstance(key, str) or not isinstance(value, dict):
            raise api.malformed(where, f"{path}.attributes", "expected key/value objects")
        plain = value.get("stringValue")
        if key == "kind":
            kind = _KIND_NUMBERS.get(str(plain), 0)
        elif key == "status":
            status = 2 if plain == "error" else 1 if plain == "ok" else 0
        elif key == "span:parentID":
            parent = str(plain or "").rjust(16, "0") if plain else ""
        elif key == "event:name":
            names.append(str(plain))
        elif key in exceptions:
            exceptions[key].append(value)
        elif key in resource_keys:
            resource.append(item)
        else:
            attributes.append(item)
    events, taken = [], 0
    for name in names:
        event: dict[str, Any] = {"name": name, "timeUnixNano": span.get("startTimeUnixNano", "0")}
        if name == "exception" or name.endswith(".exception"):
            event["attributes"] = [
                {"key": key, "value": values[taken]}
                for key, values in exceptions.items()
                if taken < len(values)
            ]
            taken += 1
        events.append(event)
    try:  # jsonpb: 64-bit numbers as strings, zero values left out
        start = int(span.get("startTimeUnixNano") or 0)
        duration = int(span.get("durationNanos") or 0)
    except (TypeError, ValueError):
        raise api.malformed(where, f"{path}.startTimeUnixNano", "expected integers") from None
    otlp_span = {
        "traceId": trace_id,
        "spanId": span["spanID"].lower().rjust(16, "0"),
        "parentSpanId": parent,
        "name": span.get("name") or "",
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration),
        "status": {"code": status},
        "attributes": attributes,
        "events": events,
    }
    return {"resource": {"attributes": resource}, "scopeSpans": [{"spans": [otlp_span]}]}


def unix_seconds(moment: datetime, *, ceil: bool = False) -> int:
    """Whole Unix seconds (what Tempo's search and trace-by-id accept), floored or ceiled."""
    ns = to_ns(moment)
    return -(-ns // 10**9) if ceil else ns // 10**9


def search_ids(document: Any, api: JsonApi) -> list[str]:
    """Trace ids of a ``SearchResponse``, left-padded to 32 hex characters.

    Raises:
        BackendResponseError: the answer is not a search response.
    """
    traces = document.get("traces", []) if isinstance(document, dict) else None
    if not isinstance(traces, list):
        raise api.malformed("GET /api/search", "traces", "expected a list")
    ids = []
    for i, trace in enumerate(traces):
        trace_id = trace.get("traceID") if isinstance(trace, dict) else None
        if not isinstance(trace_id, str) or not 0 < len(trace_id) <= 32:
            raise api.malformed("GET /api/search", f"traces[{i}].traceID", "expected hex")
        try:
            int(trace_id, 16)
        except ValueError:
            raise api.malformed("GET /api/search", f"traces[{i}].traceID", "expected hex") from None
        ids.append(trace_id.lower().rjust(32, "0"))
    return ids


def trace_rows(document: Any, where: str = "trace") -> list[SpanRow]:
    """Span rows of a trace-by-id answer: v2 ``{"trace": {...}}``, v1 ``{"batches": [...]}``.

    Raises:
        BackendResponseError: the answer is not a trace, naming the field.
    """
    trace = document.get("trace", document) if isinstance(document, dict) else None
    if isinstance(trace, dict) and "batches" in trace:
        trace = {"resourceSpans": trace["batches"]}
    if not isinstance(trace, dict):
        raise BackendResponseError(f"tempo: {where}: expected a trace object")
    try:
        return decode_json(json.dumps(trace))
    except WebhookRejected as exc:
        raise BackendResponseError(f"tempo: {where}: {exc.message}") from None


def is_complete(document: Any) -> bool:
    """False when Tempo says the trace is partial (``"status": "PARTIAL"``, e.g. size limit)."""
    return not (isinstance(document, dict) and document.get("status") == "PARTIAL")


def labels_of(series: dict[str, Any]) -> dict[str, Any]:
    """A series' labels as plain values; absent and ``nil`` labels are left out."""
    out: dict[str, Any] = {}
    for item in series.get("labels") or []:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            continue
        value = next(iter(item["value"].values()), None)
        if value is not None and value != "nil":
            out[str(item.get("key"))] = value
    return out


def group_of(labels: dict[str, Any], query: SpanQuery) -> GroupKey | None:
    """The (group label, kind) of a metrics series, or None if its environment is another.

    None too for CLIENT spans and SERVER spans without ``http.route``: feedbot groups those by
    their DB statement or templated URL (:mod:`feedbot.spans.resources`), which TraceQL metrics
    cannot group by, so their counts come from the sampled traces.
    """
    environment = labels.get("resource.deployment.environment.name") or labels.get(
        "resource.deployment.environment"
    )
    if query.environment is not None and environment not in (None, "", query.environment):
        return None
    kind = str(labels.get("kind", labels.get("span:kind", "internal"))).upper()
    kind = kind.removeprefix("SPAN_KIND_")
    kind = kind if kind in ("SERVER", "CLIENT", "PRODUCER", "CONSUMER") else "INTERNAL"
    method = labels.get("span.http.request.method") or labels.get("span.http.method")
    route = labels.get("span.http.route")
    if kind == "CLIENT" or (kind == "SERVER" and not route):
        return None
    name = str(labels.get("name", labels.get("span:name", "")))
    raw = (name, kind, str(method).upper() if method else None, route and str(route))
    # An ASGI event span of a raw path ("GET /covers/8f3a….jpg http send") is named by its
    # templated path, as the sampled traces' groups are: one group, not one per id.
    return label(*raw, resource_key(raw, {}, None)), kind


def census_of(series: Iterable[dict[str, Any]]) -> dict[tuple[str | None, str | None], int]:
    """Spans per (environment, version) from ``count_over_time() by (CENSUS_BY)`` series.

    A label Tempo leaves out (or sets to ``nil``) is a span without that attribute: None.
    """
    counts: dict[tuple[str | None, str | None], int] = {}
    for one in series:
        labels = labels_of(one)
        env = labels.get("resource.deployment.environment.name") or labels.get(
            "resource.deployment.environment"
        )
        version = labels.get("resource.service.version")
        key = (str(env) if env else None, str(version) if version else None)
        total = round(_samples_total(one))
        if total:
            counts[key] = counts.get(key, 0) + total
    return counts


def _samples_total(series: dict[str, Any]) -> float:
    total = 0.0
    for sample in series.get("samples") or []:
        # jsonpb leaves out a zero value.
        value = sample.get("value", 0) if isinstance(sample, dict) else 0
        total += float(value) if isinstance(value, int | float | str) else 0.0
    return total


def sum_series(series: Iterable[dict[str, Any]], query: SpanQuery) -> dict[GroupKey, int]:
    """Span counts per group from ``count_over_time`` series (summed over steps and envs)."""
    totals: dict[GroupKey, int] = {}
    for one in series:
        key = group_of(labels_of(one), query)
        if key is not None:
            totals[key] = totals.get(key, 0) + round(_samples_total(one))
    return {key: value for key, value in totals.items() if value}


def quantile_notes(
    series: Iterable[dict[str, Any]], query: SpanQuery, counts: dict[GroupKey, list[int]]
) -> list[str]:
    """One note with TraceQL p50/p95/p99 (seconds → ms) of the five largest groups."""
    found: dict[GroupKey, dict[float, float]] = {}
    for one in series:
        labels = labels_of(one)
        key = group_of(labels, query)
        values = [s.get("value", 0) for s in one.get("samples") or [] if isinstance(s, dict)]
        if key is not None and "p" in labels and values:
            found.setdefault(key, {})[float(labels["p"])] = float(values[-1]) * 1000
    largest = sorted(found, key=lambda k: -counts.get(k, [0])[0])[:5]
    parts = [
        f"{name} ({kind}) "
        + "/".join(f"{found[(name, kind)].get(p, math.nan):.1f}" for p in (0.5, 0.95, 0.99))
        for name, kind in largest
    ]
    if not parts:
        return []
    return ["tempo: TraceQL p50/p95/p99 ms (log2 buckets, approximate): " + "; ".join(parts)]


def with_counts(data: ReleaseData, counts: dict[GroupKey, list[int]]) -> ReleaseData:
    """``data`` with each group's count and errors replaced by the exact metric counts.

    Groups the metrics saw but the sample did not are added without durations.
    """
    groups = []
    seen = set()
    for group in data.groups:
        key = (group.name, group.kind)
        seen.add(key)
        if key in counts:
            group = replace(group, count=counts[key][0], errors=counts[key][1])
        groups.append(group)
    for (name, kind), (count, errors) in counts.items():
        if (name, kind) not in seen:
            groups.append(SpanGroupStats(name=name, kind=kind, count=count, errors=errors))
    groups.sort(key=lambda s: (-s.count, s.name, s.kind))
    return replace(data, groups=groups)
