"""What the vault's 2.0.0 release changed, derived from the code rather than written down.

The two releases live side by side (``examples/vault/v1`` and ``v2``), so the release is the
difference between the two directories. Each file pair is compared line by line, as
``git diff -U0`` would, and :mod:`feedbot.releases.gitdiff`'s pure functions name the functions
the changed lines fall in (and the ones 2.0.0 deleted), exactly as ``feedbot notify-deploy``
does in CI. Only :func:`release_changes` reads files.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feedbot.releases import gitdiff
from feedbot.releases.event import Change


def changed_lines(old: str, new: str) -> tuple[gitdiff.LineRange, ...]:
    """New-side line ranges that differ, in ``git diff -U0``'s terms.

    Args:
        old: the old source.
        new: the new source.

    Returns:
        1-based inclusive ranges of the new source; a pure deletion counts as the line it
        follows (1 at the top), as in :func:`feedbot.releases.gitdiff.parse_diff`.
    """
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    ranges: list[gitdiff.LineRange] = []
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if j2 > j1:
            ranges.append((j1 + 1, j2))
        else:
            ranges.append((max(j1, 1), max(j1, 1)))
    return gitdiff.merge_ranges(ranges)


def describe(path: str, old: str | None, new: str) -> Change | None:
    """The change to one Python file, None when it did not change.

    Args:
        path: the new file's path from the repository root (``examples/vault/v2/x.py``).
        old: the old source, None when the file is new.
        new: the new source.

    Returns:
        The file, the innermost functions its changed lines fall in plus the functions it
        deleted (qualified as in the spans' ``code.function.name``), and the line ranges.
    """
    if old == new:
        return None
    lines = changed_lines(old or "", new)
    module = gitdiff.module_name(path)
    new_spans = gitdiff.function_spans(new) or []
    functions = gitdiff.functions_for_lines(new_spans, lines, module)
    if old is not None:
        old_spans = gitdiff.function_spans(old) or []
        functions += gitdiff.deleted_functions(old_spans, new_spans, module)
    return Change(file=path, functions=functions, lines=lines)


def release_changes(root: Path, old_dir: str, new_dir: str) -> list[Change]:
    """The changes from ``old_dir`` to ``new_dir`` (both relative to ``root``), file by file.

    Args:
        root: the repository root.
        old_dir: the old release's package, e.g. ``examples/vault/v1``.
        new_dir: the new release's package, e.g. ``examples/vault/v2``.

    Returns:
        One change per Python file that differs, named by its path in ``new_dir``.
    """
    found = []
    for new_file in sorted((root / new_dir).glob("*.py")):
        old_file = root / old_dir / new_file.name
        old = old_file.read_text() if old_file.exists() else None
        path = f"{new_dir}/{new_file.name}"
        change = describe(path, old, new_file.read_text())
        if change is not None:
            found.append(change)
    return found


def changes_json(changes: Sequence[Change]) -> list[dict[str, Any]]:
    """The ``changes`` list of the generic deploy document."""
    out: list[dict[str, Any]] = []
    for change in changes:
        item: dict[str, Any] = {"file": change.file}
        if change.functions:
            item["functions"] = list(change.functions)
        if change.lines:
            item["lines"] = [list(pair) for pair in change.lines]
        out.append(item)
    return out
