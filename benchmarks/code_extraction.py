"""Changed-function extraction on a real git range, per language (time per 1,000 changed lines).

What ``feedbot notify-deploy`` does for a deploy (:func:`feedbot.releases.gitdiff.changes_between`):
one ``git diff -U0 -M`` of the range, :func:`~feedbot.releases.gitdiff.parse_diff` into files
and hunks, then for each file both sides parsed and the changed functions found
(:func:`feedbot.releases.code.describe`, tree-sitter, or :func:`feedbot.releases.pysource.describe`
for Python, ``ast``). Here the diff is read and parsed once and every file's two sides are read
from git beforehand, so the timed part is the extraction alone, per language: median of the
repeats of ``describe`` over that language's files of the range. Files are grouped by the
grammar that reads them (``tsx`` apart from ``typescript``); binary files and suffixes feedbot
does not read are left out. *Changed lines* are the diff's removed plus added lines; *kB parsed*
is both sides' size, since a one-line change to a large file parses all of it (the time follows
the bytes parsed more than the lines changed). A last line times
:func:`~feedbot.releases.gitdiff.changes_between` itself over the range (every file, any
language, git's diff and blob reads included): what ``notify-deploy`` spends in all.

A language whose real changes yield no function at all is flagged (``<- none found``): that
would be a bug in the extraction, not a figure.

``--each`` describes every first-parent commit of the range as a deploy of its own (what a
service deploying each merge sends): more changed lines per language than one range's net diff,
and files parsed once per commit that changed them.

    python -m benchmarks.code_extraction --repo PATH [--range A..B | --commits 300] [--each]
        [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from feedbot.errors import GitError
from feedbot.releases import code, gitdiff, pysource
from feedbot.releases.code.grammars import grammar_for
from feedbot.releases.event import Change
from feedbot.releases.gitdiff import FileDiff, parse_diff, resolve_commit


@dataclass(frozen=True)
class Prepared:
    """One file of the range with both sides read: what ``describe`` gets."""

    language: str
    entry: FileDiff
    old: bytes | None
    new: bytes | None
    go_package: str | None

    @property
    def changed_lines(self) -> int:
        return sum(h.old_count + h.new_count for h in self.entry.hunks)

    @property
    def size(self) -> int:
        """Bytes parsed: both sides (a one-line change to a large file parses all of it)."""
        return len(self.old or b"") + len(self.new or b"")


@dataclass(frozen=True)
class Row:
    """One language's figures."""

    language: str
    files: int
    changed_lines: int
    functions: int
    median_ms: float
    parsed_bytes: int = 0

    @property
    def ms_per_1000_lines(self) -> float:
        return 1000.0 * self.median_ms / self.changed_lines if self.changed_lines else 0.0


def language_of(path: str) -> str | None:
    """The language feedbot reads a path as (``python`` or a grammar's name), or None."""
    if path.endswith(".py"):
        return "python"
    grammar = grammar_for(path)
    return None if grammar is None else grammar.name


def prepare(repo: Path, since: str, until: str) -> list[Prepared]:
    """Every readable file ``since..until`` changed, both sides read from git.

    Raises:
        GitError: a revision is unknown or git failed.
    """
    old_sha, new_sha = resolve_commit(repo, since), resolve_commit(repo, until)
    diff = gitdiff.git(
        repo, "diff", "-U0", "--no-color", "--no-ext-diff", "--no-textconv", "--no-relative",
        "-M", "--src-prefix=a/", "--dst-prefix=b/", f"{old_sha}..{new_sha}", "--",
    )  # fmt: skip
    go_modules: dict[str, str | None] = {}
    out = []
    for entry in parse_diff(diff):
        path = entry.new_path or entry.old_path
        language = None if entry.binary or path is None else language_of(path)
        if language is None or path is None:
            continue
        old = _blob(repo, old_sha, entry.old_path)
        new = _blob(repo, new_sha, entry.new_path)
        go = None
        if language == "go":
            sha = new_sha if entry.new_path else old_sha
            go = gitdiff._go_package(repo, sha, path, go_modules)  # feedbot's own lookup
        out.append(Prepared(language, entry, old, new, go))
    return out


def _blob(repo: Path, sha: str, path: str | None) -> bytes | None:
    return None if path is None else gitdiff.git(repo, "cat-file", "blob", f"{sha}:{path}")


def extract(file: Prepared) -> Change | None:
    """The change feedbot records for one file (as :func:`gitdiff.changes_between` does)."""
    e = file.entry
    if file.language == "python":
        return pysource.describe(
            old_path=e.old_path, new_path=e.new_path, old=file.old, new=file.new, hunks=e.hunks
        )
    return code.describe(
        old_path=e.old_path, new_path=e.new_path, old=file.old, new=file.new,
        hunks=e.hunks, go_package=file.go_package,
    )  # fmt: skip


