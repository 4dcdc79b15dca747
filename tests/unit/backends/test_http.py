"""The shared HTTP plumbing: retries, backoff, Retry-After and translated errors, over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from feedbot.backends.http import (
    JsonApi,
    RetryPolicy,
    error_detail,
    make_client,
    retry_after,
    split_window,
)
from feedbot.errors import BackendResponseError, BackendUnavailable
from tests.fakes.trace_servers import FakeZipkin

PATH = "/api/v2/services"
SECRET = "Bearer s3cret-token"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def server() -> Iterator[FakeZipkin]:
    with FakeZipkin() as fake:
        fake.add_spans(
            [{"traceId": "a" * 16, "id": "b" * 16, "localEndpoint": {"serviceName": "X"}}]
        )
        yield fake


@pytest.fixture
def client(server: FakeZipkin) -> Iterator[httpx.Client]:
    with make_client(server.base_url, headers={"Authorization": SECRET}, timeout=2.0) as http:
        yield http


@pytest.fixture
def api(client: httpx.Client, sleeps: Sleeps) -> JsonApi:
    return JsonApi(client, backend="zipkin", retry=RetryPolicy(sleep=sleeps, jitter=lambda: 0.0))


def test_answers_decoded_json(api: JsonApi, server: FakeZipkin) -> None:
    assert api.get_json(PATH, {"q": "1"}) == ["x"]
    assert server.requests(PATH)[0].param("q") == "1"
    assert api.requests == 1


def test_post_sends_the_body(api: JsonApi, server: FakeZipkin) -> None:
    assert api.post_json(PATH, content=b"SELECT 1", params={"database": "d"}) == ["x"]
    assert server.requests(PATH)[0].method == "POST"


def test_5xx_is_retried_with_exponential_backoff(
    api: JsonApi, server: FakeZipkin, sleeps: Sleeps
) -> None:
    server.fail_next(PATH, status=503, times=3)
    assert api.get_json(PATH) == ["x"]
    assert len(server.requests(PATH)) == 4
    # jitter 0 → half of 0.5, 1, 2 s
    assert sleeps == [0.25, 0.5, 1.0]


def test_5xx_after_the_last_attempt_is_unavailable(
    api: JsonApi, server: FakeZipkin, sleeps: Sleeps
) -> None:
    server.fail_next(PATH, status=500, times=10, body=b"boom")
    with pytest.raises(BackendUnavailable) as raised:
        api.get_json(PATH, {"password": "hunter2"})
    message = str(raised.value)
    assert message == f"zipkin: GET {PATH} failed after 4 attempts: 500: boom"
    assert "s3cret" not in message and "hunter2" not in message and "127.0.0.1" not in message
    assert api.requests == 4 and len(sleeps) == 3


def test_429_honours_retry_after(api: JsonApi, server: FakeZipkin, sleeps: Sleeps) -> None:
    server.fail_next(PATH, status=429, retry_after="3")
    assert api.get_json(PATH) == ["x"]
    assert sleeps == [3.0]


def test_429_asking_for_more_than_the_cap_is_unavailable_at_once(
    api: JsonApi, server: FakeZipkin, sleeps: Sleeps
) -> None:
    server.fail_next(PATH, status=429, retry_after="3600")
    with pytest.raises(BackendUnavailable, match="429, asked to retry after 3600 s"):
        api.get_json(PATH)
    assert sleeps == [] and len(server.requests(PATH)) == 1


def test_429_without_retry_after_backs_off_then_gives_up(
    api: JsonApi, server: FakeZipkin, sleeps: Sleeps
) -> None:
    server.fail_next(PATH, status=429, times=4)
    with pytest.raises(BackendUnavailable, match="after 4 attempts: 429"):
        api.get_json(PATH)
    assert len(sleeps) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 501])
def test_final_statuses_are_not_retried(api: JsonApi, server: FakeZipkin, status: int) -> None:
    server.fail_next(PATH, status=status, body=b'{"message": "bad things"}')
    with pytest.raises(BackendResponseError) as raised:
        api.get_json(PATH)
    assert str(raised.value) == f"zipkin: GET {PATH} answered {status}: bad things"
    assert len(server.requests(PATH)) == 1


def test_404_is_none_when_missing_is_ok(api: JsonApi, server: FakeZipkin) -> None:
    server.fail_next(PATH, status=404)
    assert api.get_json(PATH, missing_ok=True) is None


def test_body_that_is_not_json(api: JsonApi, server: FakeZipkin) -> None:
    server.fail_next(PATH, status=200, body=b"<html>oops</html>", content_type="text/html")
    with pytest.raises(BackendResponseError, match=r"answered 200 \(text/html\) with a body that"):
        api.get_json(PATH)


def test_connection_refused_is_retried_then_unavailable(sleeps: Sleeps) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retry = RetryPolicy(attempts=3, sleep=sleeps, jitter=lambda: 0.0)
    with make_client(f"http://127.0.0.1:{port}", headers={}, timeout=1.0) as http:
        api = JsonApi(http, backend="tempo", retry=retry)
        with pytest.raises(BackendUnavailable, match=r"tempo: GET /x failed after 3 attempts: Con"):
            api.get_json("/x")
    assert len(sleeps) == 2 and api.requests == 3


def test_timeout_is_retried_then_unavailable(server: FakeZipkin, sleeps: Sleeps) -> None:
    server.fail_next(PATH, delay=1.0, status=200, times=2)
    retry = RetryPolicy(attempts=2, sleep=sleeps)
    with server.client(timeout=0.1) as http:
        with pytest.raises(BackendUnavailable, match="after 2 attempts: ReadTimeout"):
            JsonApi(http, backend="zipkin", retry=retry).get_json(PATH)


def test_pause_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0, jitter=lambda: 0.5)
    assert [policy.pause(n) for n in (1, 2, 3, 4)] == [0.75, 1.5, 3.0, 3.75]
    assert RetryPolicy(jitter=lambda: 0.999).pause(1) == pytest.approx(0.5, abs=0.001)


def test_retry_after_forms() -> None:
    def response(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert retry_after(response("7")) == 7.0
    assert retry_after(response(later)) == pytest.approx(120, abs=2)
    assert retry_after(response("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0
    assert retry_after(response("soon")) is None
    assert retry_after(httpx.Response(429)) is None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"error": {"httpCode": 400, "message": "malformed  query"}}', "malformed query"),
        (b'{"errors": [{"code": 404, "msg": "trace not found"}], "data": null}', "trace not found"),
        (b'{"message": "tenant missing"}', "tenant missing"),
        (b"plain\ntext", "plain text"),
        (b"", "Bad Request"),
        (b"x" * 1000, "x" * 299 + "…"),
    ],
)
def test_error_detail(body: bytes, detail: str) -> None:
    assert error_detail(httpx.Response(400, content=body)) == detail


def test_make_client_keeps_a_base_path_and_sends_the_headers() -> None:
    with make_client("https://h.example/jaeger", headers={"X-Scope-OrgID": "t1"}, timeout=5) as c:
        request = c.build_request("GET", "/api/v3/traces")
        assert str(request.url) == "https://h.example/jaeger/api/v3/traces"
        assert request.headers["X-Scope-OrgID"] == "t1"
        assert request.headers["User-Agent"].startswith("feedbot/")
        assert c.timeout.read == 5


def test_split_window() -> None:
    start = datetime(2026, 11, 24, 10, tzinfo=UTC)
    parts = split_window(start, start + timedelta(hours=1), 4)
    assert [(a.minute, b.minute) for a, b in parts] == [(0, 15), (15, 30), (30, 45), (45, 0)]
    assert parts[-1][1] == start + timedelta(hours=1)
    assert split_window(start, start, 3) == []
    assert split_window(start, start + timedelta(seconds=1), 0) == [
        (start, start + timedelta(seconds=1))
    ]
