"""gitdiff: the pure diff and source parsing, then real throwaway repositories."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from feedbot.errors import GitError
from feedbot.releases import gitdiff
from feedbot.releases.event import Change
from feedbot.releases.gitdiff import (
    FileDiff,
    changes_between,
    parse_diff,
    repository_from_url,
    unquote_path,
)
from feedbot.releases.pysource import (
    FunctionSpan,
    Hunk,
    deleted_functions,
    function_spans,
    functions_for_lines,
    merge_ranges,
    module_name,
)

# --- pure: diff text ------------------------------------------------------------------------

MODIFIED = b"""\
diff --git a/vault/appraisal.py b/vault/appraisal.py
index 1111111..2222222 100644
--- a/vault/appraisal.py
+++ b/vault/appraisal.py
@@ -10,2 +10,3 @@ def appraise(item):
-    return 1
---- a line that looks like a header
+    x = 2
++++ also looks like a header
+    return x
@@ -30 +31 @@ class Appraiser:
-    a = 1
+    a = 2
@@ -40,3 +40,0 @@ def gone():
-    pass
-    pass
-    pass
"""


def test_parse_diff_reads_new_side_ranges_and_ignores_header_lookalikes_in_hunks() -> None:
    hunks = (Hunk(10, 2, 10, 3), Hunk(30, 1, 31, 1), Hunk(40, 3, 40, 0))
    assert parse_diff(MODIFIED) == [
        FileDiff(
            "vault/appraisal.py", "vault/appraisal.py", ((10, 12), (31, 31), (40, 40)), False, hunks
        )
    ]


def test_parse_diff_deletion_at_the_top_of_a_file_counts_as_line_one() -> None:
    text = b"diff --git a/x.txt b/x.txt\n--- a/x.txt\n+++ b/x.txt\n@@ -1 +0,0 @@\n-gone\n"
    assert parse_diff(text)[0].lines == ((1, 1),)


def test_parse_diff_added_deleted_renamed_binary_and_mode_only() -> None:
    text = b"""\
