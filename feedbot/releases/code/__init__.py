"""Changed functions in Java, Kotlin, Go, JavaScript, TypeScript, C#, Ruby and PHP files.

The sibling of :mod:`feedbot.releases.pysource` (which keeps Python, parsed with ``ast``) for the
other languages teams run, parsed with tree-sitter (:mod:`~feedbot.releases.code.grammars`). Pure:
the caller reads the files and the diff. A changed function is named as that language's
OpenTelemetry instrumentation names it in ``code.*``, so :mod:`feedbot.analysis.reach` can match
it against the spans:

- Java (the agent's ``code.namespace`` is the class, ``Class.getName()``):
  ``com.acme.Vault.deposit``, nested classes ``com.acme.Vault$Ledger.post``, constructors
  ``<init>``; Kotlin likewise, and a top-level function is a method of the file's class
  (``com.acme.VaultKt.open``, or its ``@file:JvmName``).
- C# (namespace + type + method, ``Type.FullName``): ``Acme.Vault.DepositService.Deposit``,
  nested types joined with ``+``, constructors ``.ctor``.
- Go (the runtime's function name): ``github.com/acme/vault/deposits.Deposit``,
  ``github.com/acme/vault/deposits.(*Account).Deposit``; package ``main`` is ``main``.
- Ruby (``code.namespace`` is the class): ``Acme::Vault.deposit``.
- PHP (``code.function.name``'s own example, ``GuzzleHttp\\Client::transfer``):
  ``App\\Http\\VaultController::deposit``.
- JavaScript and TypeScript (no instrumentation sets a name; the file's module path qualifies it):
  ``vault.account.Account.deposit``, ``vault.routes.handler`` for ``const handler = () => …``.

Lambdas, closures, blocks and anonymous classes belong to the named function around them. A
function is *traced* when its own code (not a named function nested in it) opens a span: an
annotation such as ``@WithSpan`` / ``#[WithSpan]``, or a call such as ``startActiveSpan``,
``tracer.Start(ctx, …)``, ``StartActivity``, ``in_span`` or ``spanBuilder(…)->startSpan()``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from tree_sitter import Node

from feedbot.releases.code.grammars import Grammar, grammar_for, parser
from feedbot.releases.event import Change
from feedbot.releases.pysource import (
    FunctionSpan,
    Hunk,
    LineRange,
    deleted_functions,
    functions_for_lines,
    merge_ranges,
    touches_code,
)

__all__ = [
    "ChangedFunction",
    "changed_functions",
    "code_lines",
    "describe",
    "function_spans",
    "grammar_for",
    "reads",
]

Source = str | bytes
_LAST_WORD = re.compile(r"([A-Za-z_$][\w$]*)\W*$")
_JVM_NAME = re.compile(rb"@file\s*:\s*JvmName\s*\(\s*\"([^\"]+)\"")


@dataclass(frozen=True)
class ChangedFunction:
    """A changed function, named as its language's instrumentation names it."""

    name: str
    traced: bool


@dataclass(frozen=True)
class _Scope:
    kind: str  # "type" | "function" | "namespace"
    name: str


def reads(path: str) -> bool:
    """Whether changed functions of this file can be found here (by its suffix)."""
    return grammar_for(path) is not None


def _bytes(source: Source) -> bytes:
    return source.encode("utf-8", "surrogateescape") if isinstance(source, str) else source


def function_spans(
    path: str, source: Source, *, go_package: str | None = None
) -> list[FunctionSpan] | None:
    """Every named function and method of a file, outer before inner, qualified.

    Args:
        path: the file's repository path (its suffix picks the language; JavaScript and
            TypeScript names, and Go's without ``go_package``, are qualified by it).
        source: the file's text.
        go_package: the Go import path of the file's directory (from ``go.mod``).

    Returns:
        Spans named as instrumentation names them (see the module docstring), or None when
        feedbot does not read this language.
    """
    grammar = grammar_for(path)
    if grammar is None:
        return None
    text = _bytes(source)
    root = parser(grammar).parse(text).root_node
    walker = _Walker(grammar, path, text, go_package)
    walker.walk(root, walker.top_scopes(root))
    return walker.spans


