"""The release, service and meeting pages through HTTP, behind signed expiring links.

A real release: deploys through the webhook, spans from the OpenTelemetry SDK through
``/v1/traces``, the +15m check run by the runtime's ticker (its reply and chart go to the fake
Slack Web API). The pages are then fetched over HTTP with the links feedbot puts in Slack:
a valid token opens them; no token, a tampered one, one for another page, or an expired one is
403 with a sentence saying why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.digest.links import PageLinks
from feedbot.runtime import Runtime, build_runtime
from feedbot.slack.home import HomeService
from feedbot.web.app import create_app
from tests.factories import DEPLOYED
from tests.fakes.slack_api import FakeSlackAPI
from tests.functional.test_chart_to_thread import OWNER, SECRET, post_deploy, send_traffic
from tests.functional.test_slack_feedback import signed, wait_response
from tests.servers import AppServer

PAGE_SECRET = "a-page-secret-of-some-length"
PUBLIC = "https://feedbot.example"


def build(url: str, slack_api: FakeSlackAPI, web: dict[str, Any]) -> Runtime:
    settings = settings_from_mapping(
        {
            "database_url": url,
            "public_url": PUBLIC,
            "web": web,
            "webhooks": {"secret": SECRET},
            "slack": {
                "bot_token": "xoxb-test",
                "signing_secret": "slack-secret",
                "api_url": slack_api.base_url,
            },
            "traces": {"ui_url": "https://jaeger.example"},
            "checks": {"after": ["15m", "1h"]},
            "services": {"vault-service": {"detectors": {"latency": {"warmup": "0s"}}}},
        },
        {},
    )
    return build_runtime(settings, clock=FixedClock(DEPLOYED - timedelta(days=1)))


@pytest.fixture
def runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Runtime]:
    rt = build(fresh_database_url, slack_api, {"page_secret": PAGE_SECRET, "link_ttl": "7d"})
    yield rt
    rt.engine.dispose()


@pytest.fixture
def server(runtime: Runtime) -> Iterator[AppServer]:
    with AppServer(create_app(runtime)) as running:
        yield running


@pytest.fixture
def client(server: AppServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as c:
        yield c


def checked_release(runtime: Runtime, client: httpx.Client) -> None:
    """1.4.1 then 1.4.2 of vault-service, 3× slower on one route, its +15m check done."""
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    post_deploy(client, "1.4.1", -timedelta(days=1))
    clock.set(DEPLOYED)
    post_deploy(client, "1.4.2", timedelta(0))
    send_traffic(client)
    runtime.tick()
    clock.advance(timedelta(minutes=15))
    runtime.tick()


def local(link: str | None) -> str:
    """A link as feedbot made it, minus its public address (the test server has its own)."""
    assert link is not None and link.startswith(PUBLIC + "/")
    return link[len(PUBLIC) :]


def test_a_signed_link_opens_the_release_page_and_nothing_else(
    runtime: Runtime, client: httpx.Client
) -> None:
    checked_release(runtime, client)
    links = PageLinks.from_settings(runtime.settings)
    now = runtime.clock.now()
    link = local(links.release(2, now))

    page = client.get(link)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "private, no-store"
    body = page.text
    assert "vault-service 1.4.2 → production" in body
    # The story, its evidence (test, n, p/q, CI), the chart inline, the check timeline.
    assert "3." in body and "slower" in body
    assert "Mann-Whitney" in body and "p / q" in body and "(95%)" in body
    assert body.count('src="data:image/png;base64,iVBORw0KGgo') == 1
    assert re.search(r"<strong>\+15m</strong>.*?done", body, re.S)
    assert re.search(r"<strong>\+1h</strong>.*?pending", body, re.S)
    assert "<script" not in body

    # Every way a link can be wrong is 403 with a reason, before anything is read.
    path, token = link.split("?t=")
    expires, signature = token.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    wrong = {
        "no token": (path, "needs a link from feedbot"),
        "tampered signature": (f"{path}?t={expires}.{flipped}", "does not match this page"),
        "later expiry": (f"{path}?t={int(expires) + 3600}.{signature}", "does not match"),
        "another release": (f"/releases/1?t={token}", "does not match this page"),
        "malformed": (f"{path}?t=soon.{signature}", "malformed"),
    }
    for case, (url, why) in wrong.items():
        answer = client.get(url)
        assert answer.status_code == 403, case
        assert why in answer.text, (case, answer.text)
        assert "vault-service" not in answer.text, case

    # A week later (link_ttl: 7d) the same link has expired.
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    clock.advance(timedelta(days=7, seconds=1))
    expired = client.get(link)
    assert expired.status_code == 403 and "expired" in expired.text
    assert client.get(local(links.release(2, clock.now()))).status_code == 200


def test_service_and_meeting_pages(runtime: Runtime, client: httpx.Client) -> None:
    checked_release(runtime, client)
    links = PageLinks.from_settings(runtime.settings)
    now = runtime.clock.now()

    service = client.get(local(links.service("vault-service", now)))
    assert service.status_code == 200, service.text
    # Both releases, newest first, each linking its own signed page.
    assert service.text.index("vault-service 1.4.2") < service.text.index("vault-service 1.4.1")
    assert "regressed" in service.text
    for href in re.findall(r'href="(/releases/\d+\?t=[^"]+)"', service.text.replace(PUBLIC, "")):
        assert client.get(href.replace("&amp;", "&")).status_code == 200

    meeting = client.get(local(links.meeting(now)))
    assert meeting.status_code == 200, meeting.text
    assert "What reached production" in meeting.text
    assert "Was this expected?" in meeting.text  # the open regression is a question
    # ``until`` is part of what is signed: changing it breaks the link.
    until = local(links.meeting(now, until=now))
    assert client.get(until).status_code == 200
    assert client.get(until.replace("until=2", "until=1")).status_code == 403

    missing = client.get(local(links.release(99, now)))
    assert missing.status_code == 404
    assert client.get(local(links.service("nobody", now))).status_code == 404


def test_pages_are_closed_without_a_secret_and_open_when_the_team_says_so(
    fresh_database_url: str, slack_api: FakeSlackAPI
) -> None:
    closed = build(fresh_database_url, slack_api, {})
    try:
        assert not PageLinks.from_settings(closed.settings).enabled  # no links into Slack
        with AppServer(create_app(closed)) as server, httpx.Client(base_url=server.url) as c:
            answer = c.get("/meeting")
            assert answer.status_code == 403
            assert "web.page_secret is not configured" in answer.text
    finally:
        closed.engine.dispose()
    opened = build(fresh_database_url, slack_api, {"page_links": "open"})
    try:
        with AppServer(create_app(opened)) as server, httpx.Client(base_url=server.url) as c:
            assert c.get("/meeting").status_code == 200
            assert c.get("/releases/1").status_code == 404  # no such release: open, not found
        link = PageLinks.from_settings(opened.settings).release(1, opened.clock.now())
        assert link == f"{PUBLIC}/releases/1"  # no token in open links
    finally:
        opened.engine.dispose()


def buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """The URL buttons of some blocks: label → url."""
    out = {}
    for block in blocks:
        for element in [block.get("accessory") or {}, *block.get("elements", [])]:
            if element.get("type") == "button" and element.get("url"):
                out[element["text"]["text"]] = element["url"]
    return out


def test_the_links_feedbot_sends_to_slack_open_the_pages(
    runtime: Runtime, client: httpx.Client, slack_api: FakeSlackAPI
) -> None:
    checked_release(runtime, client)
    # The check's reply in the DM thread: a "Release page" button with a signed link.
    replies = [m for m in slack_api.messages_in(OWNER) if "+15m check" in str(m.get("text"))]
    [reply] = replies
    link = buttons(reply["blocks"])["Release page"]
    page = client.get(local(link))
    assert page.status_code == 200 and "vault-service 1.4.2 → production" in page.text

    # The App Home: a "Page" button per release, and the meeting's agenda under the greeting.
    view = HomeService(
        sessions=runtime.sessions, settings=runtime.settings, clock=runtime.clock
    ).view(OWNER)
    pages_linked = [
        url
        for block in view["blocks"]
        for label, url in buttons([block]).items()
        if label == "Page"
    ]
    assert len(pages_linked) == 2
    assert all(client.get(local(url)).status_code == 200 for url in pages_linked)
    agenda = re.search(r"<(https://[^|>]+)\|The feedback meeting's agenda>", json.dumps(view))
    assert agenda is not None
    assert client.get(local(agenda[1])).status_code == 200

    # /feedback meeting, through Slack's signed request: the agenda, linking its page.
    body = urlencode(
        {
            "command": "/feedback",
            "text": "meeting",
            "user_id": OWNER,
            "team_id": "T1",
            "channel_id": "C0VAULT",
            "api_app_id": "A1",
            "response_url": slack_api.response_url("cmd"),
            "trigger_id": "1.2.3",
        }
    ).encode()
    before = len(slack_api.responses)
    acked = client.post("/slack/events", content=body, headers=signed(body, "slack-secret"))
    assert acked.status_code == 200
    answer = wait_response(slack_api, before + 1)
    text = json.dumps(answer["blocks"], ensure_ascii=False)
    assert "what reached production" in text
    assert "regressed · vault-service 1.4.2" in text
    assert "Was this expected?" in text
    meeting = re.search(r"<(https://[^|>]+)\|The meeting's page>", text)
    assert meeting is not None
    opened = client.get(local(meeting[1]))
    assert opened.status_code == 200 and "vault-service 1.4.2" in opened.text


def test_odd_requests_get_clear_answers_and_nothing_is_reflected_unescaped(
    fresh_database_url: str, slack_api: FakeSlackAPI
) -> None:
    opened = build(fresh_database_url, slack_api, {"page_links": "open"})
    try:
        with AppServer(create_app(opened)) as server, httpx.Client(base_url=server.url) as c:
            bad_until = c.get("/meeting", params={"until": "next tuesday"})
            assert bad_until.status_code == 400
            assert "until: expected a time like 2026-12-07T09:00Z" in bad_until.text
            assert c.get("/releases/abc").status_code == 422
            assert c.get("/releases/0").status_code == 422
            assert c.get(f"/releases/{2**70}").status_code == 422
            hostile = c.get("/services/<script>alert(1)")
            assert hostile.status_code == 404
            assert "<script>" not in hostile.text and "&lt;script&gt;" in hostile.text
            assert c.get("/releases/1", params={"t": "x" * 500}).status_code == 422
    finally:
        opened.engine.dispose()
