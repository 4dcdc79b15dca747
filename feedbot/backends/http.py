"""HTTP plumbing shared by the HTTP trace backends (Jaeger, Zipkin, Tempo, ClickHouse).

A backend receives an ``httpx.Client`` built by the caller (``base_url`` from ``traces.url``,
headers from ``traces.headers``, timeout from ``traces.timeout``; see :func:`make_client`) and
wraps it in a :class:`JsonApi`, which adds what every backend needs:

* retries with exponential backoff and jitter on connection errors, timeouts, 429 (honouring
  ``Retry-After`` up to a cap) and 5xx, with an injectable ``sleep`` so tests never wait;
* translation of every failure into :class:`~feedbot.errors.BackendUnavailable` (no answer)
  or :class:`~feedbot.errors.BackendResponseError` (an answer feedbot cannot use), each message
  naming the backend, the method, the path and the status. Messages never carry the query
  string, the base URL or header values: those may hold credentials.

Every request is assumed to be a read, safe to repeat.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from feedbot import __version__
from feedbot.backends.sampling import Probe, SearchBudget, note, sampled_collect
from feedbot.errors import BackendResponseError, BackendUnavailable
from feedbot.retry import backoff
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.rows import SpanRow

Primitive = str | int | float | bool | None
#: Query parameters: a mapping, or pairs when a name repeats.
Params = Mapping[str, Primitive] | list[tuple[str, Primitive]]
#: How much of an error body is quoted in a message.
MAX_DETAIL_CHARS = 300
#: 501 and 505 will not get better by asking again.
_FINAL_5XX = frozenset({501, 505})


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long :class:`JsonApi` waits before asking again.

    Args:
        attempts: requests made at most for one call, the first included.
        backoff: seconds before the first retry; doubled for each further one.
        max_backoff: the longest pause between two attempts.
        max_retry_after: the longest ``Retry-After`` honoured; a server asking for more is
            reported as unavailable at once rather than waited for.
        sleep: pauses the calling thread (``time.sleep``; tests pass a recorder).
        jitter: returns a float in [0, 1); each pause is scaled into [50 %, 100 %] of its length
            so that callers failing together do not retry together.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def pause(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return backoff(self.backoff, retry, cap=self.max_backoff, jitter=self.jitter)


def make_client(base_url: str, *, headers: Mapping[str, str], timeout: float) -> httpx.Client:
    """An ``httpx.Client`` as the HTTP backends expect it.

    Args:
        base_url: ``traces.url``; a path prefix (``https://host/jaeger``) is kept.
        headers: ``traces.headers`` (tokens, ``X-Scope-OrgID``), sent with every request.
        timeout: ``traces.timeout`` in seconds, for connecting and for each read.

    Returns:
        A client the caller owns and closes.
    """
    return httpx.Client(
        base_url=base_url,
        headers={"User-Agent": f"feedbot/{__version__}", **headers},
        timeout=timeout,
        follow_redirects=False,
    )


class JsonApi:
    """A JSON-over-HTTP API of one backend, with retries and translated errors.

    Args:
        client: the caller's client, with ``base_url``, headers and timeout set.
        backend: the backend's name, first word of every error message (``"jaeger"``).
        retry: the retry policy.
    """

    def __init__(
        self, client: httpx.Client, *, backend: str, retry: RetryPolicy | None = None
    ) -> None:
        self.client = client
        self.backend = backend
        self.retry = retry or RetryPolicy()
        #: Requests sent so far, retries included (the benchmarks report it).
        self.requests = 0
        #: Bytes of the successful answers' bodies so far (the benchmarks report it).
        self.received = 0
        self._counting = threading.Lock()

    def close(self) -> None:
        """Close the client: the backend holding this API is done with it."""
        self.client.close()

    def get_json(self, path: str, params: Params | None = None, *, missing_ok: bool = False) -> Any:
        """``GET path`` and decode the JSON answer.

        Args:
            path: relative to the client's ``base_url``, e.g. ``/api/v3/traces``.
            params: query parameters.
            missing_ok: answer None on 404 instead of raising (APIs that say "nothing found"
                with a 404, such as Jaeger's ``/api/v3/traces``).

        Returns:
            The decoded JSON document, or None for a 404 when ``missing_ok``.

        Raises:
            BackendUnavailable: no answer after the retries, or still 429/5xx.
            BackendResponseError: a 4xx answer, or a body that is not JSON.
        """
        response = self.send("GET", path, params=params, missing_ok=missing_ok)
        return None if response is None else self.decode(response, "GET", path)

    def post_json(
        self,
        path: str,
        *,
        params: Params | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``POST path`` with ``content`` as the body and decode the JSON answer.

        Raises:
            BackendUnavailable: as :meth:`get_json`.
            BackendResponseError: as :meth:`get_json`.
        """
        response = self.send("POST", path, params=params, content=content, headers=headers)
        assert response is not None  # missing_ok is False
        return self.decode(response, "POST", path)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response | None:
        """Send a request, retrying as the policy says; the successful (2xx) response.

        Returns:
            The response, or None for a 404 when ``missing_ok``.

        Raises:
            BackendUnavailable: as :meth:`get_json`.
            BackendResponseError: a 4xx (other than 429) or 501/505 answer.
        """
        where = f"{method} {path}"
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                with self._counting:  # backends may send from several threads
                    self.requests += 1
                response = self.client.request(
                    method, path, params=params, content=content, headers=headers
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if last:
                    raise self.unavailable(where, problem, attempt) from None
                self.retry.sleep(self.retry.pause(attempt))
                continue
            if response.is_success or (missing_ok and response.status_code == 404):
                with self._counting:
                    self.received += len(response.content)
                return None if response.status_code == 404 else response
            self._refuse_or_wait(response, where, attempt, last)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _refuse_or_wait(
        self, response: httpx.Response, where: str, attempt: int, last: bool
    ) -> None:
        """Raise for a final answer; otherwise sleep before the next attempt."""
        status = response.status_code
        retryable = status == 429 or (status >= 500 and status not in _FINAL_5XX)
        if not retryable:
            raise BackendResponseError(
                f"{self.backend}: {where} answered {status}: {error_detail(response)}"
            )
        wait = self.retry.pause(attempt)
        asked = retry_after(response)
        if asked is not None and asked > self.retry.max_retry_after:
            problem = f"{status}, asked to retry after {asked:.0f} s"
            raise self.unavailable(where, problem, attempt)
        if last:
            raise self.unavailable(where, f"{status}: {error_detail(response)}", attempt)
        self.retry.sleep(max(wait, asked or 0.0))

    def unavailable(self, where: str, problem: str, attempts: int) -> BackendUnavailable:
        """The error for a backend that gave no usable answer in ``attempts`` requests."""
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return BackendUnavailable(f"{self.backend}: {where} failed after {tries}: {problem}")

    def decode(self, response: httpx.Response, method: str, path: str) -> Any:
        """The JSON document in ``response``.

        Raises:
            BackendResponseError: the body is not JSON (naming the status and content type).
        """
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError) as exc:
            kind = response.headers.get("content-type", "no content type")
            raise BackendResponseError(
                f"{self.backend}: {method} {path} answered {response.status_code} ({kind}) "
                f"with a body that is not JSON: {exc}"
            ) from None

    def malformed(self, request: str, where: str, problem: str) -> BackendResponseError:
        """The error for a JSON answer of the wrong shape.

        Args:
            request: method and path, ``"GET /api/v2/traces"``.
            where: the field's path in the answer, ``"[0][3].timestamp"``.
            problem: what is wrong with it.
        """
        return BackendResponseError(f"{self.backend}: {request}: {where}: {problem}")


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (``Retry-After`` as seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def error_detail(response: httpx.Response) -> str:
    """A short, single-line account of an error answer: the server's message, else its body.

    Understands ``{"error": {"message": …}}`` (Jaeger api_v3, Google RPC status),
    ``{"message": …}`` (Zipkin, Tempo) and ``{"errors": [{"msg": …}]}`` (Jaeger v1).
    """
    text = response.text
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    message = _message_of(document)
    detail = " ".join((message if message is not None else text).split())
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    return detail or response.reason_phrase or "(empty body)"


def _message_of(document: Any) -> str | None:
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    for key in ("message", "error"):
        if isinstance(document.get(key), str):
            return str(document[key])
    errors = document.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("msg", errors[0]))
    return None


class SearchBackend:
    """A backend whose API finds whole traces by service and time (Jaeger, Zipkin).

    :meth:`collect` plans its searches with :func:`feedbot.backends.sampling.sampled_collect`:
    the range where the version served, one budget per operation (span name) and slice, the
    error traces by the store's error filter, and counts weighted to the traffic each answer
    stands for (both stores answer newest first). Subclasses set ``name`` and ``trace_page``
    and implement :meth:`find_traces` and :meth:`operations`; :meth:`searched` may rewrite the
    query first (Zipkin lowercases names).

    Args:
        http: a client whose ``base_url`` is the API, base path included.
        ui_url: the backend's UI, for links to example traces.
        budget: what one collect may ask (default :meth:`SearchBudget.from_policy`).
        budget_for: the budget of one service (its own detection policy), when it has one;
            ``budget`` for the others.
        max_traces: traces :meth:`versions` asks for, spread over ``slices``.
        slices: sub-windows :meth:`versions` cuts its window into.
        filter_version: ask the API for ``service.version`` = the query's version only.
        retry: retry policy for the HTTP requests.
    """

    name = "search"
    #: The UI's path of one trace, ``{id}`` replaced by its id.
    trace_page = "/trace/{id}"

    def __init__(
        self,
        http: httpx.Client,
        *,
        ui_url: str | None = None,
        budget: SearchBudget | None = None,
        budget_for: Callable[[str], SearchBudget | None] | None = None,
        max_traces: int = 1000,
        slices: int = 4,
        filter_version: bool = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.api = JsonApi(http, backend=self.name, retry=retry)
        self.ui_url = ui_url.rstrip("/") if ui_url else None
        self.budget = budget or SearchBudget.from_policy()
        self.budget_for = budget_for
        self.max_traces = max_traces
        self.slices = max(1, slices)
        self.filter_version = filter_version

    def close(self) -> None:
        """Close the HTTP client it was given."""
        self.api.close()

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Search as planned (see the class), keep the spans of ``query``, aggregate them."""
        searched = self.searched(query)
        before = self.api.requests

        def find(probe: Probe) -> list[SpanRow]:
            return self.find_traces(
                searched,
                probe.start,
                probe.end,
                limit=probe.limit,
                operation=probe.operation,
                errors=probe.errors,
            )

        data, figures = sampled_collect(
            find,
            lambda: self.operations(searched.service),
            searched,
            self.budget_of(query.service),
            newest_first=True,
            fold=self.fold,
        )
        line = note(self.name, figures, self.api.requests - before)
        sampled = figures["sampled"] if figures.get("full") else None
        return replace(data, sampled_traces=sampled, notes=(*data.notes, line))

    def budget_of(self, service: str) -> SearchBudget:
        """What one collect of ``service`` may ask: its own budget, else the default."""
        own = self.budget_for(service) if self.budget_for is not None else None
        return own or self.budget

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """Spans per ``service.version`` of ``service`` in ``[start, end)``, from the traces the
        search returns for the service in each slice (any version; a sample when one is full).

        Raises:
            BackendUnavailable: the API did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        searched = self.searched(SpanQuery(service, ANY_VERSION, start, end, environment))
        per_slice = max(1, self.max_traces // self.slices)
        rows = (
            row
            for window in split_window(start, end, self.slices)
            for row in self.find_traces(searched, *window, limit=per_slice)
        )
        return count_versions(rows, searched)

    def census(
        self, service: str, start: datetime, end: datetime
    ) -> dict[tuple[str | None, str | None], int]:
        """Spans of ``service`` in ``[start, end)`` per (environment, version), from the traces
        the search returns for the service in each slice (a sample when one is full).

        Neither Jaeger nor Zipkin can count by attribute, nor list an attribute's values with
        counts (Zipkin's ``autocompleteValues`` lists only keys the server was configured for,
        without counts): the same search as :meth:`versions`, with no version nor environment.

        Raises:
            BackendUnavailable: the API did not answer.
            BackendResponseError: it answered with an error or in a shape not understood.
        """
        searched = self.searched(SpanQuery(service, ANY_VERSION, start, end, None))
        per_slice = max(1, self.max_traces // self.slices)
        rows = (
            row
            for window in split_window(start, end, self.slices)
            for row in self.find_traces(searched, *window, limit=per_slice)
        )
        return count_census(rows, searched)

    def searched(self, query: SpanQuery) -> SpanQuery:
        """The query as the API matches it (unchanged here)."""
        return query

    @staticmethod
    def fold(name: str) -> str:
        """A span name as the store spells it (unchanged here)."""
        return name

    def operations(self, service: str) -> list[str]:
        """The span names the store lists for ``service`` (all kinds, any time)."""
        raise NotImplementedError

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
        """Every span of at most ``limit`` traces with ``query``'s service in ``[start, end)``.

        Args:
            query: service, version (when ``filter_version``) and span name to search for.
            start: the window's start.
            end: its end (exclusive).
            limit: traces at most.
            operation: only traces with a span of this name (overrides ``query.span_name``).
            errors: only traces with an error span of the service (the store's error filter).
        """
        raise NotImplementedError

    def trace_url(self, trace_id: str) -> str | None:
        """The UI page of a trace, or None without ``ui_url``."""
        return self.ui_url + self.trace_page.format(id=trace_id) if self.ui_url else None


#: The version of a query that asks for every version (:meth:`SearchBackend.versions`).
ANY_VERSION = ""


def count_versions(rows: Iterable[SpanRow], query: SpanQuery) -> dict[str, int]:
    """Spans per version among ``rows`` of ``query``'s service, environment and window.

    Each span counts once however many answers it came in; spans without a version do not.
    """
    start, end = to_ns(query.start), to_ns(query.end)
    environment = query.environment
    seen: set[tuple[str, str]] = set()
    counts: Counter[str] = Counter()
    for row in rows:
        version, key = row["version"], (row["trace_id"], row["span_id"])
        if (
            not version
            or row["service"] != query.service
            or not start <= row["start_ns"] < end
            or (environment is not None and row["environment"] not in (None, environment))
            or key in seen
        ):
            continue
        seen.add(key)
        counts[version] += 1
    return dict(counts)


def count_census(
    rows: Iterable[SpanRow], query: SpanQuery
) -> dict[tuple[str | None, str | None], int]:
    """Spans per (environment, version) among ``rows`` of ``query``'s service and window.

    Each span counts once however many answers it came in; None is a span naming no
    environment, or no version.
    """
    start, end = to_ns(query.start), to_ns(query.end)
    seen: set[tuple[str, str]] = set()
    counts: Counter[tuple[str | None, str | None]] = Counter()
    for row in rows:
        key = (row["trace_id"], row["span_id"])
        if row["service"] != query.service or not start <= row["start_ns"] < end or key in seen:
            continue
        seen.add(key)
        counts[row["environment"] or None, row["version"] or None] += 1
    return dict(counts)


def split_window(start: datetime, end: datetime, slices: int) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into ``slices`` consecutive windows of equal length.

    Search APIs answer with at most N traces per request (Jaeger, Zipkin, Tempo search);
    asking per slice spreads the sample over the whole window instead of its newest end.
    """
    slices = max(1, slices)
    step = (end - start) / slices
    bounds = [start + step * i for i in range(slices)] + [end]
    return [(bounds[i], bounds[i + 1]) for i in range(slices) if bounds[i] < bounds[i + 1]]
