"""Grafana Tempo: TraceQL metrics for exact counts, a sample of whole traces for the rest.

Differs from the other backends in that it combines two sources. TraceQL metrics
(``/api/metrics/query_range``) give each span group's exact span and error counts over the
window, and approximate quantiles (power-of-two buckets) for the notes. The analysis also needs
per-span durations, exceptions, code locations, callers and N+1 repeats, which metrics cannot
give, so a sample of traces is found with TraceQL search (``/api/search``) and read whole by id
(``/api/v2/traces/<id>``, falling back to ``/api/traces/<id>`` on Tempo < 2.6); their spans go
through :mod:`feedbot.spans.aggregate`. The sample is planned as for Jaeger
(:mod:`feedbot.backends.sampling`): the range where the version served, one search per span
name (tag values of ``name``) and slice, error traces by ``status = error``. Tempo's search
is not documented to answer newest first, so the sample's own counts are kept where metrics
do not replace them (DB and client groups), and its errors too: error traces add exception
types only. Each trace read is one more request: at most ``max_traces`` are read.
Tempo's JSON quirks
(base64 ids, ``SPAN_KIND_*``/``STATUS_CODE_*`` enum names, 64-bit numbers as strings, omitted
zero values, the ``batches`` key, hex search ids without leading zeros) are handled here and in
:mod:`feedbot.spans.otlp_json`. Every value put into TraceQL goes through
:func:`escape_traceql`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx

from feedbot.backends.http import ANY_VERSION, JsonApi, RetryPolicy, count_versions, split_window
from feedbot.backends.sampling import Probe, SearchBudget, note, sampled_collect
from feedbot.errors import BackendResponseError, WebhookRejected
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import ReleaseData, SpanGroupStats, SpanQuery
from feedbot.spans.otlp_json import decode_json
from feedbot.spans.rows import SpanRow
from feedbot.spans.semconv import label

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
#: Traces read to list the versions in a window (a sample when the window is busy).
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
        max_traces: traces read whole per collect at most, one request each (4,000: the
            default budget's ~500 per operation for 8 operations); also :meth:`versions`' sample.
        slices: :meth:`versions` searches its window in this many slices.
        spss: spans per spanset asked of search (only trace ids are used).
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
        max_traces: int = 4000,
        slices: int = 4,
        spss: int = 3,
        metrics: bool = True,
        retry: RetryPolicy | None = None,
        concurrency: int = 8,
    ) -> None:
        self.api = JsonApi(http, backend=self.name, retry=retry)
        self.ui_url = ui_url
        self.budget = budget or SearchBudget.from_policy()
        self.max_traces, self.slices, self.spss = max(1, max_traces), max(1, slices), spss
        self.metrics = metrics
        self.concurrency = concurrency
        self._v1_traces = False

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Counts from TraceQL metrics where Tempo has them; everything else from a sample."""
        before = self.api.requests
        reader = _Reader(self, query)
        data, figures = sampled_collect(
            reader.find, lambda: self.operations(query), query, self.budget, newest_first=False
        )
        counts, metric_notes = self.metric_counts(query) if self.metrics else (None, [])
        if counts is not None:
            data = with_counts(data, counts)
        notes = [note(self.name, figures, self.api.requests - before, exact=_EXACT)]
        if reader.partial:
            notes.append(f"tempo: {reader.partial} of the sampled traces came back partial")
        if reader.dropped:
            notes.append(f"tempo: {reader.dropped} traces found were not read (max_traces)")
        sampled = figures["sampled"] if figures.get("full") or reader.dropped else None
        return replace(data, sampled_traces=sampled, notes=(*data.notes, *notes, *metric_notes))

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
        """Spans per ``service.version`` of ``service`` in ``[start, end)``, from a sample of
        up to ``VERSION_TRACES`` traces of the service (any version) searched over the window.

        Raises:
            BackendUnavailable: Tempo did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        query = SpanQuery(service, ANY_VERSION, start, end, environment)
        ids = self.search(query, min(self.max_traces, VERSION_TRACES))
        return count_versions((row for rows, _ in self.traces(ids, query) for row in rows), query)

    def search(self, query: SpanQuery, limit: int) -> list[str]:
        """Ids (32 hex) of up to ``limit`` traces with a matching span, over the window."""
        windows = split_window(query.start, query.end, self.slices)
        per_slice = math.ceil(limit / len(windows))
        ids: dict[str, None] = {}
        for start, end in windows:
            params: dict[str, str | int] = {
                "q": selector(query),
                "start": unix_seconds(start),
                "end": max(unix_seconds(end, ceil=True), unix_seconds(start) + 1),
                "limit": per_slice,
                "spss": self.spss,
            }
            document = self.api.get_json("/api/search", params)
            for trace_id in search_ids(document, self.api):
                ids.setdefault(trace_id, None)
        return list(ids)[:limit]

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

    def series(self, query: SpanQuery, spans: str, function: str) -> list[dict[str, Any]]:
        """The series of ``spans | function by (GROUP_BY)`` over the window, one step."""
        seconds = max(1, math.ceil((query.end - query.start).total_seconds()))
        params: dict[str, str | int] = {
            "q": f"{spans} | {function} by ({', '.join(GROUP_BY)})",
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
    """Runs one probe against Tempo: a TraceQL search, then each new trace read by id."""

    def __init__(self, backend: TempoBackend, query: SpanQuery) -> None:
        self.backend, self.query = backend, query
        self.read: dict[str, list[SpanRow]] = {}
        self.partial = 0
        self.dropped = 0

    def find(self, probe: Probe) -> list[SpanRow]:
        named = replace(self.query, span_name=probe.operation or self.query.span_name)
        params: dict[str, str | int] = {
            "q": selector(named, *(["status = error"] if probe.errors else [])),
            "start": unix_seconds(probe.start),
            "end": max(unix_seconds(probe.end, ceil=True), unix_seconds(probe.start) + 1),
            "limit": probe.limit,
            "spss": self.backend.spss,
        }
        ids = search_ids(self.backend.api.get_json("/api/search", params), self.backend.api)
        room = max(0, self.backend.max_traces - len(self.read))
        new = [i for i in ids if i not in self.read]
        self.dropped += max(0, len(new) - room)
        for trace_id, (rows, complete) in zip(
            new[:room], self.backend.traces(new[:room], self.query), strict=True
        ):
            self.read[trace_id] = rows
            self.partial += not complete
        return [row for i in ids if i in self.read for row in self.read[i]]


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
    return label(name, kind, str(method).upper() if method else None, route and str(route)), kind


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
