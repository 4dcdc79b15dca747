"""The migrations build the schema the models describe, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from feedbot.store import spans  # noqa: F401  (registers the spans table)
from feedbot.store.db import make_engine
from feedbot.store.models import Base

FILE_COLUMNS = {"file_name", "file_title", "file_data"}


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "feedbot.store:migrations")
    return config


def deliveries_differences(engine: Engine) -> list[object]:
    """What the migrated ``deliveries`` table lacks or has beyond the model."""
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in diff if "deliveries" in repr(d)]


def test_the_migrated_deliveries_table_matches_the_model(engine: Engine) -> None:
    assert FILE_COLUMNS <= {c["name"] for c in inspect(engine).get_columns("deliveries")}
    assert deliveries_differences(engine) == []


def test_the_file_columns_go_and_come_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'feedbot.db'}")
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            command.downgrade(config, "0005")
        assert not FILE_COLUMNS & {c["name"] for c in inspect(engine).get_columns("deliveries")}
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        assert FILE_COLUMNS <= {c["name"] for c in inspect(engine).get_columns("deliveries")}
    finally:
        engine.dispose()


def test_the_migrated_code_history_tables_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diff if "code_" in repr(d)] == []


def test_the_code_history_goes_and_comes_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'feedbot.db'}")
    try:
        config = alembic_config()
        for target in ("head", "0008_scale", "head"):
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                (command.upgrade if target == "head" else command.downgrade)(config, target)
            tables = set(inspect(engine).get_table_names())
            assert ({"code_keys", "code_history"} <= tables) == (target == "head")
    finally:
        engine.dispose()
