"""The weekly digest: once per channel and week across replicas, on its cron, to Slack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from feedbot.checks.digests import WeeklyDigests, last_fire, schedule, start
from feedbot.checks.register import register_release
from feedbot.clock import FixedClock
from feedbot.commands import main
from feedbot.config import Settings, settings_from_mapping
from feedbot.runtime import Runtime, build_runtime
from feedbot.store.models import Check, Delivery, Digest
from tests.factories import event
from tests.fakes.slack_api import FakeSlackAPI

# Monday 2026-11-30 09:00 in Amsterdam is 08:00 UTC.
FIRE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def conf(database_url: str, slack_api: FakeSlackAPI) -> Settings:
    return settings_from_mapping(
        {
            "database_url": database_url,
            "slack": {
                "bot_token": "xoxb-t",
                "signing_secret": "s",
                "api_url": slack_api.base_url,
                "weekly_digest": {
                    "channel": "#feedback",
                    "cron": "0 9 * * mon",
                    "timezone": "Europe/Amsterdam",
                },
            },
            "services": {"vault-service": {"channel": "#vault"}, "ledger": {}},
        },
        {},
    )


@pytest.fixture
def runtimes(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[list[Runtime]]:
    """Two replicas on one database, at the fire time; the week has three releases."""
    settings = conf(fresh_database_url, slack_api)
    built = [build_runtime(settings, clock=FixedClock(FIRE)) for _ in range(2)]
    with built[0].sessions() as session:
        for service, version, env in (
            ("vault-service", "1.4.2", "production"),
            ("ledger", "7", "production"),
            ("ledger", "8", "staging"),
        ):
            ev = event(
                service=service,
                version=version,
                environment=env,
                deployed_at=FIRE - timedelta(days=2),
            )
            rid = register_release(session, ev, settings=settings, now=FIRE).release_id
            for check in session.scalars(select(Check).where(Check.release_id == rid)):
                check.state, check.result = (
                    "done",
                    {"report": {"verdict": "neutral", "findings": []}},
                )
        session.commit()
    yield built
    for runtime in built:
        runtime.engine.dispose()


def digests_of(runtime: Runtime) -> WeeklyDigests:
    return WeeklyDigests(sessions=runtime.sessions, settings=runtime.settings, clock=runtime.clock)


def test_each_channel_gets_one_digest_even_with_two_replicas_and_a_rerun(
    runtimes: list[Runtime], slack_api: FakeSlackAPI
) -> None:
    first, second = runtimes
    assert digests_of(first).run_due() == 2  # #vault (vault-service) and #feedback (ledger)
    assert digests_of(second).run_due() == 0  # the other replica lost the insert
    assert digests_of(first).run_due() == 0  # a restart at the same time
    for runtime in runtimes:
        runtime.tick()
    posts = [p for p in slack_api.calls_to("chat.postMessage") if p["channel"].startswith("#")]
    assert sorted(p["channel"] for p in posts) == ["#feedback", "#vault"]  # DMs aside
    vault = slack_api.messages_in("#vault")[0]
    assert "vault-service" in json.dumps(vault["blocks"]) and "ledger" not in vault["text"]
    feedback = json.dumps(slack_api.messages_in("#feedback")[0]["blocks"], ensure_ascii=False)
    assert "*ledger*: 7 ✅ looks fine" in feedback and "8" not in feedback.split("Releases")[1][:40]
    with first.sessions() as session:
        rows = session.scalars(select(Digest).order_by(Digest.channel)).all()
        assert [(d.channel, d.period) for d in rows] == [
            ("#feedback", "2026-11-30"),
            ("#vault", "2026-11-30"),
        ]
        assert all(session.get(Delivery, d.delivery_id).state == "sent" for d in rows)  # type: ignore[union-attr]


def test_a_replica_down_at_the_fire_time_catches_up_within_hours_only(
    runtimes: list[Runtime],
) -> None:
    runtime = runtimes[0]
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    clock.set(FIRE - timedelta(minutes=1))
    assert last_fire(runtime.settings, clock.now()) == FIRE - timedelta(days=7)
    clock.set(FIRE + timedelta(hours=13))  # too late: next week's digest will say it
    assert digests_of(runtime).run_due() == 0
    clock.set(FIRE + timedelta(hours=3))
    assert digests_of(runtime).run_due() == 2


def test_the_cron_job_fires_in_the_configured_time_zone(runtimes: list[Runtime]) -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    job = schedule(scheduler, digests_of(runtimes[0]), runtimes[0].settings)
    nxt = job.trigger.get_next_fire_time(None, FIRE - timedelta(hours=1))
    assert nxt == FIRE and str(nxt.tzinfo) == "Europe/Amsterdam"
    assert job.coalesce is True and job.max_instances == 1


def test_cli_dry_run_prints_and_records_nothing(
    tmp_path: Path,
    fresh_database_url: str,
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = conf(fresh_database_url, slack_api)
    runtime = build_runtime(settings)
    now = datetime.now(UTC)
    with runtime.sessions() as session:
        ev = event(deployed_at=now - timedelta(days=1))
        register_release(session, ev, settings=settings, now=now)
    runtime.engine.dispose()
    config = tmp_path / "feedbot.yaml"
    raw: dict[str, Any] = {
        "database_url": fresh_database_url,
        "services": {"vault-service": {"channel": "#vault"}},
    }
    config.write_text(json.dumps(raw))
    assert main(["digest", "--weekly", "--dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "=== #vault ===" in out and "vault-service: 1.4.2 ⏳ not checked yet" in out
    assert slack_api.calls == []
    runtime = build_runtime(settings)
    with runtime.sessions() as session:
        assert session.scalars(select(Digest)).all() == []
        assert session.scalars(select(Delivery).where(Delivery.kind == "digest")).all() == []
    runtime.engine.dispose()


def test_start_schedules_the_cron_and_catches_up_a_missed_digest_at_once(
    runtimes: list[Runtime],
) -> None:
    runtime = runtimes[0]
    assert isinstance(runtime.clock, FixedClock)
    runtime.clock.set(FIRE + timedelta(hours=1))  # the replica was down at 09:00 Amsterdam
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    try:
        start(scheduler, sessions=runtime.sessions, settings=runtime.settings, clock=runtime.clock)
        assert {job.id for job in scheduler.get_jobs()} >= {"weekly-digest"}
        deadline = time.monotonic() + 10
        while len(digest_rows(runtime)) < 2:
            assert time.monotonic() < deadline, "the missed digest was not caught up"
            time.sleep(0.05)
    finally:
        scheduler.shutdown()
    assert [d.period for d in digest_rows(runtime)] == ["2026-11-30", "2026-11-30"]


def digest_rows(runtime: Runtime) -> list[Digest]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Digest)))


def test_a_biweekly_digest_covers_two_weeks_fires_every_other_week_and_links_its_meeting(
    fresh_database_url: str, slack_api: FakeSlackAPI
) -> None:
    settings = settings_from_mapping(
        {
            "database_url": fresh_database_url,
            "public_url": "https://feedbot.example",
            "web": {"page_secret": "a-page-secret-of-some-length"},
            "slack": {
                "bot_token": "xoxb-t",
                "signing_secret": "s",
                "api_url": slack_api.base_url,
                "weekly_digest": {
                    "channel": "#feedback",
                    "cadence": "biweekly",
                    "meeting_link": "https://meet.example/feedback",
                },
            },
        },
        {},
    )
    fire = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday of an even week since 1970-01-05
    runtime = build_runtime(settings, clock=FixedClock(fire))
    try:
        with runtime.sessions() as session:
            for version, days in (("1", 10), ("2", 3), ("3", 20)):
                ev = event(version=version, deployed_at=fire - timedelta(days=days))
                register_release(session, ev, settings=settings, now=fire)
            session.commit()
        [message] = digests_of(runtime).build(fire)["#feedback"]
        text = json.dumps(message.blocks, ensure_ascii=False)
        assert "two weeks to Mon Dec 07" in text
        assert "3 releases" not in text and "2 releases" in text  # 3 and 10 days ago, not 20
        assert "|Join the meeting>" in text and "https://meet.example/feedback" in text
        assert "https://feedbot.example/meeting?until=2026-12-07T09%3A00Z&t=" in text
        # The week after is not a meeting week: nothing is queued; two weeks after, it is.
        from feedbot.checks.digests import meeting_week

        assert meeting_week("biweekly", fire)
        assert not meeting_week("biweekly", fire + timedelta(days=7))
        assert meeting_week("biweekly", fire + timedelta(days=14))
        assert meeting_week("weekly", fire + timedelta(days=7))
        clock = runtime.clock
        assert isinstance(clock, FixedClock)
        clock.set(fire + timedelta(days=7, minutes=5))
        assert digests_of(runtime).run_due() == 0
        clock.set(fire + timedelta(days=14, minutes=5))
        assert digests_of(runtime).run_due() == 1
    finally:
        runtime.engine.dispose()
