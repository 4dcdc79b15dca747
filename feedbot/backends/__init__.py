"""Trace backends: one plug-in per trace store, chosen by ``traces.backend``.

Each module reaches one store: :mod:`~feedbot.backends.embedded` (feedbot's own database),
:mod:`~feedbot.backends.otlp_file`, :mod:`~feedbot.backends.jaeger`,
:mod:`~feedbot.backends.zipkin`, :mod:`~feedbot.backends.tempo` and
:mod:`~feedbot.backends.clickhouse`; :mod:`~feedbot.backends.http` holds what the HTTP ones
share (client, retries, trace search). Each answers the
:class:`~feedbot.backends.base.TraceBackend` protocol with the types of
:mod:`feedbot.spans.model`, decoding and aggregating with :mod:`feedbot.spans`. Backends never
import the store's ORM tables (:mod:`feedbot.store.models`, :mod:`feedbot.store.spans`): the
embedded backend runs the statements of :mod:`feedbot.store.span_queries`.

The registry maps each configuration name to a factory taking the settings and the store's
session factory. Modules are imported only when their backend is chosen, so a deployment pays
only for the backend it uses. A running feedbot gets its backend wrapped in an
:class:`InstrumentedBackend`, which times each query for ``/metrics`` and traces it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.base import TraceBackend
from feedbot.config import Settings
from feedbot.errors import ConfigError
from feedbot.metrics import Metrics
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.telemetry import NullTracer, Tracer

if TYPE_CHECKING:
    from feedbot.backends.sampling import SearchBudget

Factory = Callable[[Settings, sessionmaker[Session]], TraceBackend]


def _embedded(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(sessions)


def _otlp_file(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.otlp_file import OtlpFileBackend, paths_from_setting

    paths = paths_from_setting(settings.traces.path or "")
    if not paths:
        raise ConfigError(["traces.path: is required for the otlp-file backend (a glob)"])
    return OtlpFileBackend(paths)


def _client(settings: Settings) -> httpx.Client:
    from feedbot.backends.http import make_client

    if not settings.traces.url:
        raise ConfigError(
            [f"traces.url: is required for traces.backend {settings.traces.backend!r}"]
        )
    return make_client(
        settings.traces.url,
        headers=settings.traces.headers,
        timeout=settings.traces.timeout.total_seconds(),
    )


def budgets(settings: Settings) -> Callable[[str], SearchBudget | None]:
    """The search budget of each service with a policy of its own (``services.<name>.detectors``).

    A search-only store's sample is sized from the detection policy
    (:meth:`~feedbot.backends.sampling.SearchBudget.from_policy`); a service whose detectors are
    set apart (another ``latency.ratio_floor``, ``latency.min_samples`` or
    ``tail.p95_min_samples``) gets the budget of its own policy. None for the others.
    """
    from feedbot.backends.sampling import SearchBudget
    from feedbot.policy import DetectionPolicy, with_overrides

    def budget(service: str) -> SearchBudget | None:
        conf = settings.services.get(service)
        if conf is None or not conf.detectors:
            return None
        return SearchBudget.from_policy(with_overrides(DetectionPolicy(), conf.detectors))

    return budget


def _jaeger(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.jaeger import JaegerBackend

    return JaegerBackend(
        _client(settings), ui_url=settings.traces.ui_url, budget_for=budgets(settings)
    )


def _zipkin(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.zipkin import ZipkinBackend

    return ZipkinBackend(
        _client(settings), ui_url=settings.traces.ui_url, budget_for=budgets(settings)
    )


def _tempo(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.tempo import TempoBackend

    return TempoBackend(
        _client(settings), ui_url=settings.traces.ui_url, budget_for=budgets(settings)
    )


def _clickhouse(settings: Settings, sessions: sessionmaker[Session]) -> TraceBackend:
    from feedbot.backends.clickhouse import ClickHouseBackend

    return ClickHouseBackend(_client(settings), ui_url=settings.traces.ui_url)


#: Configuration name → factory.
BACKENDS: dict[str, Factory] = {
    "embedded": _embedded,
    "otlp-file": _otlp_file,
    "jaeger": _jaeger,
    "zipkin": _zipkin,
    "tempo": _tempo,
    "clickhouse": _clickhouse,
}


def build_backend(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    metrics: Metrics | None = None,
    tracer: Tracer | None = None,
) -> TraceBackend:
    """The backend ``traces.backend`` names, built from the settings.

    Args:
        settings: the validated configuration.
        sessions: the store's session factory (used by the embedded backend).
        metrics: when given, the backend comes wrapped in an :class:`InstrumentedBackend`
            counting into it (and tracing into ``tracer``).
        tracer: where query spans go; none when None.

    Returns:
        The backend, ready to :meth:`~feedbot.backends.base.TraceBackend.collect`.

    Raises:
        ConfigError: the backend is not available in this build, or its settings are incomplete.
    """
    name = settings.traces.backend
    factory = BACKENDS.get(name)
    if factory is None:
        raise ConfigError([f"traces.backend: {name!r} is not available in this version yet"])
    backend = factory(settings, sessions)
    if metrics is None:
        return backend
    return InstrumentedBackend(backend, metrics=metrics, tracer=tracer or NullTracer())


class InstrumentedBackend:
    """A backend that times each query (:meth:`collect`, :meth:`versions`) into metrics and a
    span; otherwise the inner one.

    Every other attribute (``ingest``, ``prune``, ``versions`` …) is the inner backend's, so
    code that asks for an optional capability with ``getattr`` finds it. :meth:`unwrap` returns
    the inner backend for code that needs its concrete type.

    Args:
        inner: the backend to wrap.
        metrics: where query times and errors are counted, labelled with ``inner.name``.
        tracer: where each query becomes a ``client`` span.
    """

    def __init__(self, inner: TraceBackend, *, metrics: Metrics, tracer: Tracer) -> None:
        self.inner = inner
        self.name = inner.name
        self._metrics = metrics
        self._tracer = tracer

    def collect(self, query: SpanQuery) -> ReleaseData:
        """The inner backend's answer, timed; a failure is counted by its exception class."""
        attributes = {
            "feedbot.backend": self.name,
            "feedbot.query.service": query.service,
            "feedbot.query.version": query.version,
        }
        with self._timed("feedbot.backend.collect", attributes) as span:
            data = self.inner.collect(query)
            span.set_attribute("feedbot.span_groups", len(data.groups))
            span.set_attribute("feedbot.traces", data.traces)
        return data

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """The inner backend's spans per version, timed and counted like :meth:`collect`."""
        attributes = {"feedbot.backend": self.name, "feedbot.query.service": service}
        with self._timed("feedbot.backend.versions", attributes):
            return self.inner.versions(service, start, end, environment)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        """Close the inner backend."""
        self.inner.close()

    @contextmanager
    def _timed(self, name: str, attributes: dict[str, str]) -> Iterator[Any]:
        started = time.perf_counter()
        error: str | None = None
        with self._tracer.span(name, attributes, kind="client") as span:
            try:
                yield span
            except Exception as exc:
                error = type(exc).__name__
                raise
            finally:
                self._metrics.backend_queried(self.name, time.perf_counter() - started, error)

    def unwrap(self) -> TraceBackend:
        """The wrapped backend."""
        return self.inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy in the making): no endless recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def unwrapped(backend: TraceBackend) -> TraceBackend:
    """``backend`` without its :class:`InstrumentedBackend`, if it has one."""
    return backend.unwrap() if isinstance(backend, InstrumentedBackend) else backend
