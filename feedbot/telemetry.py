"""Optional OpenTelemetry tracing of feedbot itself, on when ``telemetry.traces_endpoint`` is set.

feedbot is instrumented by hand at a few seams, each one span: an incoming request
(``web_observe``), a trace backend query (``feedbot.backends``), an outbox send
(``feedbot.notify.outbox``), and a check run. Those seams call :meth:`Tracer.span` on the
runtime's tracer: a :class:`NullTracer` when tracing is off, so the SDK is never imported and a
span costs one function call; an :class:`OtelTracer` with its own ``TracerProvider`` when it is
on. The provider is not installed as OpenTelemetry's global one: an application embedding
feedbot keeps its own, and several runtimes in one process (the tests) each export to their own
endpoint. Spans still nest through OpenTelemetry's context, which is per thread and per task.

The SDK and the OTLP/HTTP exporter come with the ``telemetry`` extra
(``pip install 'feedbot[telemetry]'``). The exporter reads the usual ``OTEL_EXPORTER_OTLP_*``
variables (headers, timeout) and the SDK ``OTEL_TRACES_SAMPLER`` and its argument.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from feedbot import __version__
from feedbot.config import TelemetryConfig
from feedbot.errors import ConfigError

AttributeValue = str | bool | int | float | Sequence[str]
KINDS = ("internal", "server", "client")


class Span(Protocol):
    """The part of a span the seams use."""

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (OpenTelemetry semantic-convention names where one exists)."""
        ...


class Tracer(Protocol):
    """Starts spans; the runtime holds one (see the module docstring)."""

    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        *,
        kind: str = "internal",
    ) -> AbstractContextManager[Span]:
        """A span around the ``with`` block, child of the current one.

        An exception leaving the block is recorded on the span, which is marked as an error.

        Args:
            name: the span name (low cardinality: ``"POST /webhooks/{source}"``).
            attributes: attributes known when the span starts.
            kind: ``internal``, ``server`` (a request feedbot answers) or ``client`` (a
                request feedbot makes).
        """
        ...

    def shutdown(self) -> None:
        """Export the spans still buffered and stop; later spans are dropped."""
        ...


class NullSpan:
    """A span that records nothing."""

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Do nothing."""


class NullTracer:
    """The tracer when tracing is off: every span is a :class:`NullSpan`."""

    _SPAN = NullSpan()

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        *,
        kind: str = "internal",
    ) -> Iterator[Span]:
        """Run the block; nothing is recorded."""
        yield self._SPAN

    def shutdown(self) -> None:
        """Do nothing."""


class OtelTracer:
    """Spans through an OpenTelemetry SDK ``TracerProvider`` that exports over OTLP/HTTP.

    Args:
        provider: an ``opentelemetry.sdk.trace.TracerProvider`` with its span processors.
    """

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace import SpanKind

        self._provider = provider
        self._tracer = provider.get_tracer("feedbot", __version__)
        self._kinds = {
            "internal": SpanKind.INTERNAL,
            "server": SpanKind.SERVER,
            "client": SpanKind.CLIENT,
        }

    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        *,
        kind: str = "internal",
    ) -> AbstractContextManager[Span]:
        """A span of the SDK tracer, current for the block."""
        manager: AbstractContextManager[Span] = self._tracer.start_as_current_span(
            name, kind=self._kinds[kind], attributes=dict(attributes or {})
        )
        return manager

    def flush(self, timeout_seconds: float = 10.0) -> bool:
        """Export every finished span now; False when the exporter did not finish in time."""
        return bool(self._provider.force_flush(int(timeout_seconds * 1000)))

    def shutdown(self) -> None:
        """Flush and stop the provider."""
        self._provider.shutdown()


def build_tracer(config: TelemetryConfig) -> Tracer:
    """The tracer ``config`` asks for: OTLP/HTTP export to ``traces_endpoint``, else none.

    Args:
        config: the validated ``telemetry`` section.

    Returns:
        A :class:`NullTracer` when ``traces_endpoint`` is unset, else an :class:`OtelTracer`
        whose spans are batched and sent in a background thread (flushed at exit).

    Raises:
        ConfigError: tracing is configured but the ``telemetry`` extra is not installed.
    """
    if not config.traces_endpoint:
        return NullTracer()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            [
                "telemetry.traces_endpoint: tracing feedbot needs the 'telemetry' extra "
                f"(pip install 'feedbot[telemetry]'); {exc.name or 'opentelemetry'} is missing"
            ]
        ) from exc
    resource = Resource.create(
        {"service.name": config.service_name, "service.version": __version__}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(config.traces_endpoint)))
    return OtelTracer(provider)
