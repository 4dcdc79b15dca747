"""benchmarks.code_extraction: its core on a throwaway repository with Go and Python commits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import code_extraction
from benchmarks.code_extraction import deploys, extract, measure, prepare, prepare_all, table

GO_MOD = "module github.com/acme/vault\n\ngo 1.22\n"

GO_V1 = """\
package deposits

import "context"

// Deposit adds an amount to an account.
func Deposit(ctx context.Context, account string, amount int) error {
\treturn nil
}

func Withdraw(ctx context.Context, account string, amount int) error {
\treturn nil
}
"""

GO_V2 = """\
package deposits

import (
\t"context"
\t"errors"
)

// Deposit adds an amount to an account.
func Deposit(ctx context.Context, account string, amount int) error {
\tif amount <= 0 {
\t\treturn errors.New("amount must be positive")
\t}
\treturn nil
}

func Withdraw(ctx context.Context, account string, amount int) error {
\treturn nil
}
"""

PY_V1 = """\
RATE = 2


def appraise(item):
    return item.value * RATE


class Appraiser:
    def run(self, items):
        return [appraise(i) for i in items]

    def old(self):
        return None
"""

PY_V2 = """\
RATE = 2


def appraise(item):
    # a comment only: no change to the code
    return item.value * RATE


class Appraiser:
    def run(self, items):
        return sorted(appraise(i) for i in items)
"""


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=Bill", "-c", "user.email=bill@acme.example"]
    command += ["-c", "commit.gpgsign=false", "-C", str(repo), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> None:
    for path, text in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _commit(
        path,
        {"go.mod": GO_MOD, "deposits/deposit.go": GO_V1, "vault/appraisal.py": PY_V1},
        "vault: deposits and appraisals",
    )
    _commit(
        path,
        {"deposits/deposit.go": GO_V2, "vault/appraisal.py": PY_V2, "README.md": "# vault\n"},
        "refuse non-positive deposits; sort appraisals; drop Appraiser.old",
    )
    return path


def test_rows_count_files_lines_and_functions_per_language(repo: Path) -> None:
    files = prepare(repo, "HEAD~1", "HEAD")
    # README.md is no language feedbot reads; go.mod did not change.
    assert sorted((f.language, f.entry.new_path) for f in files) == [
        ("go", "deposits/deposit.go"),
        ("python", "vault/appraisal.py"),
    ]
    named = {f.language: extract(f) for f in files}
    assert named["go"] is not None and named["python"] is not None
    assert named["go"].functions == ("github.com/acme/vault/deposits.Deposit",)
    assert named["python"].functions == (
        "vault.appraisal.Appraiser.run",
        "vault.appraisal.Appraiser.old",
    )
    rows = measure(files, repeat=2)
    assert [(r.language, r.files, r.changed_lines, r.functions) for r in rows] == [
        # import "context" → import (…) is 1 removed + 4 added; the guard is 3 added.
        ("go", 1, 8, 1),
        # the comment (1 added), run's line (1 + 1), old's 2 lines and the blank before them;
        # the functions are Appraiser.run and the deleted Appraiser.old, not appraise.
        ("python", 1, 6, 2),
    ]
    assert all(r.median_ms > 0 and r.parsed_bytes > 0 for r in rows)
    printed = table(rows).splitlines()
    assert printed[1].split()[:4] == ["go", "1", "8", "1"]
    assert printed[-1].split()[:4] == ["all", "2", "14", "3"]
    assert "none found" not in table(rows)


def test_a_language_with_changes_but_no_function_is_flagged(repo: Path) -> None:
    _commit(repo, {"deposits/limits.go": "package deposits\n\nconst Max = 10\n"}, "a limit")
    rows = measure(prepare(repo, "HEAD~1", "HEAD"), repeat=1)
    assert [(r.language, r.changed_lines, r.functions) for r in rows] == [("go", 3, 0)]
    assert table(rows).splitlines()[1].endswith("<- none found")


def test_each_commit_as_its_own_deploy_counts_a_file_once_per_commit(repo: Path) -> None:
    _commit(repo, {"deposits/deposit.go": GO_V2.replace("<= 0", "< 1")}, "deposits: at least 1")
    ranges = deploys(repo, "HEAD~2", "HEAD", each=True)
    heads = _git(repo, "rev-list", "--reverse", "HEAD~2..HEAD").split()
    assert [until for _, until in ranges] == heads
    assert ranges[1][0] == heads[0]
    rows = measure(prepare_all(repo, ranges), repeat=1)
    assert [(r.language, r.files, r.changed_lines, r.functions) for r in rows] == [
        ("go", 2, 10, 2),
        ("python", 1, 6, 2),
    ]
    # The net diff of the same range: the Go file once.
    net = measure(prepare_all(repo, deploys(repo, "HEAD~2", "HEAD", each=False)), repeat=1)
    assert [(r.language, r.files, r.changed_lines) for r in net] == [("go", 1, 8), ("python", 1, 6)]


def test_main_prints_the_table_and_refuses_a_bad_range(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert code_extraction.main(["--repo", str(repo), "--commits", "300", "--repeat", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("HEAD~1..HEAD in ")
    assert [line.split()[0] for line in out[2:5]] == ["go", "python", "all"]
    # README.md is described too (its lines only): three files in all.
    assert out[5].startswith("changes_between end to end, git reads included: 3 files, ")
    assert code_extraction.main(["--repo", str(repo), "--range", "HEAD~1"]) == 2
    assert "--range: 'HEAD~1' is not A..B" in capsys.readouterr().err
