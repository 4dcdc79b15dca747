"""Recording a check's outcome: the check row, the exception history and the messages it causes.

All of it is written in the caller's transaction, and only while this replica still holds the
check's lease, which is re-asserted atomically first; a replica that lost the check writes
nothing. Messages are queued in the outbox, never sent from here.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from feedbot import failpoints
from feedbot.checks import preview
from feedbot.checks.pipeline import Finished
from feedbot.clock import Clock
from feedbot.config import Settings
from feedbot.digest import blocks, text
from feedbot.digest.links import PageLinks
from feedbot.durations import format_duration
from feedbot.notify.base import Attachment
from feedbot.notify.outbox import enqueue
from feedbot.releases.owners import NOBODY, home_viewers
from feedbot.retry import backoff
from feedbot.store import acknowledgements as state
from feedbot.store import history, queries
from feedbot.store.models import Check, Release

log = logging.getLogger(__name__)
#: The plain-text fallback is the notification text; Slack takes up to 40,000 characters.
MAX_TEXT = 39_000


class CheckRecorder:
    """Commits the outcome of the checks one replica runs.

    Args:
        settings: validated configuration (lease, retries, services, trace UI link).
        clock: time source.
        worker: this replica's name, the one its claimed checks carry.
    """

    def __init__(self, *, settings: Settings, clock: Clock, worker: str) -> None:
        self._settings = settings
        self._clock = clock
        self._worker = worker

    def finish(self, session: Session, check: Check, done: Finished) -> str:
        """Mark ``check`` done, note the exception types it saw, and queue its messages.

        Returns:
            ``"done"``, or ``"superseded"`` (nothing written) when another replica took the
            check over.
        """
        if not self._owns(session, check):
            session.rollback()
            return "superseded"
        now = self._clock.now()
        release = check.release
        held = [f.key for f in done.analysis.findings if f.tested]
        check.state, check.finished_at = "done", now
        # With the look's own host spread, which the service's later checks pool.
        spread = {"tau": done.tau} if done.tau is not None else {}
        check.result = {"report": done.report, "held": held, **spread}
        check.lease_until = None
        queries.record_exception_types(
            session,
            service=release.service,
            environment=release.environment,
            seen=done.exceptions,
            now=now,
        )
        self._record_history(session, release, done, now)
        self._queue_reply(session, release, check, done, now)
        self._queue_status(session, release, check, now)
        self._queue_home(session, release, check, now)
        failpoints.hit("check-before-commit")
        session.commit()
        log.info("check %d of release %d done by %s", check.id, release.id, self._worker)
        failpoints.hit("check-committed")
        return "done"

    def _record_history(
        self, session: Session, release: Release, done: Finished, now: datetime
    ) -> None:
        """Keep what the check saw per operation, function and file; forget the expired."""
        history.record(
            session,
            release_id=release.id,
            service=release.service,
            environment=release.environment,
            version=release.version,
            at=now,
            seconds=done.serving_seconds,
            prints=done.footprints,
        )
        history.prune(session, now - self._settings.checks.history_retention)

    def fail(self, session: Session, check: Check, error: str) -> str:
        """Retry ``check`` later with backoff, or fail it for good and say so in its thread.

        Returns:
            ``"retried"``, ``"failed"``, or ``"superseded"`` (nothing written) when another
            replica took the check over.
        """
        if not self._owns(session, check):
            session.rollback()
            return "superseded"
        now = self._clock.now()
        check.attempts += 1
        check.last_error = error[:2000]
        check.lease_until = None
        if check.attempts < self._settings.checks.max_attempts:
            delay = backoff(
                self._settings.checks.retry_backoff, check.attempts, cap=timedelta(hours=1)
            )
            check.state, check.due_at = "pending", now + delay
            log.warning(
                "check %s failed (try %d), again at %s: %s",
                check.id,
                check.attempts,
                check.due_at,
                error,
            )
            session.commit()
            return "retried"
        check.state, check.finished_at = "failed", now
        release = check.release
        offset = timedelta(seconds=check.offset_seconds)
        enqueue(
            session,
            key=f"release:{release.id}:check:{check.id}:failed",
            kind="reply",
            recipient=release.owner or NOBODY,
            text=text.check_failed(release, offset, check.attempts, error),
            now=now,
            release=release,
            check_id=check.id,
        )
        self._queue_status(session, release, check, now)
        log.error("check %s (+%s) failed for good: %s", check.id, format_duration(offset), error)
        session.commit()
        return "failed"

    def _owns(self, session: Session, check: Check) -> bool:
        """Re-assert the lease atomically; False when another replica took the check over.

        The release is locked first (release, then check: one order, no deadlock): a
        recording counts the release's finished checks, and two at once would each count the
        other unfinished (the parent stuck at "1 of 2 checks done", the release never done).
        """
        queries.lock_release(session, check.release_id)
        until = self._clock.now() + self._settings.checks.lease
        return queries.renew_check_lease(session, check, worker=self._worker, until=until)

    def _queue_reply(
        self, session: Session, release: Release, check: Check, done: Finished, now: datetime
    ) -> None:
        """The thread reply, and a broadcast of alarms not broadcast before for this release."""
        offset = timedelta(seconds=check.offset_seconds)
        earlier = previous_reply(session, release, check)
        options = blocks.ReplyOptions(
            heading=f"+{format_duration(offset)} check of {text.release_title(release)}",
            ui_url=self._settings.traces.ui_url,
            release_id=release.id,
            acknowledged=state.acknowledged(session, release.id),
            previous=earlier.result["report"].get("findings", []) if earlier else None,  # type: ignore[index]
            since=f"+{format_duration(timedelta(seconds=earlier.offset_seconds))} check"
            if earlier
            else "the last check",
            check_id=check.id,
            page_url=PageLinks.from_settings(self._settings).release(release.id, now),
        )
        fresh = _fresh_alarms(session, release, done.report, options.acknowledged)
        muted = self._muted(session, release, check, now)
        check.result = {**(check.result or {}), "broadcast": sorted(fresh), "posted": not muted}
        if muted:
            return
        channel = self._broadcast_channel(release) if fresh else None
        reply = blocks.check_reply(done.report, options)
        body, reply_blocks = text.check_reply(release, offset, done.text), list(reply.blocks)
        previewed = preview.after_deploy(session, release, done.analysis.reach, offset)
        if previewed:  # "Previewed in PR #N": how the functions the preview named did
            body += "\n\n" + previewed
            if len(reply_blocks) < 50:
                at = len(reply_blocks) - (reply_blocks[-1].get("type") == "actions")
                section = {"type": "section", "text": {"type": "mrkdwn", "text": previewed[:2900]}}
                reply_blocks.insert(max(at, 0), section)
        enqueue(
            session,
            key=f"release:{release.id}:check:{check.id}",
            kind="reply",
            recipient=release.owner or NOBODY,
            text=body[:MAX_TEXT],
            blocks=reply_blocks,
            broadcast=channel is not None and channel == release.owner,
            now=now,
            release=release,
            check_id=check.id,
        )
        self._queue_charts(session, release, check, done, now)
        if channel is not None and channel != release.owner:
            post = blocks.broadcast(done.report, options, owner=release.owner)
            # Not tied to the release: a release's messages all go to the owner's thread.
            key = f"release:{release.id}:check:{check.id}:broadcast"
            enqueue(session, key=key, kind="broadcast", recipient=channel, text=post.text,
                    blocks=post.blocks, now=now)  # fmt: skip

    @staticmethod
    def _queue_charts(
        session: Session, release: Release, check: Check, done: Finished, now: datetime
    ) -> None:
        """The check's charts, each its own outbox row after the reply, so they follow it in
        the thread; the result remembers what was charted (see :mod:`feedbot.checks.charts`)."""
        for number, drawn in enumerate(done.charts, start=1):
            key = f"release:{release.id}:check:{check.id}:chart:{number}"
            enqueue(
                session,
                key=key,
                kind="chart",
                recipient=release.owner or NOBODY,
                text=drawn.alt,
                file=Attachment(key.replace(":", "-") + ".png", drawn.title, drawn.png),
                now=now,
                release=release,
                check_id=check.id,
            )
        charted = [drawn.ident for drawn in done.charts]
        check.result = {**(check.result or {}), "charts": charted}

    @staticmethod
    def _muted(session: Session, release: Release, check: Check, now: datetime) -> bool:
        until = state.muted_until(session, release.service, now)
        if until is not None:
            log.info("%s is muted until %s: check %d not posted", release.service, until, check.id)
        return until is not None

    def _broadcast_channel(self, release: Release) -> str | None:
        """The service's channel when broadcasting is on for it, else None."""
        service = self._settings.services.get(release.service)
        if service is None or not service.broadcast or not service.channel:
            return None
        return service.channel

    def _queue_home(self, session: Session, release: Release, check: Check, now: datetime) -> None:
        """Republish the Home tab of everyone it shows the release to (with Slack only).

        The row carries no view: the sender renders it when it publishes (see
        :mod:`feedbot.notify.outbox`), so the tab shows the store as it is then.
        """
        if not self._settings.slack.bot_token:
            return
        people = (release.author_slack, release.owner)
        for user in home_viewers(release.service, people, self._settings):
            enqueue(session, key=f"home:{user}:check:{check.id}", kind="home", recipient=user,
                    text=f"Home tab of {user}", now=now, check_id=check.id)  # fmt: skip

    def _queue_status(
        self, session: Session, release: Release, check: Check, now: datetime
    ) -> None:
        checks = queries.release_checks(session, release.id)
        done = sum(c.state == "done" for c in checks)
        failed = sum(c.state == "failed" for c in checks)
        if done + failed == len(checks) and release.state == "active":
            release.state = "done"
        status = release_status(session, release, checks)
        offsets = [timedelta(seconds=c.offset_seconds) for c in checks]
        parent = text.release_parent(release, offsets)
        enqueue(
            session,
            key=f"release:{release.id}:status:{check.id}",
            kind="status",
            recipient=release.owner or NOBODY,
            text=f"{parent}\n{status}",
            # The same blocks as the first DM, links included, with the new status line.
            blocks=blocks.release_announcement(release, offsets, status=status).blocks,
            now=now,
            release=release,
            check_id=check.id,
        )


