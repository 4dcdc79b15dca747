"""ConsoleNotifier: the default notifier when no Slack token is configured."""

from __future__ import annotations

import io
from pathlib import Path

from feedbot.notify.base import Attachment, Message, Notifier, Receipt
from feedbot.notify.console import ConsoleNotifier


def make() -> tuple[ConsoleNotifier, io.StringIO]:
    stream = io.StringIO()
    return ConsoleNotifier(stream), stream


def test_console_notifier_conforms_to_protocol() -> None:
    assert isinstance(make()[0], Notifier)


def test_post_writes_recipient_and_text_and_counts_receipts() -> None:
    notifier, stream = make()

    first = notifier.post(Message(key="release:1", recipient="U1", text="payments 1.4.2 is live"))
    second = notifier.post(Message(key="release:2", recipient="U2", text="search 2.0 is live"))

    assert first == Receipt(channel="U1", ts="console-1")
    assert second == Receipt(channel="U2", ts="console-2")
    assert stream.getvalue() == (
        "=== feedbot -> U1 ===\npayments 1.4.2 is live\n\n"
        "=== feedbot -> U2 ===\nsearch 2.0 is live\n\n"
    )


def test_reply_is_marked_with_its_thread() -> None:
    notifier, stream = make()
    thread = notifier.post(Message(key="release:1", recipient="U1", text="live"))

    notifier.post(
        Message(
            key="release:1:check:1", recipient="U1", text="p95 +12%", thread=thread, broadcast=True
        )
    )

    assert (
        "(reply in thread U1/console-1, also sent to the channel)\np95 +12%\n" in stream.getvalue()
    )


def test_update_writes_a_status_line() -> None:
    notifier, stream = make()

    notifier.update(
        Receipt("U1", "console-1"), Message(key="k", recipient="U1", text="2 checks ran")
    )

    assert stream.getvalue() == "[status update] U1/console-1: 2 checks ran\n"


def test_cannot_look_back_or_up() -> None:
    notifier, _ = make()
    message = Message(key="release:1", recipient="U1", text="live")
    notifier.post(message)

    assert notifier.find(message) is None
    assert notifier.lookup_user("ada@example.com") is None


def test_a_file_is_saved_next_to_the_output_and_named_in_it(tmp_path: Path) -> None:
    stream = io.StringIO()
    notifier = ConsoleNotifier(stream, files_dir=tmp_path)
    png = b"\x89PNG\r\n\x1a\n-not-really"
    chart = Attachment("release-1-check-2-chart-1.png", "GET /x: 1.0 → 2.0", png)
    thread = Receipt(channel="U1", ts="console-1")
    message = Message(
        key="k", recipient="U1", text="Request times of GET /x", thread=thread, file=chart
    )

    receipt = notifier.post(message)

    saved = tmp_path / "release-1-check-2-chart-1.png"
    assert saved.read_bytes() == png
    assert receipt == Receipt(channel="U1", ts="console-1")
    assert f"[image: {saved} — GET /x: 1.0 → 2.0]\nRequest times of GET /x" in stream.getvalue()


def test_a_file_name_cannot_leave_the_files_directory(tmp_path: Path) -> None:
    inner = tmp_path / "out"
    inner.mkdir()
    notifier = ConsoleNotifier(io.StringIO(), files_dir=inner)
    notifier.post(
        Message(key="k", recipient="U1", text="t", file=Attachment("../x.png", "x", b"1"))
    )
    assert (inner / "x.png").read_bytes() == b"1"
    assert not (tmp_path / "x.png").exists()
