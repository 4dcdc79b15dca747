"""Builders for test data: release events and settings with sensible defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from feedbot.config import Settings, settings_from_mapping
from feedbot.releases.event import Author, Change, ReleaseEvent

DEPLOYED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def event(**over: Any) -> ReleaseEvent:
    values: dict[str, Any] = {
        "service": "vault-service",
        "version": "1.4.2",
        "environment": "production",
        "commit": "c0ffee1",
        "author": Author(email="bill@acme.example", name="Bill", slack="U123"),
        "title": "Cache vault appraisals",
        "changes": (
            Change(
                file="vault/appraisal.py",
                functions=("vault.appraisal.appraise",),
                lines=((10, 42),),
            ),
        ),
        "deployed_at": DEPLOYED,
    }
    values.update(over)
    return ReleaseEvent(**values)


def settings(**raw: Any) -> Settings:
    return settings_from_mapping(raw, {})


def sign(body: bytes, secret: str) -> str:
    """The ``X-Feedbot-Signature`` value for ``body``."""
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def otlp_spans(
    *,
    service: str,
    version: str,
    start: datetime,
    spans: list[tuple[str, float, bool]],
    environment: str = "production",
) -> bytes:
    """OTLP/protobuf bytes of spans made by the real OpenTelemetry SDK.

    Args:
        spans: (route, duration in ms, is_error) per SERVER span, one trace each, a second apart.
    """
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from feedbot.spans.aggregate import to_ns
    from tests.fakes.sdk_spans import protobuf, recording

    resource = {
        "service.name": service,
        "service.version": version,
        "deployment.environment.name": environment,
    }
    base_ns = to_ns(start)  # exact: timestamp() * 1e9 can round below the microsecond
    with recording(resource) as (tracer, finished):
        for i, (route, ms, error) in enumerate(spans):
            begin = base_ns + i * 1_000_000_000
            span = tracer.start_span(
                f"GET {route}",
                kind=SpanKind.SERVER,
                start_time=begin,
                attributes={"http.route": route, "http.request.method": "GET"},
            )
            if error:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=begin + int(ms * 1e6))
    return protobuf(finished)