def previous_reply(session: Session, release: Release, check: Check) -> Check | None:
    """The latest earlier check of the release whose reply was posted (not muted)."""
    earlier = [
        c
        for c in queries.release_checks(session, release.id)
        if c.id != check.id
        and c.state == "done"
        and c.offset_seconds < check.offset_seconds
        and c.result
        and c.result.get("posted", True)
        and isinstance(c.result.get("report"), dict)
    ]
    return max(earlier, key=lambda c: c.offset_seconds, default=None)


def release_status(
    session: Session, release: Release, checks: Sequence[Check], *, newer: Release | None = None
) -> str:
    """The parent's status line: watching, the last verdict, or a final state.

    Args:
        session: the store, where the release that superseded ``release`` is read from.
        release: the release whose thread it is.
        checks: its checks.
        newer: the release that superseded it, when the caller holds it (one that a Core
            INSERT wrote is not in the session).
    """
    done = sum(c.state == "done" for c in checks)
    failed = sum(c.state == "failed" for c in checks)
    finished = [c for c in checks if c.state == "done" and c.result]
    verdict = finished[-1].result["report"].get("verdict") if finished else None  # type: ignore[index]
    if newer is None and release.superseded_by_id:
        newer = session.get(Release, release.superseded_by_id)
    if release.state == "superseded" and newer is not None:
        return text.superseded_status(newer.version, verdict, done, len(checks))
    return text.status_line(verdict, done, len(checks), failed)


def _fresh_alarms(
    session: Session, release: Release, report: dict[str, Any], acknowledged: Collection[str]
) -> set[str]:
    """Keys of this report's alarms that no earlier check of the release broadcast."""
    seen: set[str] = set(acknowledged)
    for earlier in queries.release_checks(session, release.id):
        if earlier.state == "done" and earlier.result:
            seen.update(earlier.result.get("broadcast", []))
    alarms = {blocks.finding_key(f) for f in report.get("findings", []) if blocks.is_alarm(f)}
    return alarms - seen