def code_lines(path: str, source: Source) -> frozenset[int] | None:
    """The lines holding code: any token that is not part of a comment (None: language unread)."""
    grammar = grammar_for(path)
    if grammar is None:
        return None
    root = parser(grammar).parse(_bytes(source)).root_node
    found: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if node.type in grammar.comments:
            continue
        if node.child_count == 0:
            if node.end_byte > node.start_byte:
                found.update(range(node.start_point[0] + 1, node.end_point[0] + 2))
            continue
        todo.extend(node.children)
    return frozenset(found)


def changed_functions(
    path: str,
    old_text: Source | None,
    new_text: Source | None,
    line_ranges: Sequence[LineRange],
    *,
    go_package: str | None = None,
) -> tuple[ChangedFunction, ...]:
    """The functions a change touched: those holding changed new lines, then deleted ones.

    Args:
        path: the file's repository path.
        old_text: the file before (None when added).
        new_text: the file after (None when deleted).
        line_ranges: changed line ranges on the new side.
        go_package: the Go import path of the file's directory.

    Returns:
        Innermost named functions in order of their first changed line, then the old side's
        functions the new side no longer has; ``traced`` when the function opens a span.
    """
    new = function_spans(path, new_text, go_package=go_package) if new_text is not None else []
    old = function_spans(path, old_text, go_package=go_package) if old_text is not None else []
    new, old = new or [], old or []
    names = functions_for_lines(new, line_ranges, "") + deleted_functions(old, new, "")
    opening = {s.name for s in new if s.traced} | {s.name for s in old if s.traced}
    return tuple(ChangedFunction(name, name in opening) for name in names)


def describe(
    *,
    old_path: str | None,
    new_path: str | None,
    old: Source | None,
    new: Source | None,
    hunks: Sequence[Hunk],
    go_package: str | None = None,
) -> Change | None:
    """The change to one file in a language of :data:`~.grammars.GRAMMARS`.

    As :func:`feedbot.releases.pysource.describe`: None when every hunk only touches comments
    and blank lines; else the file, the innermost functions its code hunks fall in plus the
    functions it deleted, the new-side line ranges, and the changed functions that open a span.
    """
    path = new_path or old_path or ""
    old_code = frozenset[int]() if old is None else code_lines(old_path or path, old)
    new_code = frozenset[int]() if new is None else code_lines(path, new)
    kept = [h for h in hunks if touches_code(h, old_code, new_code)]
    if hunks and not kept:
        return None
    lines = merge_ranges(h.new_range for h in kept) if new_path is not None else ()
    new_spans = function_spans(path, new, go_package=go_package) if new is not None else None
    old_spans = (
        function_spans(old_path or path, old, go_package=go_package) if old is not None else None
    )
    functions: tuple[str, ...] = ()
    traced: tuple[str, ...] = ()
    if new_spans is not None and new_path is not None:
        functions = functions_for_lines(new_spans, lines, "")
        opening = {s.name for s in new_spans if s.traced}
        traced = tuple(f for f in functions if f in opening)
    if old_spans is not None and old_path is not None:
        functions += deleted_functions(old_spans, new_spans or [], "")
    return Change(file=new_path or old_path, functions=functions, lines=lines, traced=traced)


def js_module(path: str) -> str:
    """The dotted module of a JavaScript/TypeScript path: ``web/src/vault/index.ts`` → ``vault``.

    The path is taken from below its last ``src`` folder (a monorepo's package roots), if any.
    """
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if "src" in parts[:-1]:
        parts = parts[len(parts) - 1 - parts[::-1].index("src") + 1 :]
    if parts[-1:] == ["index"]:
        parts = parts[:-1]
    return ".".join(parts)


