"""The durable state of feedbot: releases, their changes, checks, deliveries and digests.

The database is the source of truth for everything that must survive a crash: a check is
``pending`` until a replica claims it with a lease, a message is an outbox row before it is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Release(Base):
    """One deploy of one service version to one environment."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("service", "version", "environment", "commit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100))
    commit: Mapped[str] = mapped_column(String(64), default="")
    previous_commit: Mapped[str | None] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    author_email: Mapped[str | None] = mapped_column(String(320))
    author_name: Mapped[str | None] = mapped_column(String(200))
    author_github: Mapped[str | None] = mapped_column(String(100))
    author_gitlab: Mapped[str | None] = mapped_column(String(100))
    author_slack: Mapped[str | None] = mapped_column(String(100))
    features: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(String(30))
    deployed_at: Mapped[datetime]
    received_at: Mapped[datetime]
    #: ``active`` while checks run, ``done`` when they ended, ``superseded`` by a newer deploy.
    state: Mapped[str] = mapped_column(String(20), default="active")
    previous_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    is_rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Resolved recipient: a Slack user id, a channel, or None until resolved.
    owner: Mapped[str | None] = mapped_column(String(200))
    owner_reason: Mapped[str | None] = mapped_column(String(100))

    changes: Mapped[list[Change]] = relationship(
        back_populates="release", cascade="all, delete-orphan", order_by="Change.id"
    )
    checks: Mapped[list[Check]] = relationship(
        back_populates="release", cascade="all, delete-orphan", order_by="Check.due_at"
    )


