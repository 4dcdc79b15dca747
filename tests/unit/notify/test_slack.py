"""SlackNotifier over real HTTP against the fake Slack Web API (tests/fakes/slack_api.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from feedbot.errors import DeliveryError
from feedbot.notify.base import Message, Notifier, Receipt
from feedbot.notify.slack import ChannelPacer, SlackNotifier, build_web_client
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-test-secret-token"
BLOCKS = ({"type": "section", "text": {"type": "mrkdwn", "text": "*p95* 120 ms"}},)


class FakeTime:
    """Monotonic time that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def api() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(users={"ada@example.com": "U0ADA"}) as fake:
        yield fake


def make_client(api: FakeSlackAPI, *, token: str = TOKEN, max_retries: int = 2) -> WebClient:
    return build_web_client(
        token=token,
        base_url=api.base_url,
        timeout=5,
        max_retries=max_retries,
        retry_interval=FixedValueRetryIntervalCalculator(0),
    )


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_notifier(client: WebClient, fake_time: FakeTime, **kwargs: int) -> SlackNotifier:
    pacer = ChannelPacer(sleep=fake_time.sleep, monotonic=fake_time.monotonic)
    return SlackNotifier(client, pacer=pacer, **kwargs)


@pytest.fixture
def notifier(api: FakeSlackAPI, fake_time: FakeTime) -> SlackNotifier:
    return make_notifier(make_client(api), fake_time)


def parent(key: str = "release:1", recipient: str = "U1") -> Message:
    return Message(key=key, recipient=recipient, text="payments 1.4.2 is live", blocks=BLOCKS)


def reply(thread: Receipt, key: str = "release:1:check:1", broadcast: bool = False) -> Message:
    return Message(key=key, recipient="U1", text="p95 +12%", thread=thread, broadcast=broadcast)


def test_slack_notifier_conforms_to_protocol(notifier: SlackNotifier) -> None:
    assert isinstance(notifier, Notifier)


def test_dm_lands_in_the_users_d_channel(api: FakeSlackAPI, notifier: SlackNotifier) -> None:
    receipt = notifier.post(parent())

    assert receipt.channel == api.dm_channel("U1") and receipt.channel.startswith("D")
    [stored] = api.messages_in(receipt.channel)
    assert stored["ts"] == receipt.ts
    assert stored["text"] == "payments 1.4.2 is live"
    assert stored["blocks"] == list(BLOCKS)
    assert stored["metadata"] == {
        "event_type": "feedbot_message",
        "event_payload": {"key": "release:1"},
    }
    [sent] = api.calls_to("chat.postMessage")
    assert sent["channel"] == "U1" and sent["unfurl_links"] is False
    assert "thread_ts" not in sent


def test_thread_reply_carries_thread_ts_and_broadcast(
    api: FakeSlackAPI, notifier: SlackNotifier
) -> None:
    thread = notifier.post(parent())

    receipt = notifier.post(reply(thread, broadcast=True))

    sent = api.calls_to("chat.postMessage")[-1]
    assert (sent["channel"], sent["thread_ts"], sent["reply_broadcast"]) == (
        thread.channel,
        thread.ts,
        True,
    )
    assert receipt.channel == thread.channel and receipt.ts > thread.ts
    assert [m["ts"] for m in api.thread(thread.channel, thread.ts)] == [thread.ts, receipt.ts]


def test_update_changes_the_stored_message(api: FakeSlackAPI, notifier: SlackNotifier) -> None:
    receipt = notifier.post(parent())

    notifier.update(receipt, Message(key="release:1", recipient="U1", text="all 2 checks ran"))

    [stored] = api.messages_in(receipt.channel)
    assert stored["text"] == "all 2 checks ran"
    assert stored["blocks"] == []
    assert stored["metadata"]["event_payload"] == {"key": "release:1"}


def test_update_of_unknown_message_is_not_retryable(notifier: SlackNotifier) -> None:
    with pytest.raises(DeliveryError, match=r"chat\.update .*message_not_found") as caught:
        notifier.update(Receipt("D1", "1.000000"), parent())
    assert caught.value.retryable is False


def test_find_locates_a_top_level_dm_sent_earlier(
    api: FakeSlackAPI, notifier: SlackNotifier, fake_time: FakeTime
) -> None:
    sent = notifier.post(parent("release:7"))
    notifier.post(parent("release:8"))
    after_restart = make_notifier(make_client(api), fake_time)

    assert after_restart.find(parent("release:7")) == sent
    assert after_restart.find(parent("release:9")) is None
    assert api.calls_to("conversations.open")[0]["users"] == "U1"
    history = api.calls_to("conversations.history")[0]
    assert history["channel"] == sent.channel and history["include_all_metadata"] in ("1", True)