def measure(files: list[Prepared], repeat: int = 5) -> list[Row]:
    """Per language, sorted by name: files, changed lines, functions found, median ms."""
    by_language: dict[str, list[Prepared]] = defaultdict(list)
    for file in files:
        by_language[file.language].append(file)
    rows = []
    for language, group in sorted(by_language.items()):
        times = []
        functions = 0
        for _ in range(repeat):
            start = time.perf_counter()
            changes = [extract(file) for file in group]
            times.append((time.perf_counter() - start) * 1000.0)
            functions = sum(len(c.functions) for c in changes if c is not None)
        lines = sum(file.changed_lines for file in group)
        parsed = sum(file.size for file in group)
        median = statistics.median(times)
        rows.append(Row(language, len(group), lines, functions, median, parsed))
    return rows


def deploys(repo: Path, since: str, until: str, each: bool) -> list[tuple[str, str]]:
    """The ranges to describe: ``since..until`` itself, or each first-parent commit in it.

    Raises:
        GitError: a revision is unknown or git failed.
    """
    if not each:
        return [(since, until)]
    old_sha, new_sha = resolve_commit(repo, since), resolve_commit(repo, until)
    out = gitdiff.git(repo, "rev-list", "--first-parent", "--reverse", "--parents",
                      f"{old_sha}..{new_sha}")  # fmt: skip
    pairs = (line.split() for line in out.decode().splitlines())
    return [(shas[1], shas[0]) for shas in pairs if len(shas) >= 2]


def prepare_all(repo: Path, ranges: list[tuple[str, str]]) -> list[Prepared]:
    """:func:`prepare` over several ranges, one list (a file changed twice counts twice)."""
    return [file for since, until in ranges for file in prepare(repo, since, until)]


def end_to_end(repo: Path, ranges: list[tuple[str, str]], repeat: int = 5) -> tuple[int, float]:
    """Files described and median ms of :func:`gitdiff.changes_between` itself, git included."""
    times = []
    described = 0
    for _ in range(repeat):
        start = time.perf_counter()
        described = sum(len(gitdiff.changes_between(repo, a, b)) for a, b in ranges)
        times.append((time.perf_counter() - start) * 1000.0)
    return described, statistics.median(times)


def table(rows: list[Row]) -> str:
    """The printed table, one line per language and a total."""
    out = [
        f"{'language':<11} {'files':>6} {'changed lines':>14} {'functions':>10} "
        f"{'median ms':>10} {'ms / 1k lines':>14} {'kB parsed':>10}"
    ]
    for r in rows:
        flag = "  <- none found" if r.functions == 0 and r.changed_lines else ""
        out.append(_line(r) + flag)
    total = Row(
        "all",
        sum(r.files for r in rows),
        sum(r.changed_lines for r in rows),
        sum(r.functions for r in rows),
        sum(r.median_ms for r in rows),
        sum(r.parsed_bytes for r in rows),
    )
    out.append(_line(total))
    return "\n".join(out)


def _line(r: Row) -> str:
    return (
        f"{r.language:<11} {r.files:>6} {r.changed_lines:>14} {r.functions:>10} "
        f"{r.median_ms:>10.1f} {r.ms_per_1000_lines:>14.2f} {r.parsed_bytes / 1000:>10.0f}"
    )


def _range(repo: Path, spec: str | None, commits: int) -> tuple[str, str]:
    if spec is not None:
        since, sep, until = spec.partition("..")
        if not sep or not since or until.startswith("."):
            raise GitError(f"--range: {spec!r} is not A..B")
        return since, until or "HEAD"
    count = int(gitdiff.git(repo, "rev-list", "--count", "--first-parent", "HEAD"))
    back = min(commits, count - 1)
    if back < 1:
        raise GitError(f"--commits: HEAD of {repo} has no earlier commit to diff against")
    return f"HEAD~{back}", "HEAD"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repo", type=Path, required=True, help="a git repository (bare is fine)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--range", dest="spec", help="the git range A..B to describe")
    what.add_argument(
        "--commits", type=int, default=300, help="HEAD~N..HEAD along first parents (300)"
    )
    parser.add_argument(
        "--each",
        action="store_true",
        help="describe each first-parent commit of the range as its own deploy",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats per language (5)")
    args = parser.parse_args(argv)
    if args.commits < 1:
        parser.error("--commits: must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat: must be at least 1")
    try:
        since, until = _range(args.repo, args.spec, args.commits)
        ranges = deploys(args.repo, since, until, args.each)
        files = prepare_all(args.repo, ranges)
    except GitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    how = f", each of its {len(ranges)} commits as a deploy" if args.each else ""
    print(
        f"{since}..{until} in {args.repo}{how}: medians of {args.repeat} repeats, "
        "git reads excluded"
    )
    print(table(measure(files, args.repeat)))
    described, ms = end_to_end(args.repo, ranges, args.repeat)
    print(f"changes_between end to end, git reads included: {described} files, {ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
