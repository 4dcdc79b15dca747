"""The package layout holds: no import cycles, SQL only in store/, every package says what it is.

The layers themselves are import-linter's contracts (``make check``); a layers contract does not
see a cycle between two modules of one package, so that check is here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
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


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of modules that import each other, directly or not (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_module_takes_part_in_an_import_cycle() -> None:
    # grimp sees imports inside functions too, so a cycle cannot hide in a lazy import.
    assert _cycles(grimp.build_graph("feedbot")) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in (("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")):
        graph.add_import(importer=importer, imported=imported)
    assert _cycles(graph) == [["a", "b", "c"]]
