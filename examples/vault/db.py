"""The vault's tables (SQLAlchemy 2) and its engine: SQLite by default, PostgreSQL by URL.

``VAULT_DATABASE_URL`` picks the database (``sqlite:///vault.db`` when unset). Both versions of
the application share these tables: a deploy of 2.0.0 keeps 1.0.0's vaults.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import Engine, ForeignKey, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

DEFAULT_URL = "sqlite:///vault.db"


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Vault(Base):
    """A vault at Gringotts: a number, an owner, and the items kept in it."""

    __tablename__ = "vaults"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int | None] = mapped_column(unique=True)  # set once the id is known
    owner: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(default=_now)


class Item(Base):
    """One deposited item, valued in galleons when it was deposited."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    vault_id: Mapped[int] = mapped_column(ForeignKey("vaults.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    weight: Mapped[float]
    value_galleons: Mapped[float]
    deposited_at: Mapped[datetime] = mapped_column(default=_now)


class Appraisal(Base):
    """A finished appraisal of one vault, by the API or by a goblin working a queued job."""

    __tablename__ = "appraisals"

    id: Mapped[int] = mapped_column(primary_key=True)
    vault_id: Mapped[int] = mapped_column(ForeignKey("vaults.id"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(40))
    items: Mapped[int]
    total_galleons: Mapped[float]
    appraised_by: Mapped[str] = mapped_column(String(40))
    appraised_at: Mapped[datetime] = mapped_column(default=_now)


def database_url() -> str:
    """``VAULT_DATABASE_URL``, else a SQLite file in the working directory."""
    return os.environ.get("VAULT_DATABASE_URL") or DEFAULT_URL


def make_engine(url: str) -> Engine:
    """An instrumented engine with the tables created (idempotent)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        # The API and the goblin write to one file from two processes: WAL lets them overlap.
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    # Created before the engine is instrumented: start-up DDL is not what traces are for.
    Base.metadata.create_all(engine)
    # The instrumentation declares SQLAlchemy < 2.1; its engine hooks work on 2.1 as well.
    SQLAlchemyInstrumentor().instrument(engine=engine, skip_dep_check=True)
    return engine


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
