"""Changed functions in the languages teams run, named as their instrumentation names them.

Each sample in ``code_samples/`` is a realistic source file; a test edits one line of it (as a
commit would), describes the change, and checks that exactly the function around that line is
named, with ``traced`` when it opens a span of its own. The reach tests then match those names
against spans made by the OpenTelemetry SDK carrying ``code.*`` attributes the way each
language's instrumentation writes them (both semantic-convention generations).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from feedbot.analysis import reach
from feedbot.policy import DetectionPolicy
from feedbot.releases import code
from feedbot.releases.event import Change
from feedbot.releases.pysource import Hunk
from feedbot.spans.model import CodeSeen
from feedbot.spans.semconv import code_location
from tests.fakes.sdk_spans import recording
from tests.unit.analysis.synth import Group, release

SAMPLES = Path(__file__).parent / "code_samples"
GO_PACKAGE = "github.com/acme/vault/deposits"

#: (sample, repository path, text of the line edited, the function named, traced)
EDITS = [
    ("Vault.java", "src/main/java/com/acme/vault/Vault.java", "return ledger.post(cents);",
     "com.acme.vault.Vault.deposit", True),
    ("Vault.java", "src/main/java/com/acme/vault/Vault.java", 'System.out.println("audit");',
     "com.acme.vault.Vault.audit", False),
    ("Vault.java", "src/main/java/com/acme/vault/Vault.java", "            return cents;",
     "com.acme.vault.Vault$Ledger.post", False),
    ("Vault.java", "src/main/java/com/acme/vault/Vault.java", "map(e -> e * 1)",
     "com.acme.vault.Vault.history", False),
    ("Deposits.kt", "src/main/kotlin/com/acme/vault/Deposits.kt",
     "return repository.add(account, -cents)",
     "com.acme.vault.DepositService.refund", True),
    ("Deposits.kt", "src/main/kotlin/com/acme/vault/Deposits.kt", "associateWith { repository",
     "com.acme.vault.DepositService.balances", False),
    ("Deposits.kt", "src/main/kotlin/com/acme/vault/Deposits.kt", 'println("opening $name")',
     "com.acme.vault.DepositsKt.openVault", False),
    ("Deposits.kt", "src/main/kotlin/com/acme/vault/Deposits.kt", "fun create(): DepositService",
     "com.acme.vault.DepositService$Companion.create", False),
    ("deposits.go", "deposits/deposits.go", "a.Cents += cents",
     f"{GO_PACKAGE}.(*Account).Deposit", True),
    ("deposits.go", "deposits/deposits.go", "total += a.Balance()", f"{GO_PACKAGE}.Sum", False),
    ("deposits.go", "deposits/deposits.go", "return a.Cents", f"{GO_PACKAGE}.Account.Balance",
     False),
    ("account.js", "src/vault/account.js", "this.cents += cents;", "vault.account.Account.deposit",
     True),
    ("account.js", "src/vault/account.js", "const euros = cents / 100;", "vault.account.format",
     False),
    ("account.js", "src/vault/account.js", "res.json({ balance: 1 });",
     "vault.account.handlers.show", False),
    ("ledger.ts", "src/vault/ledger.ts", ".filter((e) => e.account === account)",
     "vault.ledger.Ledger.settle", True),
    ("ledger.ts", "src/vault/ledger.ts", "console.log(`closing: ${reason}`);",
     "vault.ledger.Ledger.onClose", False),
    ("DepositService.cs", "src/Acme.Vault/DepositService.cs",
     'activity?.SetTag("vault.cents", cents);', "Acme.Vault.Deposits.DepositService.Deposit",
     True),
    ("DepositService.cs", "src/Acme.Vault/DepositService.cs",
     "long Lookup(string a) => _repository.Balance(a);",
     "Acme.Vault.Deposits.DepositService.Balances", False),
    ("DepositService.cs", "src/Acme.Vault/DepositService.cs", "Console.WriteLine(message);",
     "Acme.Vault.Deposits.DepositService+Audit.Record", False),
    ("vault.rb", "app/models/acme/vault.rb", "@repository.add(account, cents)",
     "Acme::Vault.deposit", True),
    ("vault.rb", "app/models/acme/vault.rb", 'puts "opening #{name}"', "Acme::Vault.open", False),
    ("vault.rb", "app/models/acme/vault.rb", "accounts.map { |a|", "Acme::Vault.balances", False),
    ("VaultController.php", "app/Http/Controllers/VaultController.php",
     "$cents = (int) $request->input('cents');",
     "App\\Http\\Controllers\\VaultController::deposit", True),
    ("VaultController.php", "app/Http/Controllers/VaultController.php",
     "return response()->json(['balance' => $this->repository->add(-1)]);",
     "App\\Http\\Controllers\\VaultController::refund", True),
    ("VaultController.php", "app/Http/Controllers/VaultController.php",
     "return array_map(fn ($a)", "App\\Http\\Controllers\\VaultController::balances", False),
]  # fmt: skip


def _edit(sample: str, needle: str) -> tuple[str, str, int]:
    old = (SAMPLES / sample).read_text()
    lines = old.splitlines(keepends=True)
    (number,) = [i for i, line in enumerate(lines, 1) if needle in line]
    # Re-spaced, as a formatter would: the code stays valid and the line is still changed.
    lines[number - 1] = lines[number - 1].replace(needle, needle.replace(" ", "  ", 1) + " ", 1)
    return old, "".join(lines), number


@pytest.mark.parametrize(("sample", "path", "needle", "name", "traced"), EDITS)
def test_an_edited_line_names_exactly_its_function(
    sample: str, path: str, needle: str, name: str, traced: bool
) -> None:
    old, new, line = _edit(sample, needle)
    change = code.describe(
        old_path=path, new_path=path, old=old, new=new, hunks=[Hunk(line, 1, line, 1)],
        go_package=GO_PACKAGE,
    )  # fmt: skip
    assert change is not None and change.file == path and change.lines == ((line, line),)
    assert change.functions == (name,)
    assert change.traced == ((name,) if traced else ())
    assert code.changed_functions(path, old, new, [(line, line)], go_package=GO_PACKAGE) == (
        code.ChangedFunction(name, traced),
    )


def test_overloads_share_the_name_instrumentation_gives_them() -> None:
    old = (SAMPLES / "Vault.java").read_text()
    spans = code.function_spans("Vault.java", old) or []
    names = [s.name for s in spans]
    assert names.count("com.acme.vault.Vault.deposit") == 2
    assert "com.acme.vault.Vault.<init>" in names
    # The anonymous Runnable's run() belongs to audit(), as does the lambda to history().
    assert not any(n.endswith(".run") for n in names)


@pytest.mark.parametrize(
    ("sample", "path", "comment"),
    [
        ("Vault.java", "Vault.java", "one account."),
        ("deposits.go", "deposits.go", "// Deposit adds cents to the account"),
        ("vault.rb", "vault.rb", "# frozen_string_literal: true"),
        ("VaultController.php", "VaultController.php", "<?php\n"),
    ],
)  # fmt: skip
def test_a_comment_only_hunk_is_no_change(sample: str, path: str, comment: str) -> None:
    old = (SAMPLES / sample).read_text()
    new = old.replace(
        comment, comment + " Reviewed." if comment != "<?php\n" else "<?php\n// Reviewed.\n", 1
    )
    (line,) = [i for i, text in enumerate(new.splitlines(), 1) if "Reviewed." in text]
    hunks = [Hunk(line, 1, line, 1) if old.count("\n") == new.count("\n") else Hunk(1, 0, line, 1)]
    assert code.describe(old_path=path, new_path=path, old=old, new=new, hunks=hunks) is None


def test_a_deleted_method_is_named_from_the_old_side() -> None:
    old = (SAMPLES / "vault.rb").read_text()
    lines = old.splitlines(keepends=True)
    start = next(i for i, text in enumerate(lines) if "def balances" in text)
    new = "".join(lines[:start] + lines[start + 4 :])
    hunk = Hunk(start + 1, 4, start, 0)
    change = code.describe(old_path="vault.rb", new_path="vault.rb", old=old, new=new, hunks=[hunk])
    assert change is not None and "Acme::Vault.balances" in change.functions


COMMONJS = """\
const tracer = require("@opentelemetry/api").trace.getTracer("payment");
module.exports.charge = async (request) => {
  return tracer.startActiveSpan("charge", (span) => span.end());
};
exports.refund = function (request) {
  return request.amount;
};
Ledger.prototype.post = function (entry) {
  return entry;
};
module.exports = function () {};
"""


def test_commonjs_exports_and_prototype_methods_are_named() -> None:
    spans = code.function_spans("src/payment/charge.js", COMMONJS)
    assert spans is not None
    assert [(s.name, s.start, s.end, s.traced) for s in spans] == [
        ("payment.charge.charge", 2, 4, True),
        ("payment.charge.refund", 5, 7, False),
        ("payment.charge.Ledger.post", 8, 10, False),
    ]  # `module.exports = function` names nothing the module path does not already say


def test_other_files_are_not_read() -> None:
    assert not code.reads("README.md") and not code.reads("vault/app.py")
    assert code.function_spans("notes.txt", "x") is None


# --- reach: spans as each language's instrumentation writes code.* ---------------------------

#: (sample, path, needle, attributes on the span that ran the function)
SPANS = [
    # Java agent, @WithSpan: the old generation's class + method.
    ("Vault.java", "Vault.java", "return ledger.post(cents);",
     {"code.namespace": "com.acme.vault.Vault", "code.function": "deposit"}),
    # The current generation: code.function.name fully qualified.
    ("Deposits.kt", "Deposits.kt", "return repository.add(account, -cents)",
     {"code.function.name": "com.acme.vault.DepositService.refund"}),
    ("Deposits.kt", "Deposits.kt", "fun create(): DepositService",
     {"code.namespace": "com.acme.vault.DepositService$Companion", "code.function": "create"}),
    # Go: the package path + function, as runtime.FuncForPC names it.
    ("deposits.go", "deposits/deposits.go", "a.Cents += cents",
     {"code.function.name": f"{GO_PACKAGE}.(*Account).Deposit"}),
    ("deposits.go", "deposits/deposits.go", "a.Cents += cents",
     {"code.namespace": GO_PACKAGE, "code.function": "(*Account).Deposit"}),
    # .NET: namespace + type, then the method.
    ("DepositService.cs", "DepositService.cs", 'activity?.SetTag("vault.cents", cents);',
     {"code.namespace": "Acme.Vault.Deposits.DepositService", "code.function": "Deposit"}),
    ("DepositService.cs", "DepositService.cs", "Console.WriteLine(message);",
     {"code.function.name": "Acme.Vault.Deposits.DepositService+Audit.Record"}),
    # Ruby contrib: the class as code.namespace.
    ("vault.rb", "vault.rb", "@repository.add(account, cents)",
     {"code.namespace": "Acme::Vault", "code.function": "deposit"}),
    # PHP (Laravel controllers): namespace + function; the new generation's Class::method.
    ("VaultController.php", "VaultController.php", "$cents = (int) $request->input('cents');",
     {"code.namespace": "App\\Http\\Controllers\\VaultController", "code.function": "deposit"}),
    ("VaultController.php", "VaultController.php",
     "return response()->json(['balance' => $this->repository->add(-1)]);",
     {"code.function.name": "App\\Http\\Controllers\\VaultController::refund"}),
    # Node: manual spans with the class and method, the file for the path.
    ("account.js", "src/vault/account.js", "this.cents += cents;",
     {"code.function.name": "Account.deposit", "code.file.path": "/srv/app/src/vault/account.js"}),
    ("ledger.ts", "src/vault/ledger.ts", ".filter((e) => e.account === account)",
     {"code.function": "settle", "code.namespace": "Ledger"}),
]  # fmt: skip


def _seen(attributes: dict[str, str], count: int) -> CodeSeen:
    """The code location of a span the OpenTelemetry SDK recorded with these attributes."""
    with recording({}, "test") as (tracer, spans):
        tracer.start_span("work", attributes=attributes).end()
    (span,) = spans
    function, path, line = code_location(dict(span.attributes or {}))
    return CodeSeen(function, path, line, count)


@pytest.mark.parametrize(("sample", "path", "needle", "attributes"), SPANS)
def test_reach_matches_each_languages_code_attributes(
    sample: str, path: str, needle: str, attributes: dict[str, str]
) -> None:
    import numpy as np

    old, new, line = _edit(sample, needle)
    change = code.describe(
        old_path=path, new_path=path, old=old, new=new, hunks=[Hunk(line, 1, line, 1)],
        go_package=GO_PACKAGE,
    )  # fmt: skip
    assert change is not None and len(change.functions) == 1
    other = _seen({"code.function.name": "com.other.Unrelated.work"}, 200)
    rng = np.random.default_rng(3)
    ran = release(rng, [Group("POST /deposits", 400, code=(_seen(attributes, 137), other))])
    (found,), _ = reach.code_reach([change], ran, None, DetectionPolicy())
    assert found.status == "reached" and found.hits == 137
    idle = release(rng, [Group("POST /deposits", 400, code=(other,))])
    (missed,), _ = reach.code_reach([change], idle, None, DetectionPolicy())
    # Functions that open a span would have named themselves: their absence is a finding.
    assert missed.status == ("not_reached" if change.traced else "unknown")


def test_a_change_elsewhere_is_not_matched() -> None:
    change = Change(file="Vault.java", functions=("com.acme.vault.Vault.deposit",))
    seen = _seen({"code.namespace": "com.acme.vault.Ledger", "code.function": "deposit"}, 5)
    assert not reach.matches(reach._Target(change.functions[0], None, ()), seen)


# --- notify-deploy: a git range with Go (module path from go.mod), Java and TypeScript ---------


def test_changes_between_names_functions_in_every_language(tmp_path: Path) -> None:
    import os
    import subprocess

    from feedbot.releases.gitdiff import changes_between

    root = tmp_path / "repo"
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(tmp_path / "none"), "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args: str) -> str:
        command = ["git", "-c", "user.name=Bill", "-c", "user.email=bill@acme.example"]
        command += ["-c", "commit.gpgsign=false", "-C", str(root), *args]
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        return done.stdout.strip()

    files = {
        "svc/go.mod": "module github.com/acme/vault\n\ngo 1.22\n",
        "svc/deposits/deposits.go": "deposits.go",
        "api/src/main/java/com/acme/vault/Vault.java": "Vault.java",
        "web/src/vault/ledger.ts": "ledger.ts",
    }
    root.mkdir()
    git("init", "-q", "-b", "main")
    for path, sample in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(sample if path.endswith("go.mod") else (SAMPLES / sample).read_text())
    git("add", "-A")
    git("commit", "-q", "-m", "one")
    since = git("rev-parse", "HEAD")
    for path, needle in [
        ("svc/deposits/deposits.go", "a.Cents += cents"),
        ("api/src/main/java/com/acme/vault/Vault.java", "            return cents;"),
        ("web/src/vault/ledger.ts", "this.entries.push(entry);"),
    ]:
        target = root / path
        target.write_text(target.read_text().replace(needle, needle + " // reviewed"))
    git("commit", "-q", "-am", "two")
    found = {c.file: (c.functions, c.traced) for c in changes_between(root, since)}
    assert found == {
        "svc/deposits/deposits.go": (
            ("github.com/acme/vault/deposits.(*Account).Deposit",),
            ("github.com/acme/vault/deposits.(*Account).Deposit",),
        ),
        "api/src/main/java/com/acme/vault/Vault.java": (
            ("com.acme.vault.Vault$Ledger.post",),
            (),
        ),
        "web/src/vault/ledger.ts": (("vault.ledger.Ledger.post",), ()),
    }
