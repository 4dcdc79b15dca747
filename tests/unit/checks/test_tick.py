"""One tick of the background work: checks and sends alternate, so messages don't wait."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from feedbot.checks.register import register_release
from feedbot.checks.ticker import CHECK_BATCH, start_ticker
from feedbot.clock import FixedClock
from feedbot.runtime import build_runtime
from feedbot.store import db
from tests.factories import DEPLOYED, event, settings


def test_a_backlog_of_checks_does_not_hold_back_the_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = settings(database_url=f"sqlite:///{tmp_path / 'f.db'}", checks={"after": ["15m"]})
    runtime = build_runtime(conf, clock=FixedClock(DEPLOYED + timedelta(days=1)))
    db.migrate(runtime.engine)
    releases = 2 * CHECK_BATCH + 5
    with runtime.sessions() as session:
        for n in range(releases):
            register_release(session, event(service=f"svc-{n}"), settings=conf, now=DEPLOYED)
    events: list[str] = []
    run_one, send_due = runtime.runner.run_one, runtime.sender.send_due

    def checked(check_id: int) -> None:
        events.append("check")
        run_one(check_id)

    def sent(*args: object, **kwargs: object) -> object:
        report = send_due(*args, **kwargs)  # type: ignore[arg-type]
        events.append(f"send {report.sent}")
        return report

    monkeypatch.setattr(runtime.runner, "run_one", checked)
    monkeypatch.setattr(runtime.sender, "send_due", sent)
    try:
        runtime.tick()
    finally:
        runtime.engine.dispose()

    assert events.count("check") == releases
    last_check = len(events) - 1 - events[::-1].index("check")
    sent_before = [e for e in events[:last_check] if e.startswith("send ") and e != "send 0"]
    assert sent_before, events  # messages went out while checks were still due
    assert events[-1].startswith("send")  # and the last batch's were sent in the same tick


def test_a_slow_tick_does_not_log_a_warning_per_skipped_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = threading.Event()
    scheduler = start_ticker(lambda: slow.wait(1.0), timedelta(seconds=0.1))
    try:
        with caplog.at_level(logging.WARNING, logger="apscheduler"):
            time.sleep(0.8)  # the first tick is still running through several intervals
    finally:
        slow.set()
        scheduler.shutdown(wait=True)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # Other jobs' skipped runs are still told.
    other = logging.LogRecord(
        "apscheduler.scheduler",
        logging.WARNING,
        __file__,
        1,
        'Execution of job "weekly-digest" skipped: maximum number of running instances reached',
        None,
        None,
    )
    assert logging.getLogger("apscheduler.scheduler").filter(other)
