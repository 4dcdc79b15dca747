"""OpenTelemetry for the vault processes: the SDK, the OTLP/HTTP exporter, and a span decorator.

:func:`configure` installs a global tracer provider whose Resource names the service, its
version, the environment and this process, and whose batch processor exports protobuf over
OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the SDK appends ``/v1/traces``) or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``. :func:`traced` wraps a function in a span that carries the
code attributes of the current semantic conventions, read from the function itself.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import socket
import sys
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

P = ParamSpec("P")
R = TypeVar("R")

ENVIRONMENT = "production"
#: Short, so a test or the demo sees spans soon after the traffic that made them.
SCHEDULE_DELAY_MS = 200
EXPORT_TIMEOUT_S = 3.0
_VERSION_PART = re.compile(r"^v\d+$")


def configure(service: str, version: str) -> TracerProvider:
    """Install the global tracer provider for this process and return it.

    Args:
        service: ``service.name`` (``vault-service``, ``vault-goblin``, ``vault-rates``).
        version: ``service.version``.

    Returns:
        The provider; call its ``shutdown()`` before the process exits so the last batch is sent.
    """
    # The HTTP and database instrumentations emit the stable attribute names only when asked.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
    resource = Resource.create(
        {
            "service.name": service,
            "service.version": version,
            "deployment.environment.name": ENVIRONMENT,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        }
    )
    provider = TracerProvider(resource=resource)
    # A short export timeout, unless the environment sets one: a process being stopped while
    # the receiver is down gives up on its last batch within seconds.
    timeout = None if _timeout_configured() else EXPORT_TIMEOUT_S
    exporter = OTLPSpanExporter(timeout=timeout)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=SCHEDULE_DELAY_MS)
    )
    trace.set_tracer_provider(provider)
    return provider


def _timeout_configured() -> bool:
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
    )


def span_name(module: str, qualname: str) -> str:
    """The version-independent span name of a function: ``vault.appraisal.appraise``.

    The package root (``examples``) and the version package (``v1``, ``v2``) are left out, so
    both versions of one function report under one span group.
    """
    parts = [p for p in module.split(".") if p != "examples" and not _VERSION_PART.match(p)]
    return ".".join([*parts, qualname])


def module_name(func: Callable[..., Any]) -> str:
    """The importable module of ``func``, also when it runs as ``python -m`` (``__main__``)."""
    module = func.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    return module


def code_attributes(func: Callable[..., Any]) -> dict[str, str | int]:
    """``code.function.name`` (fully qualified), ``code.file.path`` and ``code.line.number``."""
    target = inspect.unwrap(func)
    path = inspect.getsourcefile(target) or inspect.getfile(target)
    _, line = inspect.getsourcelines(target)
    return {
        "code.function.name": f"{module_name(target)}.{target.__qualname__}",
        "code.file.path": os.path.abspath(path),
        "code.line.number": line,
    }


def traced(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` inside an INTERNAL span named by :func:`span_name` with its code attributes.

    An exception leaving ``func`` is recorded on the span (an ``exception`` event) and sets its
    status to error, then propagates unchanged.
    """
    name = span_name(module_name(func), func.__qualname__)
    attributes = code_attributes(func)
    tracer = trace.get_tracer("examples.vault")

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with tracer.start_as_current_span(name, attributes=attributes):
            return func(*args, **kwargs)

    return wrapper
