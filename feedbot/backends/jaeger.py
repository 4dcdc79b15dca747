"""Jaeger, through the api_v3 HTTP gateway: ``GET /api/v3/traces`` answering OTLP/JSON.

Differs from the contract in that Jaeger can only search: each request returns at most
``query.num_traces`` whole traces (every span, other services' too), merged into one
``result.resourceSpans`` list, or 404 when nothing matched, newest first. So a collect is a
planned sample (:mod:`feedbot.backends.sampling`): the range where the version served, one
search per operation (``/api/v3/operations``) and slice, the error traces by
``query.attributes={"error": "true"}`` (Jaeger matches it against the span status), and span
counts estimated from the density of each answer: Jaeger has no exact counts. Spans are
filtered by service, version, environment and window on this side
(:func:`feedbot.spans.aggregate.matcher`) and aggregated here; the report's notes say how
many traces were searched, of about how many, in how many requests.

Parameters use the snake_case spelling (``query.service_name``, ``query.num_traces``), the one
every api_v3 version understands. ``query.attributes`` (the version, as a resource attribute)
narrows the search on Jaeger 2.19 and later and is ignored by older servers, which the
filtering on this side makes harmless.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx

from feedbot.backends.http import Primitive, SearchBackend
from feedbot.errors import WebhookRejected
from feedbot.spans.aggregate import EPOCH, to_ns
from feedbot.spans.model import SpanQuery
from feedbot.spans.otlp import JSON
from feedbot.spans.otlp_http import decode_request
from feedbot.spans.rows import SpanRow

SEARCH = "/api/v3/traces"
OPERATIONS = "/api/v3/operations"


def rfc3339(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 in UTC with nine fractional digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = EPOCH + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


class JaegerBackend(SearchBackend):
    """Jaeger's query service (port 16686), api_v3; ``filter_version`` sends
    ``query.attributes`` with ``service.version`` (see :class:`SearchBackend` for the rest).
    """

    name = "jaeger"
    trace_page = "/trace/{id}"

    def operations(self, service: str) -> list[str]:
        """The service's span names from ``/api/v3/operations`` (none if it has no such route).

        Raises:
            BackendUnavailable: Jaeger did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        document = self.api.get_json(OPERATIONS, {"service": service}, missing_ok=True)
        if document is None:
            return []
        found = document.get("operations") if isinstance(document, dict) else None
        if not isinstance(found, list):
            raise self.api.malformed(f"GET {OPERATIONS}", "operations", "expected a list")
        return [str(o["name"]) for o in found if isinstance(o, dict) and o.get("name")]

    def find_traces(
        self,
        query: SpanQuery,
        start: datetime,
        end: datetime,
        *,
        limit: int,
        operation: str | None = None,
        errors: bool = False,
    ) -> list[SpanRow]:
        """Every span of the traces Jaeger finds for ``query``'s service in ``[start, end)``.

        Returns:
            Span rows of whole traces, other services and other versions included; empty when
            Jaeger answers 404 (no traces).

        Raises:
            BackendUnavailable: Jaeger did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        params: dict[str, Primitive] = {
            "query.service_name": query.service,
            "query.start_time_min": rfc3339(to_ns(start)),
            "query.start_time_max": rfc3339(to_ns(end)),
            "query.num_traces": limit,
        }
        name = operation if operation is not None else query.span_name
        if name is not None:
            params["query.operation_name"] = name
        attributes = {}
        if self.filter_version and query.version:
            attributes["service.version"] = query.version
        if errors:
            attributes["error"] = "true"
        if attributes:
            params["query.attributes"] = json.dumps(attributes)
        response = self.api.send("GET", SEARCH, params=params, missing_ok=True)
        if response is None:
            return []
        rows: list[SpanRow] = []
        for where, result in self._results(response):
            rows += self.decode_result(result, where)
        return rows

    def _results(self, response: httpx.Response) -> list[tuple[str, Any]]:
        """The ``result`` objects of an answer, with their paths for error messages.

        Jaeger 2 answers one JSON object; Jaeger 1's grpc-gateway streams one object per line.
        """
        chunks = self._chunks(response)
        results: list[tuple[str, Any]] = []
        for i, chunk in enumerate(chunks):
            prefix = f"[{i}]" if len(chunks) > 1 else ""
            if not isinstance(chunk, dict) or not ("result" in chunk or "error" in chunk):
                raise self.api.malformed(f"GET {SEARCH}", prefix or "body", "expected {'result'}")
            if "error" in chunk:
                if _is_not_found(chunk["error"]):
                    continue
                raise self.api.malformed(f"GET {SEARCH}", f"{prefix}error", str(chunk["error"]))
            results.append((f"{prefix}result", chunk["result"]))
        return results

    def _chunks(self, response: httpx.Response) -> list[Any]:
        try:
            return [json.loads(response.content)]
        except (ValueError, RecursionError):
            pass
        try:
            lines = response.content.splitlines()
            chunks = [json.loads(line) for line in lines if line.strip()]
        except (ValueError, RecursionError):
            chunks = []
        # Not JSON, nor JSON lines: let the API raise its "not JSON" error.
        return chunks or [self.api.decode(response, "GET", SEARCH)]

    def decode_result(self, result: Any, where: str = "result") -> list[SpanRow]:
        """Span rows of one OTLP/JSON ``TracesData`` object (``{"resourceSpans": [...]}``).

        Raises:
            BackendResponseError: naming the field that is not OTLP/JSON.
        """
        if result is None:
            return []
        if not isinstance(result, dict):
            raise self.api.malformed(f"GET {SEARCH}", where, "expected an OTLP/JSON object")
        data = json.dumps(result).encode()
        try:
            return decode_request(
                data, content_type=JSON, content_encoding=None, max_bytes=len(data)
            )
        except WebhookRejected as exc:
            raise self.api.malformed(f"GET {SEARCH}", where, exc.message) from None


def _is_not_found(error: Any) -> bool:
    """grpc-gateway streams report "no traces" as an error chunk with code 404 (or NOT_FOUND)."""
    return isinstance(error, dict) and (
        error.get("httpCode") == 404 or error.get("code") == 5 or error.get("grpcCode") == 5
    )
