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
from tests.fakes.socket_mode import socket_mode_server  # noqa: F401  (a fixture)

REPO_ROOT = Path(__file__).resolve().parents[1]


def fixtures_path() -> Path:
    """Where the upstream recorded data is: ``FEEDBOT_FIXTURES``, else ``../shared/fixtures``.

    Both are taken from the repository root (the directory holding ``pyproject.toml``): the
    default is the ``shared/fixtures`` directory beside the checkout.
    """
    return (REPO_ROOT / (os.environ.get("FEEDBOT_FIXTURES") or "../shared/fixtures")).resolve()


FIXTURES = fixtures_path()
_UPSTREAM_DESELECTED = pytest.StashKey[int]()
PG_ADMIN_URL = os.environ.get(
    "FEEDBOT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in (unit, functional, contract), and each test on
    upstream recorded data (it uses ``fixtures_dir``) ``upstream_data``; without that data,
    deselect the latter, and ``pytest_terminal_summary`` says so."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in ("unit", "functional", "contract"):
            if kind in parts:
                item.add_marker(getattr(pytest.mark, "functional" if kind == "contract" else kind))
        if "fixtures_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.upstream_data)
    if FIXTURES.is_dir():
        return
    absent = [item for item in items if item.get_closest_marker("upstream_data")]
    if absent:
        config.hook.pytest_deselected(items=absent)
        items[:] = [item for item in items if not item.get_closest_marker("upstream_data")]
        config.stash[_UPSTREAM_DESELECTED] = len(absent)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if count := config.stash.get(_UPSTREAM_DESELECTED, 0):
        terminalreporter.write_line(
            f"upstream recorded data not found at {FIXTURES} (set FEEDBOT_FIXTURES): "
            f"{count} tests deselected"
        )


@pytest.fixture
def fixtures_dir() -> Path:
    """The upstream recorded data (trace-backend answers and documents): a test that reads it
    takes this fixture, which marks it ``upstream_data`` (see ``pytest_collection_modifyitems``).
    """
    return FIXTURES


def upstream_files(folder: str, pattern: str) -> list[str]:
    """The names of the recorded files in ``folder`` matching ``pattern``, for parametrizing a
    test that takes ``fixtures_dir``; none where the data is absent (the test is deselected)."""
    return sorted(str(p.relative_to(FIXTURES / folder)) for p in (FIXTURES / folder).glob(pattern))


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
