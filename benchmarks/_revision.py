"""Another revision of feedbot to measure beside this one: ``--compare REV`` in the benchmarks.

``git archive`` writes the revision's files to a temporary directory (no worktree, no branch);
a process started with that directory first on ``PYTHONPATH`` imports that revision's feedbot.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """Yield a directory holding ``revision``'s tracked files; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="feedbot-rev-") as tmp:
        archive = Path(tmp) / "rev.tar"
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), revision],
            check=True,
        )
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        yield tree


def environment(tree: Path | None) -> dict[str, str]:
    """The environment of a process that imports feedbot from ``tree`` (this one's when None)."""
    env = dict(os.environ)
    first = str(tree if tree is not None else ROOT)
    env["PYTHONPATH"] = os.pathsep.join([first, *filter(None, [env.get("PYTHONPATH")])])
    return env


def label(revision: str) -> str:
    """A revision's short commit id, as the tables print it."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()
