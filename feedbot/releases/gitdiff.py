"""What a git range changed: files, line ranges, and the Python functions they fall in.

``feedbot notify-deploy`` runs inside the CI checkout and describes ``since..until`` with
:func:`changes_between` and :func:`commit_info`. The pure half (:func:`parse_diff`,
:func:`repository_from_url`, and :mod:`feedbot.releases.pysource` for what a Python file's hunks
mean, re-exported here) does no I/O; the rest runs ``git`` with an argument list, never a shell.
Revisions are resolved to full SHAs before anything else sees them, so a value such as
``--output=x`` can never reach git as an option.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from feedbot.errors import GitError
from feedbot.releases import code
from feedbot.releases.event import Change
from feedbot.releases.pysource import Hunk, LineRange, describe, merge_ranges

__all__ = [
    "CommitInfo",
    "FileDiff",
    "changes_between",
    "changes_from_diff",
    "commit_info",
    "merge_base",
    "parse_diff",
    "remote_repository",
    "repository_from_url",
    "resolve_commit",
    "strip_context",
    "unquote_path",
]

_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_SCP_URL = re.compile(r"^(?:[^@/]+@)?[^:/]+:(?P<path>[^/].*)$")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_GIT_TIMEOUT = 120.0


@dataclass(frozen=True)
class FileDiff:
    """One file of a diff: ``old_path`` is None when added, ``new_path`` None when deleted."""

    old_path: str | None
    new_path: str | None
    lines: tuple[LineRange, ...] = ()
    binary: bool = False
    hunks: tuple[Hunk, ...] = ()


@dataclass(frozen=True)
class CommitInfo:
    """The facts a deploy document takes from one commit."""

    sha: str
    author_email: str | None
    author_name: str | None
    subject: str | None


# --- pure: diff text ------------------------------------------------------------------------


@dataclass
class _Entry:
    old: str | None = None
    new: str | None = None
    hunks: list[Hunk] = field(default_factory=list)
    binary: bool = False
    in_hunks: bool = False

    def freeze(self) -> FileDiff:
        lines = () if self.new is None else merge_ranges(h.new_range for h in self.hunks)
        return FileDiff(self.old, self.new, lines, self.binary, tuple(self.hunks))


def parse_diff(text: bytes) -> list[FileDiff]:
    """Parse ``git diff -U0`` output into files and new-side line ranges.

    Args:
        text: the raw output of ``git diff -U0 --src-prefix=a/ --dst-prefix=b/``.

    Returns:
        One entry per file. A hunk that only deletes (``+c,0``) counts as line ``c``, the line
        the deletion follows (1 at the top of the file); deleted files have no lines.
    """
    entries: list[_Entry] = []
    for line in text.splitlines():
        if line.startswith(b"diff --git "):
            old, new = _paths_from_diff_line(line[len(b"diff --git ") :])
            entries.append(_Entry(old, new))
        elif entries and entries[-1].in_hunks:
            _read_hunk_header(entries[-1], line)
        elif entries:
            _read_header(entries[-1], line)
    return [entry.freeze() for entry in entries]


def _read_hunk_header(entry: _Entry, line: bytes) -> None:
    # Inside hunks every content line starts with "+", "-", " " or "\", so only "@@" matters:
    # a removed line reading "-- x" shows as "--- x" and must not be taken for a header.
    match = _HUNK.match(line)
    if match is None:
        return
    entry.in_hunks = True
    old_count = 1 if match[2] is None else int(match[2])
    new_count = 1 if match[4] is None else int(match[4])
    entry.hunks.append(Hunk(int(match[1]), old_count, int(match[3]), new_count))


def _read_header(entry: _Entry, line: bytes) -> None:
    if line.startswith(b"@@"):
        _read_hunk_header(entry, line)
    elif line.startswith((b"new file mode", b"--- /dev/null")):
        entry.old = None
    elif line.startswith((b"deleted file mode", b"+++ /dev/null")):
        entry.new = None
    elif line.startswith(b"rename from "):
        entry.old = unquote_path(line[len(b"rename from ") :])
    elif line.startswith(b"rename to "):
        entry.new = unquote_path(line[len(b"rename to ") :])
    elif line.startswith(b"--- "):
        entry.old = _strip_prefix(unquote_path(line[4:]))
    elif line.startswith(b"+++ "):
        entry.new = _strip_prefix(unquote_path(line[4:]))
    elif line.startswith(b"Binary files "):
        entry.binary = True


def _paths_from_diff_line(rest: bytes) -> tuple[str, str]:
    # Only binary and mode-only changes lack the "---"/"+++" or "rename" lines that name the
    # paths exactly; then both sides are the same path, so "a/P b/P" splits in the middle, as
    # git itself does.
    split = _closing_quote(rest) + 1 if rest.startswith(b'"') else (len(rest) - 1) // 2
    old, new = unquote_path(rest[:split]), unquote_path(rest[split + 1 :])
    return _strip_prefix(old), _strip_prefix(new)


def _closing_quote(raw: bytes) -> int:
    i = 1
    while i < len(raw) and raw[i : i + 1] != b'"':
        i += 2 if raw[i : i + 1] == b"\\" else 1
    return i


def _strip_prefix(path: str) -> str:
    return path[2:] if path.startswith(("a/", "b/")) else path


def unquote_path(raw: bytes) -> str:
    """Undo git's C-style quoting of a path (``"caf\\303\\251.py"`` → ``café.py``).

    Args:
        raw: the path as git printed it, quoted or not.

    Returns:
        The path; bytes that are not UTF-8 survive as surrogate escapes.
    """
    raw = raw.rstrip(b"\t")
    if not (raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2):
        return raw.decode("utf-8", "surrogateescape")
    out, body, i = bytearray(), raw[1:-1], 0
    while i < len(body):
        if body[i : i + 1] == b"\\" and i + 1 < len(body):
            nxt = chr(body[i + 1])
            if nxt.isdigit():
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, ord(nxt)))
            i += 2
            continue
        out.append(body[i])
        i += 1
    return bytes(out).decode("utf-8", "surrogateescape")


# --- pure: remotes ----------------------------------------------------------------------------


def repository_from_url(url: str) -> str | None:
    """``owner/name`` from a remote URL (https, ssh or scp-like); None for local paths.

    Credentials in the URL are dropped. GitLab subgroups keep every part (``group/sub/name``).
    """
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        path = parts.path if parts.scheme != "file" and parts.hostname else ""
    else:
        match = _SCP_URL.match(url)
        path = match["path"] if match and not url.startswith((".", "/")) else ""
    path = path.strip("/").removesuffix(".git").strip("/")
    return path if "/" in path else None


# --- git ------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> bytes:
    """Run ``git -C repo args…`` and return its standard output.

    Raises:
        GitError: git is missing, timed out, or failed; the message carries git's own.
    """
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    command = ["git", "-C", str(repo), *args]
    try:
        done = subprocess.run(
            command, capture_output=True, check=False, env=env, timeout=_GIT_TIMEOUT
        )
    except FileNotFoundError:
        raise GitError("git: not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]}: no answer after {_GIT_TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} in {repo}: {message[-1] if message else 'failed'}")
    return done.stdout


def resolve_commit(repo: Path, rev: str) -> str:
    """The full SHA of commit ``rev``.

    Raises:
        GitError: ``repo`` is no git checkout, or ``rev`` names no commit in it (with a hint
            when the checkout is a shallow clone, the usual reason in CI).
    """
    try:
        out = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except GitError as exc:
        if "not a git repository" in str(exc):
            raise
        raise GitError(
            f"{rev!r}: not a commit in the git checkout at {repo}{_shallow(repo)}"
        ) from None
    return out.decode().strip()


def merge_base(repo: Path, base: str, head: str) -> str:
    """Where ``head`` forked from ``base`` (a pull request's diff starts there, not at ``base``).

    Raises:
        GitError: a revision is unknown, or the two share no history.
    """
    old, new = resolve_commit(repo, base), resolve_commit(repo, head)
    try:
        return git(repo, "merge-base", old, new).decode().strip()
    except GitError:
        raise GitError(f"{base!r} and {head!r} share no history{_shallow(repo)}") from None


def _shallow(repo: Path) -> str:
    if git(repo, "rev-parse", "--is-shallow-repository").strip() != b"true":
        return ""
    return " (it is a shallow clone: fetch more history, e.g. actions/checkout fetch-depth: 0)"


def commit_info(repo: Path, rev: str = "HEAD") -> CommitInfo:
    """The SHA, author and subject of one commit."""
    sha = resolve_commit(repo, rev)
    out = git(repo, "log", "-1", "--no-show-signature", "--format=%ae%x00%an%x00%s", sha)
    email, name, subject = (out.decode("utf-8", "replace").strip("\n").split("\0") + ["", ""])[:3]
    return CommitInfo(sha, email or None, name or None, subject or None)


def remote_repository(repo: Path, remote: str = "origin") -> str | None:
    """``owner/name`` of the ``origin`` remote, or None when there is none."""
    try:
        url = git(repo, "remote", "get-url", remote).decode("utf-8", "replace")
    except GitError:
        return None
    return repository_from_url(url)


def changes_between(repo: Path, since: str, until: str = "HEAD") -> list[Change]:
    """What ``since..until`` changed, file by file.

    Args:
        repo: a directory inside the git checkout.
        since: the previous deploy's revision.
        until: the revision being deployed.

    Returns:
        One change per file. Python files (and Java, Kotlin, Go, JavaScript, TypeScript, C#,
        Ruby and PHP ones, :mod:`feedbot.releases.code`) name the innermost functions their
        changed lines fall in plus the functions they deleted, and which of those open a span;
        such a file whose hunks only touch docstrings, comments or blank lines is left out.
        Other, binary or unparseable files carry lines only; deleted files carry no lines.

    Raises:
        GitError: a revision is unknown or git failed.
    """
    old_sha, new_sha = resolve_commit(repo, since), resolve_commit(repo, until)
    diff = git(
        repo, "diff", "-U0", "--no-color", "--no-ext-diff", "--no-textconv", "--no-relative",
        "-M", "--src-prefix=a/", "--dst-prefix=b/", f"{old_sha}..{new_sha}", "--",
    )  # fmt: skip
    go_modules: dict[str, str | None] = {}
    found = (_change(repo, entry, old_sha, new_sha, go_modules) for entry in parse_diff(diff))
    return [change for change in found if change is not None]


def _change(
    repo: Path, entry: FileDiff, old_sha: str, new_sha: str, go_modules: dict[str, str | None]
) -> Change | None:
    path = entry.new_path or entry.old_path
    if not entry.binary and path and code.reads(path):
        sha = new_sha if entry.new_path else old_sha
        go = _go_package(repo, sha, path, go_modules) if path.endswith(".go") else None
        return code.describe(
            old_path=entry.old_path,
            new_path=entry.new_path,
            old=_text_blob(repo, old_sha, entry.old_path),
            new=_text_blob(repo, new_sha, entry.new_path),
            hunks=entry.hunks,
            go_package=go,
        )
    if entry.binary or not (path or "").endswith(".py"):
        return Change(file=path, lines=entry.lines)
    return describe(
        old_path=entry.old_path,
        new_path=entry.new_path,
        old=_blob(repo, old_sha, entry.old_path),
        new=_blob(repo, new_sha, entry.new_path),
        hunks=entry.hunks,
    )


def _blob(repo: Path, sha: str, path: str | None) -> bytes | None:
    if path is None or not path.endswith(".py"):
        return None
    return git(repo, "cat-file", "blob", f"{sha}:{path}")


def _text_blob(repo: Path, sha: str, path: str | None) -> bytes | None:
    return None if path is None else git(repo, "cat-file", "blob", f"{sha}:{path}")


_GO_MODULE = re.compile(rb"^\s*module\s+\"?([^\s\"/]+[^\s\"]*)\"?", re.MULTILINE)


def _go_package(repo: Path, sha: str, path: str, modules: dict[str, str | None]) -> str | None:
    """The import path of a Go file's package: the nearest ``go.mod``'s module + the directory."""
    directory = PurePosixPath(path).parent
    for folder in (directory, *directory.parents):
        key = f"{sha}:{folder}"
        if key not in modules:
            modules[key] = _go_module(repo, sha, folder)
        module = modules[key]
        if module is not None:
            rest = directory.relative_to(folder).as_posix()
            return module if rest == "." else f"{module}/{rest}"
    return None


def go_module_path(go_mod: bytes) -> str | None:
    """The module path a ``go.mod`` declares, or None."""
    match = _GO_MODULE.search(go_mod)
    return match[1].decode("utf-8", "replace") if match else None


def _go_module(repo: Path, sha: str, folder: PurePosixPath) -> str | None:
    name = "go.mod" if str(folder) == "." else f"{folder}/go.mod"
    try:
        return go_module_path(git(repo, "cat-file", "blob", f"{sha}:{name}"))
    except GitError:
        return None


# --- a diff with context, read through a callback (GitHub's pull-request diff) --------------

#: Reads one side of a file: ``read("old" | "new", path)`` → its bytes, None when absent.
SideReader = Callable[[str, str], bytes | None]


def strip_context(text: bytes) -> bytes:
    """Rewrite a diff with context lines (``git diff``'s default, GitHub's ``.diff``) as ``-U0``.

    Each run of removed and added lines becomes its own hunk, numbered as ``git diff -U0``
    numbers it (a side with no lines starts at the line before), so :func:`parse_diff` reads
    only the lines that changed, not the three around them.
    """
    out: list[bytes] = []
    old = new = 0
    run: list[bytes] = []
    run_old = run_new = 0
    in_hunk = False

    def flush() -> None:
        nonlocal run
        if not run:
            return
        removed = sum(line.startswith(b"-") for line in run)
        added = len(run) - removed
        old_start = run_old if removed else max(run_old - 1, 0)
        new_start = run_new if added else max(run_new - 1, 0)
        out.append(b"@@ -%d,%d +%d,%d @@" % (old_start, removed, new_start, added))
        out.extend(line for line in run if line.startswith(b"-"))
        out.extend(line for line in run if line.startswith(b"+"))
        run = []

    for line in text.splitlines():
        match = _HUNK.match(line)
        if line.startswith(b"diff --git "):
            flush()
            in_hunk = False
            out.append(line)
        elif match is not None:
            flush()
            in_hunk = True
            old, new = int(match[1]), int(match[3])
        elif in_hunk and line.startswith((b"-", b"+")):
            if not run:
                run_old, run_new = old, new
            run.append(line)
            if line.startswith(b"-"):
                old += 1
            else:
                new += 1
        elif in_hunk and line.startswith(b"\\"):
            continue  # "\ No newline at end of file"
        elif in_hunk:
            flush()
            old, new = old + 1, new + 1
        else:
            out.append(line)
    flush()
    return b"\n".join(out) + b"\n"


def changes_from_diff(diff: bytes, read: SideReader, *, max_files: int = 300) -> list[Change]:
    """What a diff changed, file by file, reading each side's text through ``read``.

    As :func:`changes_between`, for a diff that arrives as text (GitHub's pull-request diff,
    context lines and all). Files past ``max_files`` carry their lines only.
    """
    changes = []
    for n, entry in enumerate(parse_diff(strip_context(diff))):
        path = entry.new_path or entry.old_path
        readable = path is not None and (code.reads(path) or path.endswith(".py"))
        if entry.binary or not readable or n >= max_files:
            changes.append(Change(file=path, lines=entry.lines))
            continue
        old = read("old", entry.old_path) if entry.old_path else None
        new = read("new", entry.new_path) if entry.new_path else None
        if path is not None and code.reads(path):
            go = _go_package_read(read, path) if path.endswith(".go") else None
            described = code.describe(
                old_path=entry.old_path, new_path=entry.new_path, old=old, new=new,
                hunks=entry.hunks, go_package=go,
            )  # fmt: skip
        else:
            described = describe(
                old_path=entry.old_path, new_path=entry.new_path, old=old, new=new,
                hunks=entry.hunks,
            )  # fmt: skip
        if described is not None:
            changes.append(described)
    return changes


def _go_package_read(read: SideReader, path: str) -> str | None:
    directory = PurePosixPath(path).parent
    for folder in (directory, *directory.parents):
        name = "go.mod" if str(folder) == "." else f"{folder}/go.mod"
        data = read("new", name)
        module = go_module_path(data) if data is not None else None
        if module is not None:
            rest = directory.relative_to(folder).as_posix()
            return module if rest == "." else f"{module}/{rest}"
    return None
