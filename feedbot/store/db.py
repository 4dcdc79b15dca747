"""Engines, sessions and migrations."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker

#: What the database raises while it cannot serve: down, restarting, a connection lost (its
#: server ended it, "terminating connection due to administrator command"), a lock wait given
#: up, or no pooled connection free in time. All are worth trying again a little later, so the
#: web layer answers them with a retryable 503 and the ticker just waits for its next run.
UNAVAILABLE: tuple[type[Exception], ...] = (exc.OperationalError, exc.TimeoutError)

#: Seconds to wait for a PostgreSQL server to accept a connection. Without a limit a server that
#: is unreachable (not refusing: gone) holds every request, and /readyz, for minutes.
CONNECT_TIMEOUT = 5


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    Args:
        url: the database URL.
        immediate: on SQLite, start every transaction with ``BEGIN IMMEDIATE``. A deferred
            transaction that reads and then writes cannot wait for the lock (SQLite answers
            "database is locked" at once when another connection wrote meanwhile); an
            immediate one waits up to the busy timeout. Use False for engines that only read
            in long transactions or only insert (the embedded trace store).
    """
    if url.startswith("sqlite"):
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # pysqlite's own transaction handling breaks SAVEPOINTs; SQLAlchemy's documented
            # fix is to turn it off and emit BEGIN ourselves (see the "begin" hook below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if ":memory:" not in url:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection):  # type: ignore[no-untyped-def]
            connection.exec_driver_sql(begin)

        return engine
    # pool_pre_ping: after the server restarts, every pooled connection is dead; each is tested
    # on checkout and replaced, so the first transactions after an outage do not fail.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory that keeps loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied to the database behind ``engine``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "feedbot.store:migrations")
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together on a fresh database would race on the upgrade; the
            # transaction-scoped advisory lock makes the others wait, then find nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(7318004)"))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def ping(engine: Engine) -> None:
    """Run a trivial query; raises when the database does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
