"""The weekly digest job: which releases a channel's week holds, queued once across replicas.

This is the I/O side of :mod:`feedbot.digest.weekly` (which stays pure); ``feedbot digest``
(:mod:`feedbot.commands.digest`) runs it by hand. Exactly once across
replicas and restarts: for each channel and period a :class:`~feedbot.store.models.Digest` row is
inserted under its unique (channel, period) constraint in the same transaction as the outbox rows
of the messages; the replica whose insert wins sends it, through the outbox like every message.
The cron trigger (``slack.weekly_digest.cron`` in its ``timezone``) only ticks; a replica that was
down at the fire time catches up within :data:`CATCH_UP` when it starts (:meth:`run_due`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock
from feedbot.config import Settings
from feedbot.digest.blocks import Rendered
from feedbot.digest.links import PageLinks
from feedbot.digest.weekly import CodeWeek, Hot, Unreached, WeekRelease, render
from feedbot.notify.outbox import enqueue
from feedbot.store import history, queries
from feedbot.store.models import Release

log = logging.getLogger(__name__)

#: How late a missed fire time is still sent (a replica restarting after the cron time).
CATCH_UP = timedelta(hours=12)
WEEK = timedelta(days=7)
#: How far back the code view looks for changed code never reached since it shipped, and for
#: code that runs only in production.
SHIPPED = timedelta(days=28)


class WeeklyDigests:
    """Builds and queues one weekly digest per team channel.

    Args:
        sessions: session factory of the store.
        settings: services (their channels and environments) and ``slack.weekly_digest``.
        clock: time source.
    """

    def __init__(
        self, *, sessions: sessionmaker[Session], settings: Settings, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock

    def run_due(self) -> int:
        """Queue the digest of the latest fire time if it was missed; returns digests queued."""
        now = self._clock.now()
        fire = last_fire(self._settings, now)
        if fire is None or now - fire > CATCH_UP:
            return 0
        if not meeting_week(self._settings.slack.weekly_digest.cadence, fire):
            return 0
        return self.queue(fire)

    def queue(self, fire: datetime) -> int:
        """Queue the digests of the week ending at ``fire`` that no replica queued before."""
        queued = 0
        for channel, messages in self.build(fire).items():
            queued += self._claim_and_queue(channel, fire.date().isoformat(), messages)
        return queued

    def build(self, end: datetime) -> dict[str, list[Rendered]]:
        """Every channel's digest for the period before ``end`` (a week, or two with
        ``cadence: biweekly``), rendered but not sent; each links the meeting's page."""
        conf = self._settings.slack.weekly_digest
        by_channel: dict[str, list[WeekRelease]] = {}
        shipped: dict[str, list[Release]] = {}
        code: dict[str, CodeWeek] = {}
        with self._sessions() as session:
            for release in queries.releases_between(session, end - max(SHIPPED, conf.period), end):
                channel = self._channel(release)
                if channel is None or not self._watched(release):
                    continue
                shipped.setdefault(channel, []).append(release)
                if release.deployed_at >= end - conf.period:
                    by_channel.setdefault(channel, []).append(_week_release(release))
            for channel, releases in shipped.items():
                code[channel] = self._code_week(session, releases, end, conf.period)
        default = self._settings.slack.weekly_digest.channel
        if default and default not in by_channel:
            by_channel[default] = []
        period = f"{'two weeks' if conf.cadence == 'biweekly' else 'week'} to {end:%a %b %d}"
        page = PageLinks.from_settings(self._settings).meeting(self._clock.now(), until=end)
        return {
            channel: render(
                channel, period, rows, code.get(channel), page=page, call=conf.meeting_link
            )
            for channel, rows in by_channel.items()
        }

    def _code_week(
        self, session: Session, releases: Sequence[Release], end: datetime, period: timedelta
    ) -> CodeWeek:
        """The code view of a channel's releases of the last :data:`SHIPPED`, from the history."""
        services = sorted({r.service for r in releases})
        traced = history.instrumented(session, services)
        unreached: dict[tuple[str, str], Unreached] = {}
        for release in sorted(releases, key=lambda r: r.deployed_at, reverse=True):
            if release.service not in traced:
                continue  # its spans name no function: "never reached" would be a guess
            names = {str(f) for c in release.changes for f in c.functions or ()}
            calls = history.reached(session, release.service, names, release.deployed_at)
            for name in sorted(n for n, count in calls.items() if count == 0):
                key = (release.service, name)
                unreached.setdefault(
                    key, Unreached(release.service, release.version, name, release.deployed_at)
                )
        week = [r for r in releases if r.deployed_at >= end - period]
        changed = {(r.service, str(f)) for r in week for c in r.changes for f in c.functions or ()}
        busy = history.busiest(session, services, end - period)
        hottest = [
            Hot(b.service, b.name, b.per_day)
            for b in busy
            if any(s == b.service and history.same_function(f, {b.name}) for s, f in changed)
        ]
        return CodeWeek(
            unreached=list(unreached.values()),
            hottest=hottest,
            production_only=self._production_only(session, services, end),
        )

    def _production_only(
        self, session: Session, services: Sequence[str], end: datetime
    ) -> list[Hot]:
        """Functions (then operations) that ran only in their service's watched environment in
        the last :data:`SHIPPED`, though the service was deployed to others too."""
        deployed = history.environments_of(session, services)
        out = []
        for kind in ("function", "operation"):
            for b in history.busiest(session, services, end - SHIPPED, kind=kind):
                main = self._environment(b.service)
                others = sorted(deployed.get(b.service, set()) - {main})
                if others and set(b.environments) == {main}:
                    out.append(Hot(b.service, b.name, b.per_day, tuple(others)))
        return out

    def _environment(self, service: str) -> str:
        conf = self._settings.services.get(service)
        return (conf.environment if conf else None) or "production"

    def _channel(self, release: Release) -> str | None:
        service = self._settings.services.get(release.service)
        return (service.channel if service else None) or self._settings.slack.weekly_digest.channel

    def _watched(self, release: Release) -> bool:
        return release.environment == self._environment(release.service)

    def _claim_and_queue(self, channel: str, period: str, messages: Sequence[Rendered]) -> int:
        now = self._clock.now()
        with self._sessions() as session:
            try:
                row = queries.add_digest(session, channel=channel, period=period, now=now)
                for i, message in enumerate(messages):
                    delivery = enqueue(
                        session,
                        key=f"digest:{channel}:{period}:{i}",
                        kind="digest",
                        recipient=channel,
                        text=message.text,
                        blocks=message.blocks,
                        now=now,
                    )
                    row.delivery_id = row.delivery_id or delivery.id
                session.commit()
            except IntegrityError:
                session.rollback()
                log.info("digest for %s, %s was already queued by a replica", channel, period)
                return 0
        log.info("digest for %s, %s queued (%d messages)", channel, period, len(messages))
        return 1