def test_find_locates_a_thread_reply_sent_earlier(
    api: FakeSlackAPI, notifier: SlackNotifier
) -> None:
    thread = notifier.post(parent())
    sent = notifier.post(reply(thread, key="release:1:check:2"))

    assert notifier.find(reply(thread, key="release:1:check:2")) == sent
    assert notifier.find(reply(thread, key="release:1:check:3")) is None
    replies = api.calls_to("conversations.replies")[0]
    assert (replies["channel"], replies["ts"]) == (thread.channel, thread.ts)


def test_find_in_a_channel_by_id(api: FakeSlackAPI, notifier: SlackNotifier) -> None:
    sent = notifier.post(parent(recipient="C0DEPLOYS"))

    assert notifier.find(parent(recipient="C0DEPLOYS")) == sent


def test_post_to_a_channel_name_answers_the_channel_id(
    api: FakeSlackAPI, notifier: SlackNotifier, fake_time: FakeTime
) -> None:
    sent = notifier.post(parent(recipient="#deploys"))

    assert sent.channel == api.channel_id("#deploys")
    assert notifier.find(parent(recipient="#deploys")) == sent
    # History is read by id only: a fresh notifier cannot map a name back, so it cannot tell.
    assert make_notifier(make_client(api), fake_time).find(parent(recipient="#deploys")) is None


def test_rate_limited_post_is_retried_and_delivered_once(
    api: FakeSlackAPI, notifier: SlackNotifier
) -> None:
    api.fail_next("chat.postMessage", status=429, retry_after=0)

    receipt = notifier.post(parent())

    assert len(api.calls_to("chat.postMessage")) == 2
    assert [m["ts"] for m in api.messages_in("U1")] == [receipt.ts]


def test_rate_limit_that_outlasts_the_retries_is_retryable(
    api: FakeSlackAPI, fake_time: FakeTime
) -> None:
    notifier = make_notifier(make_client(api, max_retries=0), fake_time)
    api.fail_next("chat.postMessage", status=429, retry_after=0)

    with pytest.raises(DeliveryError, match=r"chat\.postMessage .*ratelimited .*429") as caught:
        notifier.post(parent())
    assert caught.value.retryable is True


def test_server_error_on_update_is_retried_by_the_client(
    api: FakeSlackAPI, notifier: SlackNotifier
) -> None:
    receipt = notifier.post(parent())
    api.fail_next("chat.update", status=500)

    notifier.update(receipt, Message(key="release:1", recipient="U1", text="done"))

    assert len(api.calls_to("chat.update")) == 2
    assert api.messages_in("U1")[0]["text"] == "done"


def test_server_error_on_post_checks_before_posting_again(
    api: FakeSlackAPI, notifier: SlackNotifier, fake_time: FakeTime
) -> None:
    api.fail_next("chat.postMessage", status=500)

    receipt = notifier.post(parent())

    methods = [call.method for call in api.calls]
    assert methods == [
        "chat.postMessage",
        "conversations.open",
        "conversations.history",
        "chat.postMessage",
    ]
    assert [m["ts"] for m in api.messages_in("U1")] == [receipt.ts]
    assert fake_time.slept == [1.0]  # the repeat waited for the channel's pace


@pytest.mark.parametrize("drop", [True, False], ids=["connection-dropped", "answered-500"])
def test_sent_but_answer_lost_is_found_not_sent_again(
    api: FakeSlackAPI, notifier: SlackNotifier, drop: bool
) -> None:
    api.lose_answer_next("chat.postMessage", drop=drop)

    receipt = notifier.post(parent())

    assert len(api.calls_to("chat.postMessage")) == 1
    assert [m["ts"] for m in api.messages_in("U1")] == [receipt.ts]


def test_sent_but_answer_lost_then_find_locates_it(api: FakeSlackAPI, fake_time: FakeTime) -> None:
    notifier = make_notifier(make_client(api), fake_time, post_attempts=1)
    thread = notifier.post(parent())
    api.lose_answer_next("chat.postMessage")

    with pytest.raises(DeliveryError) as caught:
        notifier.post(reply(thread))

    assert caught.value.retryable is True
    found = notifier.find(reply(thread))
    assert found is not None and found.ts == api.thread(thread.channel, thread.ts)[-1]["ts"]
    assert len(api.calls_to("chat.postMessage")) == 2


