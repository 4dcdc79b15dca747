"""Shared fixtures: a clean environment, clocks, and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import FixedClock
from feedbot.store.db import make_engine, migrate
from tests.fakes.slack_api import slack_api  # noqa: F401  (a fixture)


def _find_fixtures() -> Path:
    """``shared/fixtures`` beside the checkout (or above it), else the workplace's copy."""
    if os.environ.get("FEEDBOT_FIXTURES"):
        return Path(os.environ["FEEDBOT_FIXTURES"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "fixtures"
        if candidate.is_dir():
            return candidate
    return Path("/work/shared/fixtures")


FIXTURES = _find_fixtures()
PG_ADMIN_URL = os.environ.get(
    "FEEDBOT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in (unit, functional, contract)."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in ("unit", "functional", "contract"):
            if kind in parts:
                item.add_marker(getattr(pytest.mark, "functional" if kind == "contract" else kind))


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FEEDBOT_* or SLACK_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("FEEDBOT_", "SLACK_")) and name not in (
            "FEEDBOT_TEST_POSTGRES",
            "FEEDBOT_FIXTURES",
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated, dropped at the end.

    Each run gets its own database so parallel runs on one server never see each other's rows.
    """
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"feedbot_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'feedbot.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases feedbot supports, migrated; each test cleans up through ``db_session``."""
    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgres)
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back after the test.

    Code under test may commit: its commits release SAVEPOINTs, never the outer transaction.
    """
    connection = engine.connect()
    outer = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def db_sessions(db_session: Session) -> sessionmaker[Session]:
    """A session factory on the test's connection: everything it commits is rolled back later."""
    return sessionmaker(
        bind=db_session.connection(),
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database that code under test commits to for real.

    SQLite gets a new file; PostgreSQL the run's database, emptied again after the test.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'feedbot.db'}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    request.applymarker(pytest.mark.postgres)
    url = str(request.getfixturevalue("postgres_url"))
    yield url
    truncate_all(url)


def truncate_all(url: str) -> None:
    """Empty every feedbot table (PostgreSQL), keeping the schema."""
    from feedbot.store import spans  # noqa: F401  (registers the spans table)
    from feedbot.store.models import Base

    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