#: A Monday: every other week counts from the week it starts.
_EPOCH_MONDAY = datetime(1970, 1, 5).date()


def meeting_week(cadence: str, fire: datetime) -> bool:
    """Whether a digest fires in ``fire``'s week: always when weekly; when biweekly, in the
    even weeks since Monday 1970-01-05 (the same weeks on every replica, across years)."""
    if cadence != "biweekly":
        return True
    return ((fire.date() - _EPOCH_MONDAY).days // 7) % 2 == 0


def last_fire(settings: Settings, now: datetime) -> datetime | None:
    """The latest fire time of ``slack.weekly_digest.cron`` at or before ``now``, within a week."""
    from apscheduler.triggers.cron import CronTrigger

    conf = settings.slack.weekly_digest
    trigger = CronTrigger.from_crontab(conf.cron, timezone=conf.timezone)
    fire: datetime | None = trigger.get_next_fire_time(None, now - WEEK)
    last = None
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


def schedule(scheduler: Any, digests: WeeklyDigests, settings: Settings) -> Any:
    """Add the weekly digest to an APScheduler 3 scheduler, on the configured cron and zone.

    Args:
        scheduler: a ``BackgroundScheduler`` (the one that ticks the checks).
        digests: what the job runs.
        settings: ``slack.weekly_digest.cron`` and ``timezone``.

    Returns:
        The APScheduler job.
    """
    from apscheduler.triggers.cron import CronTrigger

    conf = settings.slack.weekly_digest
    trigger = CronTrigger.from_crontab(conf.cron, timezone=conf.timezone)
    return scheduler.add_job(
        digests.run_due,
        trigger,
        id="weekly-digest",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )


def start(
    scheduler: Any, *, sessions: sessionmaker[Session], settings: Settings, clock: Clock
) -> WeeklyDigests:
    """Schedule the weekly digest on ``scheduler`` and catch up a missed one; for ``serve``.

    Args:
        scheduler: the running ``BackgroundScheduler`` of the replica.
        sessions: session factory of the store.
        settings: services, channels and ``slack.weekly_digest``.
        clock: time source.

    Returns:
        The digests object the job runs.
    """
    digests = WeeklyDigests(sessions=sessions, settings=settings, clock=clock)
    schedule(scheduler, digests, settings)
    scheduler.add_job(digests.run_due, id="weekly-digest-catch-up", replace_existing=True)
    return digests


def _week_release(release: Release) -> WeekRelease:
    done = [c for c in release.checks if c.state == "done" and c.result]
    report = max(done, key=lambda c: c.offset_seconds).result if done else None
    return WeekRelease(
        service=release.service,
        version=release.version,
        deployed_at=release.deployed_at,
        report=(report or {}).get("report"),
        rollback=release.is_rollback,
    )