def test_channel_not_found_is_not_retryable(api: FakeSlackAPI, notifier: SlackNotifier) -> None:
    api.fail_next("chat.postMessage", error="channel_not_found")

    with pytest.raises(DeliveryError, match=r"chat\.postMessage \(U1\).*channel_not_found") as e:
        notifier.post(parent())
    assert e.value.retryable is False
    assert len(api.calls_to("chat.postMessage")) == 1


def test_bad_token_is_not_retryable_and_not_in_the_message(fake_time: FakeTime) -> None:
    with FakeSlackAPI(token="xoxb-the-right-one") as strict:
        notifier = make_notifier(make_client(strict), fake_time)
        with pytest.raises(DeliveryError, match="invalid_auth") as caught:
            notifier.post(parent())
    assert caught.value.retryable is False
    assert TOKEN not in str(caught.value)


def test_connection_refused_is_retryable(fake_time: FakeTime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = build_web_client(
        token=TOKEN,
        base_url=f"http://127.0.0.1:{port}/api/",
        max_retries=1,
        retry_interval=FixedValueRetryIntervalCalculator(0),
    )

    with pytest.raises(DeliveryError, match=r"chat\.postMessage") as caught:
        make_notifier(client, fake_time).post(parent())
    assert caught.value.retryable is True
    assert TOKEN not in str(caught.value)


def test_lookup_user(notifier: SlackNotifier) -> None:
    assert notifier.lookup_user("ada@example.com") == "U0ADA"
    assert notifier.lookup_user("nobody@example.com") is None


def test_pacer_waits_between_posts_to_one_channel_only(fake_time: FakeTime) -> None:
    pacer = ChannelPacer(interval=1.0, sleep=fake_time.sleep, monotonic=fake_time.monotonic)

    assert pacer.wait("D1") == 0.0
    assert pacer.wait("D2") == 0.0
    assert pacer.wait("D1") == 1.0
    fake_time.now += 5
    assert pacer.wait("D1") == 0.0
    assert fake_time.slept == [1.0]


def test_posts_are_paced_per_channel(
    api: FakeSlackAPI, notifier: SlackNotifier, fake_time: FakeTime
) -> None:
    thread = notifier.post(parent(recipient="U1"))
    notifier.post(parent(recipient="U2"))
    assert fake_time.slept == []

    notifier.post(reply(thread))  # same D… channel as the parent, recognised by its id

    assert fake_time.slept == [1.0]


# -- the fake itself ---------------------------------------------------------------------------


def test_fake_accepts_form_encoded_posts(api: FakeSlackAPI) -> None:
    client = make_client(api)
    metadata = '{"event_type": "feedbot_message", "event_payload": {"key": "k"}}'

    answer = client.api_call(
        "chat.postMessage", params={"channel": "C1", "text": "hi", "metadata": metadata}
    )

    assert answer["channel"] == "C1"
    assert api.messages_in("C1")[0]["metadata"]["event_payload"] == {"key": "k"}


def test_fake_hides_metadata_unless_asked(api: FakeSlackAPI) -> None:
    client = make_client(api)
    client.chat_postMessage(
        channel="C1", text="a", metadata={"event_type": "x", "event_payload": {}}
    )

    plain = client.conversations_history(channel="C1")["messages"][0]
    full = client.conversations_history(channel="C1", include_all_metadata=True)["messages"][0]

    assert "metadata" not in plain and full["metadata"]["event_type"] == "x"


def test_fake_assigns_increasing_unique_ts(api: FakeSlackAPI) -> None:
    client = make_client(api)
    stamps = [client.chat_postMessage(channel="C1", text=str(n))["ts"] for n in range(3)]

    assert stamps == ["1700000000.000100", "1700000000.000200", "1700000000.000300"]


def test_fake_records_response_url_posts(api: FakeSlackAPI) -> None:
    response = WebhookClient(api.response_url("T1/42")).send(
        text="on it", response_type="ephemeral"
    )

    assert response.status_code == 200
    assert api.responses[0]["text"] == "on it" and api.responses[0]["_path"] == "/response/T1/42"


def test_fake_answers_auth_test_and_ephemeral(api: FakeSlackAPI) -> None:
    client = make_client(api)

    assert client.auth_test()["user_id"] == api.bot_user_id
    assert client.chat_postEphemeral(channel="C1", user="U1", text="only you")["message_ts"]