class _Walker:
    def __init__(self, grammar: Grammar, path: str, text: bytes, go_package: str | None):
        self.grammar, self.path, self.text, self.go_package = grammar, path, text, go_package
        self.spans: list[FunctionSpan] = []

    # --- scopes and names ---------------------------------------------------------------

    def top_scopes(self, root: Node) -> list[_Scope]:
        g = self.grammar.name
        if g in ("javascript", "typescript", "tsx"):
            module = js_module(self.path)
            return [_Scope("namespace", module)] if module else []
        if g == "go":
            return [_Scope("namespace", self._go_package(root))]
        return []

    def _go_package(self, root: Node) -> str:
        clause = next((c for c in root.named_children if c.type == "package_clause"), None)
        name = _text(clause.named_children[-1]) if clause and clause.named_children else ""
        if name == "main":
            return "main"
        if self.go_package:
            return self.go_package
        return str(PurePosixPath(self.path).parent).removeprefix(".") or name

    def _name(self, node: Node) -> str | None:
        g = self.grammar.name
        if node.type == "companion_object":
            named = _first(node, "identifier", "type_identifier", "simple_identifier")
            return _text(named) if named else "Companion"
        if node.type == "constructor_declaration":
            return "<init>" if g == "java" else ".ctor"
        if node.type == "compact_constructor_declaration":
            return "<init>"
        if node.type == "secondary_constructor":
            return "<init>"
        if node.type == "package_header":
            named = _first(node, "qualified_identifier", "identifier")
            return _text(named) if named else None
        if node.type == "package_declaration":
            named = _first(node, "scoped_identifier", "identifier")
            return _text(named) if named else None
        name = node.child_by_field_name("name")
        if name is None and g == "kotlin":
            name = _first(node, "identifier", "simple_identifier", "type_identifier")
        return _text(name) if name is not None else None

    def _qualify(self, scopes: Sequence[_Scope], name: str, node: Node) -> str:
        g = self.grammar.name
        ns = [s.name for s in scopes if s.kind == "namespace"]
        types = [s.name for s in scopes if s.kind != "namespace"]
        if g == "go":
            receiver = _go_receiver(node)
            return ".".join([*ns, *([receiver] if receiver else []), name])
        if g == "php":
            owner = "\\".join([*ns, *types[:1]])
            if types:
                return f"{owner}::{name}"
            return f"{owner}\\{name}" if owner else name
        if g == "ruby":
            owner = "::".join(types)
            return f"{owner}.{name}" if owner else name
        if g in ("java", "kotlin"):
            if g == "kotlin" and not types:
                types = [self._kotlin_file_class()]
            return ".".join([*ns, "$".join(types), name])
        if g == "csharp":
            return ".".join([*ns, "+".join(types), name]) if types else ".".join([*ns, name])
        return ".".join([*ns, *types, name])

    def _kotlin_file_class(self) -> str:
        match = _JVM_NAME.search(self.text)
        if match:
            return match[1].decode("utf-8", "replace")
        stem = PurePosixPath(self.path).stem
        return stem[:1].upper() + stem[1:] + "Kt"

    # --- the walk -----------------------------------------------------------------------

    def walk(self, node: Node, scopes: list[_Scope]) -> None:
        g = self.grammar
        scopes = list(scopes)
        for child in node.named_children:
            kind = child.type
            if kind in g.opaque:
                continue
            if kind in g.namespaces:
                name = self._name(child)
                body = child.child_by_field_name("body")
                if body is None and kind != "package_header" and kind != "package_declaration":
                    body = _first(child, "declaration_list", "compound_statement")
                if name is None:
                    continue
                if body is None:  # Applies to the declarations that follow it.
                    scopes = [s for s in scopes if s.kind != "namespace"]
                    scopes.append(_Scope("namespace", name))
                else:
                    outer = [*scopes, _Scope("namespace", name)]
                    self.walk(body, outer)
                continue
            if kind in g.functions or self._named_value(child):
                self._function(child, scopes)
            elif kind in g.types:
                name = self._name(child)
                self.walk(child, [*scopes, _Scope("type", name)] if name else scopes)
            elif g.name in ("javascript", "typescript", "tsx") and self._object_scope(child):
                declared = child.child_by_field_name("name")
                label = _text(declared) if declared is not None else ""
                self.walk(child, [*scopes, _Scope("type", label)])
            else:
                self.walk(child, scopes)

    def _named_value(self, node: Node) -> bool:
        """``const f = () => …``, ``f = () => …`` in a class, ``{ f: function () … }``, and
        CommonJS's ``exports.f = …`` / ``module.exports.f = …`` / ``Foo.prototype.f = …``."""
        if self.grammar.name not in ("javascript", "typescript", "tsx"):
            return False
        if node.type == "assignment_expression":
            right = node.child_by_field_name("right")
            return (
                right is not None
                and right.type in self.grammar.anonymous
                and _assigned_name(node) is not None
            )
        if node.type not in ("variable_declarator", "public_field_definition",
                             "field_definition", "pair"):  # fmt: skip
            return False
        value = node.child_by_field_name("value")
        return value is not None and value.type in self.grammar.anonymous

    def _object_scope(self, node: Node) -> bool:
        value = node.child_by_field_name("value")
        declared = node.child_by_field_name("name")
        return (
            node.type == "variable_declarator"
            and value is not None
            and value.type == "object"
            and declared is not None
            and declared.type == "identifier"
        )

    def _function(self, node: Node, scopes: list[_Scope]) -> None:
        if node.type == "assignment_expression":
            name = _assigned_name(node)
        elif self._named_value(node):
            key = (
                node.child_by_field_name("key")
                if node.type == "pair"
                else node.child_by_field_name("name") or node.child_by_field_name("property")
            )
            name = _text(key).strip("'\"") if key is not None else None
        else:
            name = self._name(node)
        if not name:
            self.walk(node, scopes)
            return
        start = node.start_point[0] + 1
        before = node.prev_named_sibling
        while before is not None and before.type == "decorator":  # TypeScript decorators
            start = before.start_point[0] + 1
            before = before.prev_named_sibling
        qualified = self._qualify(scopes, name, node)
        traced = self._opens_span(node)
        self.spans.append(FunctionSpan(qualified, start, node.end_point[0] + 1, traced))
        self.walk(node, [*scopes, _Scope("function", name)])

    def _opens_span(self, function: Node) -> bool:
        g = self.grammar
        todo = list(function.named_children)
        if function.prev_named_sibling is not None and function.prev_named_sibling.type in (
            "decorator",
        ):
            todo.append(function.prev_named_sibling)
        while todo:
            node = todo.pop()
            if node.type in g.functions or node.type in g.types or self._named_value(node):
                continue  # A named definition inside is a function of its own.
            if node.type in g.annotations and _annotation_name(node) in g.span_annotations:
                return True
            if node.type in g.calls and self._is_opener(node):
                return True
            todo.extend(node.named_children)
        return False

    def _is_opener(self, call: Node) -> bool:
        field = self.grammar.calls[call.type]
        callee = call.child_by_field_name(field) if field else _first_named(call)
        if callee is None:
            return False
        match = _LAST_WORD.search(_text(callee).split("(")[-1] if not field else _text(callee))
        if match is None or match[1] not in self.grammar.openers:
            return False
        return _argument_count(call) >= self.grammar.openers[match[1]]