diff --git a/new.py b/new.py
new file mode 100644
index 0000000..1111111
--- /dev/null
+++ b/new.py
@@ -0,0 +1,4 @@
+a
+b
+c
+d
diff --git a/old.txt b/old.txt
deleted file mode 100644
index 1111111..0000000
--- a/old.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-a
-b
diff --git a/pkg/a b.py b/pkg/c d.py
similarity index 90%
rename from pkg/a b.py
rename to pkg/c d.py
index 1111111..2222222 100644
--- a/pkg/a b.py\t
+++ b/pkg/c d.py\t
@@ -3 +3 @@
-x
+y
diff --git a/moved.py b/to/moved.py
similarity index 100%
rename from moved.py
rename to to/moved.py
diff --git a/logo.png b/logo.png
index 1111111..2222222 100644
Binary files a/logo.png and b/logo.png differ
diff --git a/run me.sh b/run me.sh
old mode 100644
new mode 100755
"""
    assert parse_diff(text) == [
        FileDiff(None, "new.py", ((1, 4),), hunks=(Hunk(0, 0, 1, 4),)),
        FileDiff("old.txt", None, (), hunks=(Hunk(1, 2, 0, 0),)),
        FileDiff("pkg/a b.py", "pkg/c d.py", ((3, 3),), hunks=(Hunk(3, 1, 3, 1),)),
        FileDiff("moved.py", "to/moved.py", ()),
        FileDiff("logo.png", "logo.png", (), binary=True),
        FileDiff("run me.sh", "run me.sh", ()),
    ]


def test_parse_diff_unquotes_paths_git_had_to_quote() -> None:
    text = (
        b'diff --git "a/caf\\303\\251.py" "b/caf\\303\\251.py"\n'
        b'--- "a/caf\\303\\251.py"\n+++ "b/caf\\303\\251.py"\n@@ -1 +1 @@\n-a\n+b\n'
        b'diff --git "a/tab\\there.bin" "b/tab\\there.bin"\n'
        b"Binary files differ\n"
    )
    assert parse_diff(text) == [
        FileDiff("café.py", "café.py", ((1, 1),), hunks=(Hunk(1, 1, 1, 1),)),
        FileDiff("tab\there.bin", "tab\there.bin", (), binary=True),
    ]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"plain/path.py", "plain/path.py"),
        (b'"quote\\"d\\\\.py"', 'quote"d\\.py'),
        (b'"new\\nline"', "new\nline"),
        (b"with space.py\t", "with space.py"),
    ],
)
def test_unquote_path(raw: bytes, path: str) -> None:
    assert unquote_path(raw) == path


def test_merge_ranges_joins_overlapping_and_touching() -> None:
    assert merge_ranges([(10, 12), (1, 2), (3, 3), (11, 20), (30, 30)]) == (
        (1, 3),
        (10, 20),
        (30, 30),
    )


# --- pure: Python source --------------------------------------------------------------------

SOURCE = textwrap.dedent(
    """\
    import os

    LIMIT = 3


    class Appraiser:
        rate = 2

        @staticmethod
        def appraise(item):
            def helper(x):
                return x * 2

            return helper(item)

        async def refresh(self):
            return None


    def top():
        return LIMIT
    """
)


def test_function_spans_names_methods_and_nested_functions_with_decorators() -> None:
    assert function_spans(SOURCE) == [
        FunctionSpan("Appraiser.appraise", 9, 14),
        FunctionSpan("Appraiser.appraise.helper", 11, 12),
        FunctionSpan("Appraiser.refresh", 16, 17),
        FunctionSpan("top", 20, 21),
    ]


def test_function_spans_is_none_for_unparseable_source() -> None:
    assert function_spans("def broken(:\n") is None
    assert function_spans(b"x = 1\0\n") is None


def test_function_spans_honours_a_coding_line() -> None:
    source = "# -*- coding: latin-1 -*-\ndef caf\xe9():\n    return '\xe9'\n".encode("latin-1")
    assert function_spans(source) == [FunctionSpan("café", 2, 3)]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([(13, 13)], ("vault.appraisal.Appraiser.appraise",)),
        ([(12, 12)], ("vault.appraisal.Appraiser.appraise.helper",)),
        ([(9, 9)], ("vault.appraisal.Appraiser.appraise",)),  # the decorator
        ([(3, 3), (7, 7)], ()),  # module level and class body
        ([(21, 21), (12, 17)], ("vault.appraisal.Appraiser.appraise.helper",
                                "vault.appraisal.Appraiser.appraise",
                                "vault.appraisal.Appraiser.refresh",
                                "vault.appraisal.top")),
        ([(500, 600)], ()),
    ],
)  # fmt: skip
def test_functions_for_lines_gives_the_innermost_function_of_each_line(
    lines: list[tuple[int, int]], expected: tuple[str, ...]
) -> None:
    spans = function_spans(SOURCE)
    assert spans is not None
    assert functions_for_lines(spans, lines, "vault.appraisal") == expected


def test_functions_for_lines_without_a_module_name() -> None:
    assert functions_for_lines([FunctionSpan("f", 1, 2)], [(1, 1)], "") == ("f",)


def test_deleted_functions_are_the_old_names_the_new_source_lacks() -> None:
    old = [FunctionSpan("A.keep", 1, 2), FunctionSpan("A.drop", 3, 4), FunctionSpan("f", 5, 6)]
    new = [FunctionSpan("A.keep", 1, 2), FunctionSpan("g", 3, 4)]
    assert deleted_functions(old, new, "m") == ("m.A.drop", "m.f")


@pytest.mark.parametrize(
    ("path", "module"),
    [
        ("vault/appraisal.py", "vault.appraisal"),
        ("src/vault/appraisal.py", "vault.appraisal"),
        ("vault/__init__.py", "vault"),
        ("src/vault/__init__.py", "vault"),
        ("setup.py", "setup"),
        ("__init__.py", ""),
    ],
)
def test_module_name(path: str, module: str) -> None:
    assert module_name(path) == module


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("git@github.com:acme/vault.git", "acme/vault"),
        ("https://github.com/acme/vault", "acme/vault"),
        ("https://x-access-token:s3cr3t@github.com/acme/vault.git\n", "acme/vault"),
        ("ssh://git@gitlab.example:2222/group/sub/vault.git", "group/sub/vault"),
        ("https://gitlab-ci-token:tok@gitlab.example/group/vault.git/", "group/vault"),
        ("/srv/git/vault.git", None),
        ("../vault", None),
        ("file:///srv/git/acme/vault.git", None),
        ("https://example.com/vault.git", None),
    ],
)
def test_repository_from_url(url: str, repository: str | None) -> None:
    assert repository_from_url(url) == repository


# --- real repositories ----------------------------------------------------------------------


class Repo:
    """A throwaway git repository with commits by a fixed author."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        command = ["git", "-c", "user.name=Bill", "-c", "user.email=bill@acme.example"]
        command += ["-c", "commit.gpgsign=false", "-C", str(self.path), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()

    def write(self, path: str, text: str | bytes) -> None:
        target = self.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(textwrap.dedent(text))

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    # The developer's own git configuration (diff.noprefix, external diff drivers) stays out.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return Repo(tmp_path / "repo")


APPRAISAL_V1 = """\
    RATE = 2


    class Appraiser:
        def appraise(self, item):
            return item * RATE

        def legacy(self, item):
            return item


    def retired():
        return None
    """

APPRAISAL_V2 = """\
    RATE = 3


    class Appraiser:
        def appraise(self, item):
            cached = item * RATE
            return cached


    def added():
        return 1
    """


def by_file(changes: list[Change]) -> dict[str | None, Change]:
    return {change.file: change for change in changes}


def test_python_changes_name_changed_added_and_deleted_functions(repo: Repo) -> None:
    repo.write("src/vault/appraisal.py", APPRAISAL_V1)
    since = repo.commit("one")
    repo.write("src/vault/appraisal.py", APPRAISAL_V2)
    repo.commit("two")
    (change,) = changes_between(repo.path, since)
    assert change.file == "src/vault/appraisal.py"
    assert change.functions == (
        "vault.appraisal.Appraiser.appraise",
        "vault.appraisal.added",
        "vault.appraisal.Appraiser.legacy",
        "vault.appraisal.retired",
    )
    # Line 1 is the module-level RATE: it keeps its range without adding a name.
    assert change.lines[0] == (1, 1)


def test_non_python_renamed_deleted_binary_and_unparseable_files(repo: Repo) -> None:
    repo.write("README.md", "one\ntwo\nthree\n")
    repo.write("vault/moved.py", "def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    repo.write("vault/gone.py", "def bye():\n    return 1\n")
    repo.write("logo.png", b"\x89PNG\0\0\0one")
    repo.write("vault/broken.py", "def ok():\n    return 1\n")
    since = repo.commit("one")
    repo.write("README.md", "one\n2\nthree\n")
    (repo.path / "vault/moved.py").unlink()
    repo.write("vault/renamed.py", "def f():\n    return 1\n\n\ndef g():\n    return 22\n")
    (repo.path / "vault/gone.py").unlink()
    repo.write("logo.png", b"\x89PNG\0\0\0two")
    repo.write("vault/broken.py", "def ok(:\n    return 1\n")
    repo.commit("two")
    changes = by_file(changes_between(repo.path, since, "HEAD"))
    assert changes == {
        "README.md": Change("README.md", (), ((2, 2),)),
        "vault/renamed.py": Change("vault/renamed.py", ("vault.renamed.g",), ((6, 6),)),
        "vault/gone.py": Change("vault/gone.py", ("vault.gone.bye",), ()),
        "logo.png": Change("logo.png", (), ()),
        "vault/broken.py": Change("vault/broken.py", (), ((1, 1),)),
    }


TRACED_V1 = """\
    \"\"\"Vault appraisal.\"\"\"
    from opentelemetry import trace

    tracer = trace.get_tracer(__name__)


    def appraise(items):
        with tracer.start_as_current_span("appraise"):
            return sum(_weigh(i) for i in items)


    def _weigh(item):
        return item * 2
    """


def test_docstring_only_files_are_left_out_and_span_openers_are_traced(repo: Repo) -> None:
    repo.write("vault/__init__.py", '"""Vault 1."""\n')
    repo.write("vault/appraisal.py", TRACED_V1)
    since = repo.commit("one")
    repo.write("vault/__init__.py", '"""Vault 2, now with goblins."""\n')
    v2 = TRACED_V1.replace("sum(", "max(").replace("* 2", "* 3").replace("Vault app", "The app")
    repo.write("vault/appraisal.py", v2)
    repo.commit("two")
    assert changes_between(repo.path, since) == [
        Change(
            "vault/appraisal.py",
            ("vault.appraisal.appraise", "vault.appraisal._weigh"),
            ((9, 9), (13, 13)),
            traced=("vault.appraisal.appraise",),
        )
    ]


def test_a_file_deleted_outright_and_a_pure_rename(repo: Repo) -> None:
    repo.write("notes.txt", "a\nb\n")
    repo.write("pkg/old name.py", "def f():\n    return 1\n")
    since = repo.commit("one")
    (repo.path / "notes.txt").unlink()
    repo.git("mv", "pkg/old name.py", "pkg/new name.py")
    repo.commit("two")
    assert by_file(changes_between(repo.path, since)) == {
        "notes.txt": Change("notes.txt", (), ()),
        "pkg/new name.py": Change("pkg/new name.py", (), ()),
    }


def test_commit_info_and_remote(repo: Repo) -> None:
    repo.write("a.txt", "a\n")
    sha = repo.commit("Cache vault appraisals")
    info = gitdiff.commit_info(repo.path)
    assert info == gitdiff.CommitInfo(sha, "bill@acme.example", "Bill", "Cache vault appraisals")
    assert gitdiff.remote_repository(repo.path) is None
    repo.git("remote", "add", "origin", "git@github.com:acme/vault.git")
    assert gitdiff.remote_repository(repo.path) == "acme/vault"


def test_unknown_or_option_like_revisions_are_refused(repo: Repo, tmp_path: Path) -> None:
    repo.write("a.txt", "a\n")
    repo.commit("one")
    with pytest.raises(GitError, match="'nope': not a commit"):
        changes_between(repo.path, "nope")
    with pytest.raises(GitError, match="not a commit"):
        changes_between(repo.path, f"--output={tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
    with pytest.raises(GitError, match="not a git repository"):
        gitdiff.resolve_commit(tmp_path, "HEAD")


def test_an_unknown_commit_in_a_shallow_clone_says_so(repo: Repo, tmp_path: Path) -> None:
    repo.write("a.txt", "a\n")
    first = repo.commit("one")
    repo.write("a.txt", "b\n")
    repo.commit("two")
    shallow = tmp_path / "shallow"
    url = f"file://{repo.path}"
    subprocess.run(["git", "clone", "-q", "--depth=1", url, str(shallow)], check=True)
    with pytest.raises(GitError, match="shallow clone: fetch more history"):
        changes_between(shallow, first)
