"""SlackNotifier uploads a chart into a thread through the fake's external-upload flow."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from feedbot.digest import chart
from feedbot.errors import DeliveryError
from feedbot.notify.base import Attachment, Message, Receipt
from feedbot.notify.slack import SlackNotifier
from tests.fakes.slack_api import FakeSlackAPI
from tests.unit.notify.test_slack import FakeTime, make_client, make_notifier, parent


@pytest.fixture
def api() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        yield fake


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def notifier(api: FakeSlackAPI, fake_time: FakeTime) -> SlackNotifier:
    return make_notifier(make_client(api), fake_time)


@pytest.fixture(scope="module")
def picture() -> chart.Picture:
    rng = np.random.default_rng(3)
    base = chart.Side("1.0.0", rng.lognormal(np.log(20), 0.4, 300), 300)
    new = chart.Side("2.0.0", rng.lognormal(np.log(56), 0.4, 300), 300)
    return chart.render("GET /vaults/{id}", base, new)


def chart_message(
    thread: Receipt, picture: chart.Picture, key: str = "release:1:check:1:chart:1"
) -> Message:
    name = key.replace(":", "-") + ".png"
    return Message(
        key=key,
        recipient="U1",
        text=picture.alt,
        thread=thread,
        file=Attachment(name, picture.title, picture.png),
    )


def test_a_chart_lands_in_the_thread_with_its_bytes_title_and_alt_text(
    api: FakeSlackAPI, notifier: SlackNotifier, picture: chart.Picture
) -> None:
    head = notifier.post(parent())
    receipt = notifier.post(chart_message(head, picture))

    [upload] = api.uploads
    assert upload["data"] == picture.png
    assert (upload["channel"], upload["thread_ts"]) == (head.channel, head.ts)
    assert upload["title"] == "GET /vaults/{id}: 1.0.0 → 2.0.0"
    assert upload["alt_txt"] == picture.alt
    assert receipt == Receipt(channel=head.channel, ts=upload["id"])
    [asked] = api.calls_to("files.getUploadURLExternal")
    assert int(asked["length"]) == len(picture.png)
    assert asked["filename"] == "release-1-check-1-chart-1.png"
    thread = api.thread(head.channel, head.ts)
    assert [m.get("files", [{}])[0].get("name") for m in thread[1:]] == [
        "release-1-check-1-chart-1.png"
    ]


def test_a_rate_limited_completion_is_retried_and_shares_once(
    api: FakeSlackAPI, notifier: SlackNotifier, picture: chart.Picture
) -> None:
    head = notifier.post(parent())
    api.fail_next("files.completeUploadExternal", retry_after=0)
    notifier.post(chart_message(head, picture))
    assert len(api.uploads) == 1
    assert len(api.calls_to("files.completeUploadExternal")) == 2


def test_a_lost_answer_to_the_completion_is_found_not_shared_again(
    api: FakeSlackAPI, notifier: SlackNotifier, picture: chart.Picture
) -> None:
    head = notifier.post(parent())
    api.lose_answer_next("files.completeUploadExternal", drop=False)  # shared, then HTTP 500
    receipt = notifier.post(chart_message(head, picture))
    [upload] = api.uploads
    assert receipt.ts == upload["id"]
    assert len(api.calls_to("files.completeUploadExternal")) == 1
    assert len(api.calls_to("conversations.replies")) == 1


def test_a_5xx_before_sharing_uploads_again_once(
    api: FakeSlackAPI, notifier: SlackNotifier, picture: chart.Picture
) -> None:
    head = notifier.post(parent())
    api.fail_next("files.completeUploadExternal", status=503)  # not shared
    notifier.post(chart_message(head, picture))
    assert len(api.uploads) == 1
    assert len(api.calls_to("files.getUploadURLExternal")) == 2


def test_a_failed_byte_upload_is_retryable_and_shares_nothing(
    api: FakeSlackAPI, fake_time: FakeTime, picture: chart.Picture
) -> None:
    notifier = make_notifier(make_client(api), fake_time, post_attempts=1)
    head = notifier.post(parent())
    api.fail_next("upload", status=500)
    with pytest.raises(DeliveryError) as info:
        notifier.post(chart_message(head, picture))
    assert info.value.retryable
    assert api.uploads == []
    assert api.calls_to("files.completeUploadExternal") == []


def test_find_looks_for_the_file_by_name(
    api: FakeSlackAPI, notifier: SlackNotifier, picture: chart.Picture
) -> None:
    head = notifier.post(parent())
    first, other = chart_message(head, picture), chart_message(head, picture, key="release:1:x")
    assert notifier.find(first) is None
    receipt = notifier.post(first)
    assert notifier.find(first) == receipt
    assert notifier.find(other) is None


def test_uploads_off_in_the_workspace_fail_for_good(
    api: FakeSlackAPI, notifier: SlackNotifier, picture: chart.Picture
) -> None:
    head = notifier.post(parent())
    api.fail_next("files.getUploadURLExternal", error="file_uploads_disabled")
    with pytest.raises(DeliveryError) as info:
        notifier.post(chart_message(head, picture))
    assert not info.value.retryable
    assert "file_uploads_disabled" in str(info.value)
