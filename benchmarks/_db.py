"""Scratch databases for benchmarks: a temporary SQLite file and a throwaway PostgreSQL DB."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from feedbot.store.db import make_engine, migrate


@contextmanager
def scratch_databases(postgres_admin: str) -> Iterator[dict[str, str]]:
    """Yield {"sqlite": url, "postgresql": url}, both migrated and empty; dropped afterwards."""
    admin = create_engine(postgres_admin, isolation_level="AUTOCOMMIT")
    name = f"feedbot_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    pg = make_url(postgres_admin).set(database=name).render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}", "postgresql": pg}
        for url in urls.values():
            engine = make_engine(url)
            migrate(engine)
            engine.dispose()
        try:
            yield urls
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
