"""The metrics registry, the instrumented backend, Slack retry counting, log fields and tracing."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from feedbot import logs
from feedbot.backends import InstrumentedBackend, build_backend, unwrapped
from feedbot.backends.base import TraceBackend
from feedbot.config import TelemetryConfig
from feedbot.errors import BackendResponseError, ConfigError
from feedbot.metrics import Metrics
from feedbot.notify.slack import build_web_client
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.telemetry import NullTracer, build_tracer
from feedbot.web.observe import route_of
from tests.factories import settings
from tests.fakes.slack_api import FakeSlackAPI

QUERY = SpanQuery("vault", "1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_each_metrics_object_counts_on_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.check_finished("done")
    one.check_finished("done")
    one.delivery_attempted("retried")
    assert sample(one, "feedbot_check_runs_total", outcome="done") == 2
    assert sample(two, "feedbot_check_runs_total", outcome="done") == 0
    # Every outcome is a series from the start, so a rate() over it has no gap.
    assert sample(one, "feedbot_check_runs_total", outcome="superseded") == 0
    text = one.render().decode()
    assert 'feedbot_delivery_attempts_total{outcome="retried"} 1.0' in text
    assert "# TYPE feedbot_backend_query_seconds histogram" in text


def test_an_unknown_outcome_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="outcome: 'finished' is not one of done"):
        Metrics().check_finished("finished")
    with pytest.raises(ValueError, match="outcome: 'waiting'"):
        Metrics().delivery_attempted("waiting")


def test_otlp_and_webhook_labels_stay_bounded() -> None:
    metrics = Metrics()
    for status in (200, 413, 415, 415, 400, 503, 418):
        metrics.otlp_request(status)
    metrics.spans_accepted(40)
    for source in ("deploy", "generic", "github", "../../etc/passwd"):
        metrics.webhook_answered(source, 202)
    assert sample(metrics, "feedbot_otlp_requests_total") == 7
    assert sample(metrics, "feedbot_otlp_spans_accepted_total") == 40
    rejected = {
        reason: sample(metrics, "feedbot_otlp_rejected_requests_total", reason=reason)
        for reason in ("too_large", "unsupported_media_type", "malformed", "store_unavailable")
    }
    assert rejected == {
        "too_large": 1,
        "unsupported_media_type": 2,
        "malformed": 1,
        "store_unavailable": 1,
    }
    assert sample(metrics, "feedbot_otlp_rejected_requests_total", reason="http_418") == 1
    assert sample(metrics, "feedbot_webhook_requests_total", source="generic", status="202") == 2
    assert sample(metrics, "feedbot_webhook_requests_total", source="other", status="202") == 1


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/webhooks/github", "/webhooks/{source}"),
        ("/webhooks/anything/at/all", "/webhooks/{source}"),
        ("/v1/traces", "/v1/traces"),
        ("/metrics", "/metrics"),
        ("/wp-login.php", "other"),
        ("/releases/12", "/releases/{release_id}"),
        ("/services/any-name-a-scanner-tries", "/services/{name}"),
        ("/meeting", "/meeting"),
    ],
)
def test_routes_are_templates_not_paths(path: str, route: str) -> None:
    assert route_of(path) == route


# --- the instrumented backend ----------------------------------------------------------------


class AnsweringBackend:
    name = "answering"

    def collect(self, query: SpanQuery) -> ReleaseData:
        return ReleaseData(groups=[], traces=3)

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        return {"1": 3, "2": 1}


class BrokenBackend:
    name = "broken"

    def collect(self, query: SpanQuery) -> ReleaseData:
        raise BackendResponseError("broken: /api/traces: not JSON")


def test_the_instrumented_backend_is_still_a_backend_of_the_same_name() -> None:
    inner = AnsweringBackend()
    backend = InstrumentedBackend(inner, metrics=Metrics(), tracer=NullTracer())
    assert isinstance(backend, TraceBackend)
    assert backend.name == "answering"
    assert getattr(backend, "prune", None) is None  # optional capabilities pass through
    assert getattr(backend, "ingest", None) is None
    assert unwrapped(backend) is inner
    assert unwrapped(inner) is inner


def test_queries_are_timed_and_failures_counted_by_error_class() -> None:
    metrics = Metrics()
    good = InstrumentedBackend(AnsweringBackend(), metrics=metrics, tracer=NullTracer())
    bad = InstrumentedBackend(BrokenBackend(), metrics=metrics, tracer=NullTracer())
    assert good.collect(QUERY).traces == 3
    assert good.collect(QUERY).traces == 3
    with pytest.raises(BackendResponseError, match="not JSON"):
        bad.collect(QUERY)
    assert sample(metrics, "feedbot_backend_query_seconds_count", backend="answering") == 2
    assert sample(metrics, "feedbot_backend_query_seconds_count", backend="broken") == 1
    errors = sample(
        metrics, "feedbot_backend_errors_total", backend="broken", error="BackendResponseError"
    )
    assert errors == 1
    assert sample(metrics, "feedbot_backend_errors_total", backend="answering") is None
    # Listing versions is a query of the store too: timed and counted alike.
    assert good.versions("s", QUERY.start, QUERY.end) == {"1": 3, "2": 1}
    assert sample(metrics, "feedbot_backend_query_seconds_count", backend="answering") == 3


def test_the_registry_wraps_only_when_asked_to() -> None:
    from sqlalchemy.orm import sessionmaker

    config = settings(traces={"backend": "jaeger", "url": "http://127.0.0.1:1"})
    plain = build_backend(config, sessionmaker())
    wrapped = build_backend(config, sessionmaker(), metrics=Metrics())
    assert not isinstance(plain, InstrumentedBackend)
    assert isinstance(wrapped, InstrumentedBackend)
    assert type(unwrapped(wrapped)) is type(plain)


# --- Slack retries -----------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        yield fake


def test_slack_retries_are_counted_by_method_and_reason(slack: FakeSlackAPI) -> None:
    metrics = Metrics()
    client = build_web_client(
        token="xoxb-test",
        base_url=slack.base_url,
        retry_interval=FixedValueRetryIntervalCalculator(0),
        on_retry=metrics.slack_retried,
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=0, times=2)
    client.chat_postMessage(channel="C1", text="hello")
    posted = client.chat_postMessage(channel="C1", text="again")
    slack.fail_next("chat.update", status=500)
    client.chat_update(channel="C1", ts=posted["ts"], text="edited")
    slack.fail_next("chat.postMessage", status=500)
    with pytest.raises(SlackApiError, match="Internal Server Error"):
        client.chat_postMessage(channel="C1", text="never repeated")  # may have arrived
    rate_limited = sample(
        metrics, "feedbot_slack_retries_total", method="chat.postMessage", reason="rate_limited"
    )
    assert rate_limited == 2
    assert (
        sample(metrics, "feedbot_slack_retries_total", method="chat.update", reason="server_error")
        == 1
    )
    assert (
        sample(
            metrics, "feedbot_slack_retries_total", method="chat.postMessage", reason="server_error"
        )
        is None
    )


# --- log fields --------------------------------------------------------------------------------


def json_logger() -> tuple[logging.Logger, io.StringIO]:
    root = logging.Logger("bound-root")
    out = io.StringIO()
    root.addHandler(logging.StreamHandler(out))
    logs.install(settings(log={"format": "json"}, webhooks={"secret": "webhook-secret-1"}), root)
    return root, out


def entries(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_bound_fields_reach_every_record_inside_the_block_only() -> None:
    root, out = json_logger()
    with logs.bind(release_id=3, check_id=None):
        root.info("outer")
        with logs.bind(check_id=9, delivery_id=12):
            root.warning("inner")
            root.info("explicit", extra={"check_id": 10})
        root.info("outer again")
    root.info("outside")
    got = [(e["message"], e.get("release_id"), e.get("check_id"), e.get("delivery_id"))
           for e in entries(out)]  # fmt: skip
    assert got == [
        ("outer", 3, None, None),
        ("inner", 3, 9, 12),
        ("explicit", 3, 10, 12),
        ("outer again", 3, None, None),
        ("outside", None, None, None),
    ]
    assert logs.bound() == {}


def test_bound_strings_are_masked_like_the_rest() -> None:
    root, out = json_logger()
    with logs.bind(delivery_key="key-webhook-secret-1", note="xoxb-1-2-abc"):
        root.info("sending")
    [entry] = entries(out)
    assert entry["delivery_key"] == f"key-{logs.MASK}"
    assert entry["note"] == logs.MASK


# --- tracing -----------------------------------------------------------------------------------


def test_tracing_is_off_without_an_endpoint() -> None:
    tracer = build_tracer(TelemetryConfig())
    assert isinstance(tracer, NullTracer)
    with tracer.span("anything", {"a": 1}, kind="server") as span:
        span.set_attribute("b", "c")
    tracer.shutdown()


def test_tracing_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail, as on an install without the extra.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError) as caught:
        build_tracer(TelemetryConfig(traces_endpoint="http://collector:4318/v1/traces"))
    [problem] = caught.value.problems
    assert problem.startswith("telemetry.traces_endpoint: tracing feedbot needs the 'telemetry'")
    assert "pip install 'feedbot[telemetry]'" in problem
