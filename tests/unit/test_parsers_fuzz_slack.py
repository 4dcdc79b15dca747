"""Property tests of what feedbot reads from Slack: signatures, bodies, commands, button values.

Plus the reproducers of what fuzzing found (each answered 500 or raised in a listener before):
a timestamp header that is not a number, a signature header that is not ASCII, a signed body bolt
cannot parse, a button value that is not a storable id or duration, and a ``response_url`` that
points anywhere but Slack.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.slack.feedback import parse
from feedbot.slack.listeners import _Buttons, answerable
from feedbot.store.db import migrate
from feedbot.store.models import Acknowledgement, Mute
from feedbot.web.app import create_app
from feedbot.web.slack import refusal

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SECRET = "fuzz-slack-signing"
API_URL = "http://127.0.0.1:9/api/"
VERIFIER = SignatureVerifier(SECRET)


def signed_headers(body: bytes, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp or str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": f"v0={digest.hexdigest()}",
        "content-type": "application/x-www-form-urlencoded",
    }


HEADER_TEXT = st.text(st.characters(max_codepoint=255), max_size=20)


@FUZZ
@given(
    body=st.binary(max_size=200),
    stamp=st.none() | HEADER_TEXT | st.integers(-(10**20), 10**20).map(str),
    signature=st.none() | HEADER_TEXT | st.just("v0=" + "0" * 64),
)
def test_refusal_never_raises_and_passes_only_signed_text(
    body: bytes, stamp: str | None, signature: str | None
) -> None:
    headers = {
        k: v
        for k, v in (("x-slack-request-timestamp", stamp), ("x-slack-signature", signature))
        if v is not None
    }
    answer = refusal(headers, body, VERIFIER)
    assert answer is not None and answer.status_code in (400, 401)


@FUZZ
@given(body=st.binary(max_size=200))
def test_a_signed_body_passes_unless_it_is_not_utf8(body: bytes) -> None:
    answer = refusal(signed_headers(body), body, VERIFIER)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        assert answer is not None and answer.status_code == 400
    else:
        assert answer is None


def test_a_request_older_than_five_minutes_is_refused() -> None:
    body = b"command=/feedback&text=vault"
    stale = str(int(time.time()) - 301)
    answer = refusal(signed_headers(body, stale), body, VERIFIER)
    assert answer is not None and answer.status_code == 401


@FUZZ
@given(text=st.text(max_size=60))
def test_any_command_text_parses(text: str) -> None:
    command = parse(text)
    if command.name is not None:
        assert command.name and not any(c.isspace() for c in command.name)
        assert command.name != "--share"
    assert command.share == ("--share" in text.split())


URLS = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["https", "http", "HTTPS", "ftp", ""]),
        st.sampled_from(
            [
                "hooks.slack.com",
                "hooks.slack.com:8443",
                "hooks.slack.com.evil.example",
                "user@hooks.slack.com",
                "127.0.0.1:9",
                "127.0.0.1:99",
                "[::1",
                "169.254.169.254",
                "hooks.slack-gov.com",
            ]
        ),
        st.text(max_size=20),
    ),
)


@FUZZ
@given(url=URLS | st.none() | st.integers())
def test_response_urls_are_only_slack_or_the_configured_api(url: Any) -> None:
    allowed = answerable(url, API_URL)
    if allowed:
        assert isinstance(url, str)
        lowered = url.lower()
        assert lowered.startswith(
            ("https://hooks.slack.com/", "https://hooks.slack-gov.com/", "http://127.0.0.1:9/")
        ) or lowered in (
            "https://hooks.slack.com",
            "https://hooks.slack-gov.com",
            "http://127.0.0.1:9",
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://hooks.slack.com.evil.example/x",
        "https://user:pw@hooks.slack.com/x",
        "http://hooks.slack.com/commands/1",
        "http://127.0.0.1:99/",
        "https://[::1/",
    ],
)
def test_a_response_url_elsewhere_is_never_answered(url: str) -> None:
    assert not answerable(url, API_URL)


def test_slack_and_the_configured_api_are_answered() -> None:
    assert answerable("https://hooks.slack.com/commands/T1/2/abc", API_URL)
    assert answerable("http://127.0.0.1:9/response/1", API_URL)


# --- through the app -------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Any) -> Iterator[Runtime]:
    raw = {
        "database_url": f"sqlite:///{tmp_path / 'feedbot.db'}",
        "slack": {"bot_token": "xoxb-fuzz", "signing_secret": SECRET, "api_url": API_URL},
    }
    built = build_runtime(settings_from_mapping(raw, {}))
    migrate(built.engine)
    yield built
    built.engine.dispose()


def _post(runtime: Runtime, body: bytes, headers: dict[str, Any]) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://feedbot") as client:
            return await client.post("/slack/events", content=body, headers=headers)

    return anyio.run(send)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"text=x", {"x-slack-request-timestamp": "", "x-slack-signature": "v0=1"}, 401),
        (b"text=x", {"x-slack-request-timestamp": "1.5", "x-slack-signature": "v0=1"}, 401),
        (b"text=x", {"x-slack-request-timestamp": "1", "x-slack-signature": b"v0=\xe9"}, 401),
        (b"payload={", None, 400),
        (b"{not json", None, 400),
        (b'payload="a string"', None, 400),
        (b"payload=[1]", None, 400),
        (b"\xff\xfe", None, 400),
    ],
)
def test_what_crashed_bolt_is_refused_with_a_4xx(
    runtime: Runtime, body: bytes, headers: dict[str, Any] | None, status: int
) -> None:
    answer = _post(runtime, body, headers or signed_headers(body))
    assert answer.status_code == status, answer.text
    assert "error" in answer.json()


class Responses:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


BODY = {"user": {"id": "U1"}, "response_url": "https://hooks.slack.com/actions/1"}


@pytest.mark.parametrize(
    ("value", "body"),
    [
        ("vault|99999999999w", BODY),  # overflowed timedelta: the press raised
        ("x" * 201 + "|1h", BODY),  # longer than the column
        ("vault|1h", {**BODY, "user": {"id": "U" * 101}}),
        ("vault\x00|1h", BODY),
        ("vault|1h", {**BODY, "response_url": "http://169.254.169.254/"}),
    ],
)
def test_mute_presses_that_cannot_be_stored_or_answered_are_ignored(
    runtime: Runtime, value: str, body: dict[str, Any]
) -> None:
    buttons = _Buttons(runtime.sessions, FixedClock(runtime.clock.now()), API_URL)
    respond = Responses()
    if value.endswith("99999999999w"):
        buttons.mute(body, {"value": value}, respond)  # capped at MUTE_MAX, stored
        with runtime.sessions() as session:
            assert session.query(Mute).count() == 1
        assert respond.sent
        return
    buttons.mute(body, {"value": value}, respond)
    with runtime.sessions() as session:
        assert session.query(Mute).count() == 0
    assert respond.sent == []


@pytest.mark.parametrize("release_id", ["\u00b2", "9" * 30, "", "-1"])
def test_expected_presses_with_an_impossible_release_id_are_ignored(
    runtime: Runtime, release_id: str
) -> None:
    buttons = _Buttons(runtime.sessions, FixedClock(runtime.clock.now()), API_URL)
    respond = Responses()
    buttons.expected(BODY, {"value": f"{release_id}|slow_span|GET /x"}, respond)
    with runtime.sessions() as session:
        assert session.query(Acknowledgement).count() == 0
    assert respond.sent == []
