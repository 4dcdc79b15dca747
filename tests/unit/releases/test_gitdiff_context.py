"""A diff with context lines (GitHub's pull-request diff) reads as git's own ``-U0`` diff does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from feedbot.releases.gitdiff import changes_between, changes_from_diff, parse_diff, strip_context

OLD = "".join(f"line {n}\n" for n in range(1, 41))


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True).stdout


def _repo(tmp_path: Path, files: dict[str, tuple[str | None, str | None]]) -> Path:
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "a@b.c")
    _git(repo, "config", "user.name", "A")
    (repo / ".keep").write_text("")
    for name, (before, _) in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        if before is not None:
            (repo / name).write_text(before)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    for name, (_, after) in files.items():
        if after is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(after)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "head")
    return repo


def test_context_diff_reads_like_git_u0(tmp_path: Path) -> None:
    lines = OLD.splitlines(keepends=True)
    edited = lines[:2] + ["new top\n"] + lines[2:9] + lines[11:20] + ["changed 21\n"]
    edited += lines[21:30] + ["added a\n", "added b\n"] + lines[30:39]  # last line removed
    repo = _repo(
        tmp_path,
        {"a.txt": (OLD, "".join(edited)), "gone.txt": ("x\ny\n", None), "new.txt": (None, "n\n")},
    )
    with_context = _git(repo, "diff", "--no-color", "HEAD~1..HEAD")
    zero = _git(repo, "diff", "-U0", "--no-color", "HEAD~1..HEAD")
    assert b" line 1\n" in with_context  # the context is really there
    assert parse_diff(strip_context(with_context)) == parse_diff(zero)


def test_changes_from_a_context_diff_match_changes_between(tmp_path: Path) -> None:
    kept = "def kept():\n    return 1\n\n\n"
    before = kept + "def edited():\n    x = 1\n    return x\n\n\ndef gone():\n    pass\n"
    after = kept + "def edited():\n    x = 2\n    return x\n"
    repo = _repo(tmp_path, {"pkg/mod.py": (before, after)})
    diff = _git(repo, "diff", "--no-color", "HEAD~1..HEAD")

    def read(side: str, path: str) -> bytes | None:
        rev = "HEAD~1" if side == "old" else "HEAD"
        return _git(repo, "cat-file", "blob", f"{rev}:{path}")

    assert changes_from_diff(diff, read) == changes_between(repo, "HEAD~1", "HEAD")
    assert changes_from_diff(diff, read)[0].functions == ("pkg.mod.edited", "pkg.mod.gone")
