"""The package layout holds: SQL is built only in store/, and every package says what it is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "feedbot"
#: What builds a statement; a Session's add/get/flush only hands rows to the unit of work.
STATEMENT_BUILDERS = {"select", "update", "delete", "insert", "text", "func", "union", "exists"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _statement_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            if node.module in ("sqlalchemy", "sqlalchemy.sql", "sqlalchemy.sql.expression"):
                found += [a.name for a in node.names if a.name in STATEMENT_BUILDERS]
            if (node.module or "").startswith("sqlalchemy.dialects"):
                found.append(node.module or "")
    return found


def test_sql_is_built_only_in_the_store() -> None:
    outside = {
        str(path.relative_to(PACKAGE.parent)): names
        for path in _modules()
        if "store" not in path.relative_to(PACKAGE).parts and (names := _statement_imports(path))
    }
    assert outside == {}


def test_the_check_finds_a_statement_builder(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from sqlalchemy import func, select\nfrom sqlalchemy.orm import Session\n")
    assert _statement_imports(probe) == ["func", "select"]


@pytest.mark.parametrize(
    "package", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")), ids=str
)
def test_every_package_says_what_lives_in_it(package: str) -> None:
    tree = ast.parse((PACKAGE / package / "__init__.py").read_text())
    assert len(ast.get_docstring(tree) or "") > 80, (
        f"feedbot/{package}/__init__.py has no docstring"
    )
