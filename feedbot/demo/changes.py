"""What the vault's 2.0.0 release changed, derived from the code rather than written down.

The two releases live side by side (``examples/vault/v1`` and ``v2``), so the release is the
difference between the two directories. Each file pair is compared line by line into the hunks
``git diff -U0`` would print, and :mod:`feedbot.releases.pysource` says what they mean (the
functions touched, the ones 2.0.0 deleted, which of them open a span; hunks of docstrings and
comments alone count for nothing), exactly as ``feedbot notify-deploy`` does in CI. Only
:func:`release_changes` reads files.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feedbot.releases import pysource
from feedbot.releases.deploy_client import change_json
from feedbot.releases.event import Change
from feedbot.releases.pysource import Hunk


def hunks(old: str, new: str) -> list[Hunk]:
    """The hunks ``git diff -U0`` would print for ``old`` → ``new``, with git's numbers.

    Args:
        old: the old source.
        new: the new source.

    Returns:
        One hunk per differing block; a side without lines starts at the line the other
        side's lines follow, as in git's ``@@ -a,0 +c,d @@``.
    """
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    found = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            found.append(
                Hunk(i1 + 1 if i2 > i1 else i1, i2 - i1, j1 + 1 if j2 > j1 else j1, j2 - j1)
            )
    return found


def describe(path: str, old: str | None, new: str) -> Change | None:
    """The change to one Python file, None when it did not change the code.

    Args:
        path: the new file's path from the repository root (``examples/vault/v2/x.py``).
        old: the old source, None when the file is new.
        new: the new source.

    Returns:
        What :func:`feedbot.releases.pysource.describe` makes of the file's hunks: the
        functions they touched (qualified as in the spans' ``code.function.name``) and which of
        them open a span; None when the sources are equal or differ only in docstrings,
        comments and blank lines.
    """
    if old == new:
        return None
    return pysource.describe(
        old_path=None if old is None else path,
        new_path=path,
        old=old,
        new=new,
        hunks=hunks(old or "", new),
    )


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
    """The ``changes`` list of the generic deploy document, as ``notify-deploy`` writes it."""
    return [change_json(change) for change in changes]