def _assigned_name(assignment: Node) -> str | None:
    """The function's name in ``exports.f = …``, ``module.exports.f = …`` (``f``) or
    ``Foo.prototype.f = …`` (``Foo.f``); None for any other left-hand side (``module.exports =
    …`` names nothing: the module path already says which file it is)."""
    left = assignment.child_by_field_name("left")
    if left is None or left.type != "member_expression":
        return None
    prop = left.child_by_field_name("property")
    owner = left.child_by_field_name("object")
    if prop is None or owner is None:
        return None
    path = _text(owner).replace(" ", "")
    if path in ("exports", "module.exports"):
        return _text(prop)
    if path.endswith(".prototype") and path.count(".") == 1:
        return f"{path.split('.')[0]}.{_text(prop)}"
    return None


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _first(node: Node, *types: str) -> Node | None:
    return next((c for c in node.named_children if c.type in types), None)


def _first_named(node: Node) -> Node | None:
    return node.named_children[0] if node.named_children else None


def _annotation_name(node: Node) -> str:
    name = node.child_by_field_name("name")
    text = _text(name) if name is not None else _text(node).lstrip("@#[").split("(")[0]
    match = _LAST_WORD.search(text.split("(")[0].rstrip("]"))
    return match[1] if match else ""


def _argument_count(call: Node) -> int:
    arguments = call.child_by_field_name("arguments") or next(
        (c for c in call.named_children if "argument" in c.type), None
    )
    if arguments is None:
        return 0
    return sum(1 for c in arguments.named_children if c.type not in ("comment",))


def _go_receiver(node: Node) -> str | None:
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return None
    kind = next(_descendants(receiver, "type_identifier"), None)
    if kind is None:
        return None
    pointer = any(True for _ in _descendants(receiver, "pointer_type"))
    return f"(*{_text(kind)})" if pointer else _text(kind)


def _descendants(node: Node, kind: str) -> Iterator[Node]:
    todo = [node]
    while todo:
        current = todo.pop()
        if current.type == kind:
            yield current
        todo.extend(reversed(current.named_children))