class Change(Base):
    """Code a release changed."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", ondelete="CASCADE"), index=True
    )
    file: Mapped[str | None] = mapped_column(Text)
    functions: Mapped[list[Any]] = mapped_column(default=list)
    lines: Mapped[list[Any]] = mapped_column(default=list)
    #: Changed functions that open a span of their own, so spans would name them when they run.
    traced: Mapped[list[Any]] = mapped_column(default=list)

    release: Mapped[Release] = relationship(back_populates="changes")


class WebhookDelivery(Base):
    """A source's own delivery id, kept so a redelivered webhook is the same release.

    Slack's Socket Mode requests are kept here too (source ``slack``, no release), so a request
    Slack redelivers after a lost acknowledgement is handled once across replicas.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("source", "delivery_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(30))
    delivery_id: Mapped[str] = mapped_column(String(200))
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    received_at: Mapped[datetime]


class Check(Base):
    """One look at a release's traces at ``deployed_at + offset``.

    States: ``pending`` → ``running`` (claimed, with a lease) → ``done`` | ``failed`` |
    ``superseded``. A ``running`` check whose lease ran out is claimable again.
    """

    __tablename__ = "checks"
    __table_args__ = (UniqueConstraint("release_id", "offset_seconds"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", ondelete="CASCADE"), index=True
    )
    offset_seconds: Mapped[int] = mapped_column(BigInteger)
    due_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    release: Mapped[Release] = relationship(back_populates="checks")


class Delivery(Base):
    """An outbox row: one message to send, then where it landed.

    States: ``pending`` → ``sent`` | ``failed``. ``attempts`` counts tries that may have reached
    the notifier; when it is above zero the sender first asks the notifier whether the message
    already arrived, so a crash between sending and recording never sends twice.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", ondelete="CASCADE"), index=True
    )
    check_id: Mapped[int | None] = mapped_column(ForeignKey("checks.id", ondelete="SET NULL"))
    #: ``parent`` (the release's thread head), ``reply``, ``chart`` (an image in the thread,
    #: after its check's reply), ``status`` (update of the parent), ``digest``.
    kind: Mapped[str] = mapped_column(String(20))
    notifier: Mapped[str | None] = mapped_column(String(30))
    recipient: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list[Any]] = mapped_column(default=list)
    broadcast: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(100))
    ts: Mapped[str | None] = mapped_column(String(40))
    thread_ts: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    #: A file to upload instead of posting ``text`` (which is then its alt text): its name in
    #: the thread (unique per key, how a lost answer is found again) and title, and its bytes,
    #: loaded only when the row is sent.
    file_name: Mapped[str | None] = mapped_column(String(200))
    file_title: Mapped[str | None] = mapped_column(String(300))
    file_data: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))


class Digest(Base):
    """A weekly digest for one channel and period; the unique row is the cross-replica lock."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("channel", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))


class Acknowledgement(Base):
    """A finding someone marked "expected": it is not raised again for that release."""

    __tablename__ = "acknowledgements"
    __table_args__ = (UniqueConstraint("release_id", "finding_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", ondelete="CASCADE"), index=True
    )
    #: :attr:`feedbot.analysis.findings.Finding.key` of the finding.
    finding_key: Mapped[str] = mapped_column(String(1000))
    user_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class Mute(Base):
    """A service whose check replies and broadcasts are held back until ``until``."""

    __tablename__ = "mutes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(200), index=True)
    until: Mapped[datetime]
    user_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class ExceptionType(Base):
    """An exception type that one version of a service raised on one span group.

    Written by every check for both versions it looked at, so "never seen before" can mean the
    last few versions and days (§9 of detection-methods.md) rather than only the baseline's
    window. ``count`` is the most spans one check saw raise it; ``first_seen`` and ``last_seen``
    are the times of the checks that saw it first and last.
    """

    __tablename__ = "exception_types"
    __table_args__ = (UniqueConstraint("service", "environment", "version", "span", "type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(200))
    span: Mapped[str] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(300))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class CodeKey(Base):
    """An operation (span group), function or file of a service that a check saw.

    The small catalogue ``/feedback`` resolves a name in: ``short`` is the part people type
    (:func:`feedbot.spans.footprint.short_name`), ``last_seen`` the latest check that saw it.
    """

    __tablename__ = "code_keys"
    __table_args__ = (UniqueConstraint("service", "kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(200))
    #: ``operation``, ``function`` or ``file``.
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(500))
    short: Mapped[str] = mapped_column(String(500), index=True)
    file: Mapped[str | None] = mapped_column(String(500))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class CodeHistory(Base):
    """What one release's latest check saw of one key: the code history's time series.

    A release's checks look at windows that all start at its deploy, so each check replaces
    the row its earlier check wrote: one row per (key, release), ``at`` the check's time and
    ``seconds`` how long the version was seen serving (what ``calls`` is a rate over).
    ``callers`` and ``exceptions`` are ``[[name, spans], ...]``, busiest first; ``insights``
    the kinds of the check's findings about the key. Rows older than
    ``checks.history_retention`` are deleted by the check that finds them.
    """

    __tablename__ = "code_history"
    __table_args__ = (
        UniqueConstraint("key_id", "release_id"),
        Index("ix_code_history_key_at", "key_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("code_keys.id", ondelete="CASCADE"))
    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", ondelete="CASCADE"), index=True
    )
    environment: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(index=True)
    seconds: Mapped[float] = mapped_column(Float)
    calls: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p95_ms: Mapped[float | None] = mapped_column(Float)
    callers: Mapped[list[Any]] = mapped_column(default=list)
    exceptions: Mapped[list[Any]] = mapped_column(default=list)
    insights: Mapped[list[Any]] = mapped_column(default=list)


class Preview(Base):
    """The changed functions a pull request (or a CI run) previewed, with their footprint then.

    One row per service and previewed head commit; a push to the pull request adds a row for its
    new head. ``functions`` holds one object per function (``function``, ``file``, ``usage``,
    ``calls``, ``per_day``, ``p50_ms``, ``p95_ms``, ``error_rate``), so the deploy's check can say
    "previewed in PR #N" and set what the function did then beside what it does now.
    """

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("service", "commit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(200), index=True)
    environment: Mapped[str | None] = mapped_column(String(100))
    commit: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(300))
    pull_request: Mapped[int | None] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(Text)
    functions: Mapped[list[Any]] = mapped_column(default=list)
    #: The pull-request comment feedbot keeps current, once posted.
    comment_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
