"""The languages feedbot reads changed code in, beyond Python: one table row per language.

Each :class:`Grammar` names the tree-sitter node types that matter for a changed function: the
functions (and the anonymous ones that belong to the function around them), the types and
namespaces that qualify a name, comments, and how a function opens a span of its own (a call
such as ``tracer.startActiveSpan`` or an annotation such as ``@WithSpan``). The grammars are the
tree-sitter project's own wheels (``tree-sitter-java``, ``tree-sitter-go``, …); each is loaded
once, on first use, and its parser kept per thread.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePosixPath

from tree_sitter import Language, Parser

__all__ = ["GRAMMARS", "Grammar", "grammar_for", "parser"]


@dataclass(frozen=True)
class Grammar:
    """How one language's syntax tree shows functions, their names and their spans.

    Attributes:
        name: The language (``java``, ``go``, …).
        module: The grammar's Python module and the function in it that returns the language.
        extensions: File suffixes, lower case, with the dot.
        functions: Node types of named functions and methods.
        anonymous: Node types of functions without a name (lambdas, closures, blocks): their
            lines belong to the named function around them.
        opaque: Node types whose functions belong to the function around them as well
            (anonymous classes: the JVM names them ``Outer$1``, nothing a diff reader knows).
        types: Node types of classes, interfaces, modules and objects that qualify a name.
        namespaces: Node types of packages and namespaces that qualify a name.
        comments: Node types of comments (a hunk of only these is no change to the code).
        calls: Node types of calls, with the field that holds the callee (None: first child).
        openers: Callee names that open a span, with the fewest arguments they take.
        annotations: Node types of annotations and attributes.
        span_annotations: Annotation names that make the function open a span.
    """

    name: str
    module: tuple[str, str]
    extensions: tuple[str, ...]
    functions: frozenset[str]
    anonymous: frozenset[str] = frozenset()
    opaque: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    comments: frozenset[str] = frozenset({"comment"})
    calls: Mapping[str, str | None] = field(default_factory=dict)
    openers: Mapping[str, int] = field(default_factory=dict)
    annotations: frozenset[str] = frozenset()
    span_annotations: frozenset[str] = frozenset({"WithSpan"})


_JS_FUNCTIONS = frozenset(
    {"function_declaration", "generator_function_declaration", "method_definition"}
)
_JS_ANONYMOUS = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function"}
)
_JS_TYPES = frozenset({"class_declaration", "class", "abstract_class_declaration"})
_JS_OPENERS = {"startActiveSpan": 1, "startSpan": 1}


def _javascript(name: str, module: tuple[str, str], extensions: tuple[str, ...]) -> Grammar:
    """JavaScript and its TypeScript dialects: the same functions, classes and span openers."""
    return Grammar(
        name=name,
        module=module,
        extensions=extensions,
        functions=_JS_FUNCTIONS,
        anonymous=_JS_ANONYMOUS,
        types=_JS_TYPES,
        calls={"call_expression": "function"},
        openers=_JS_OPENERS,
    )


GRAMMARS: tuple[Grammar, ...] = (
    Grammar(
        name="java",
        module=("tree_sitter_java", "language"),
        extensions=(".java",),
        functions=frozenset(
            {"method_declaration", "constructor_declaration", "compact_constructor_declaration"}
        ),
        anonymous=frozenset({"lambda_expression"}),
        opaque=frozenset({"object_creation_expression"}),
        types=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "annotation_type_declaration",
            }
        ),
        namespaces=frozenset({"package_declaration"}),
        comments=frozenset({"line_comment", "block_comment"}),
        calls={"method_invocation": "name"},
        openers={"startSpan": 0},
        annotations=frozenset({"annotation", "marker_annotation"}),
    ),
    Grammar(
        name="kotlin",
        module=("tree_sitter_kotlin", "language"),
        extensions=(".kt", ".kts"),
        functions=frozenset({"function_declaration", "secondary_constructor"}),
        anonymous=frozenset({"lambda_literal", "anonymous_function"}),
        opaque=frozenset({"object_literal"}),
        types=frozenset({"class_declaration", "object_declaration", "companion_object"}),
        namespaces=frozenset({"package_header"}),
        comments=frozenset({"line_comment", "block_comment", "multiline_comment", "comment"}),
        calls={"call_expression": None},
        openers={"startSpan": 0},
        annotations=frozenset({"annotation"}),
    ),
    Grammar(
        name="go",
        module=("tree_sitter_go", "language"),
        extensions=(".go",),
        functions=frozenset({"function_declaration", "method_declaration"}),
        anonymous=frozenset({"func_literal"}),
        calls={"call_expression": "function"},
        # tracer.Start(ctx, name, opts...): two arguments at least, unlike server.Start().
        openers={"Start": 2},
    ),
    _javascript(
        "javascript", ("tree_sitter_javascript", "language"), (".js", ".mjs", ".cjs", ".jsx")
    ),
    _javascript(
        "typescript", ("tree_sitter_typescript", "language_typescript"), (".ts", ".mts", ".cts")
    ),
    _javascript("tsx", ("tree_sitter_typescript", "language_tsx"), (".tsx",)),
    Grammar(
        name="csharp",
        module=("tree_sitter_c_sharp", "language"),
        extensions=(".cs",),
        functions=frozenset({"method_declaration", "constructor_declaration"}),
        anonymous=frozenset(
            {"lambda_expression", "anonymous_method_expression", "local_function_statement"}
        ),
        types=frozenset(
            {
                "class_declaration",
                "struct_declaration",
                "interface_declaration",
                "record_declaration",
                "record_struct_declaration",
            }
        ),
        namespaces=frozenset({"namespace_declaration", "file_scoped_namespace_declaration"}),
        calls={"invocation_expression": "function"},
        openers={"StartActivity": 0, "StartActiveSpan": 1, "StartSpan": 1},
        annotations=frozenset({"attribute"}),
    ),
    Grammar(
        name="ruby",
        module=("tree_sitter_ruby", "language"),
        extensions=(".rb",),
        functions=frozenset({"method", "singleton_method"}),
        anonymous=frozenset({"block", "do_block", "lambda"}),
        types=frozenset({"class", "module"}),
        calls={"call": "method"},
        openers={"in_span": 1, "start_span": 1, "start_root_span": 1},
    ),
    Grammar(
        name="php",
        module=("tree_sitter_php", "language_php"),
        extensions=(".php",),
        functions=frozenset({"function_definition", "method_declaration"}),
        anonymous=frozenset({"anonymous_function", "arrow_function"}),
        opaque=frozenset({"anonymous_class"}),
        types=frozenset(
            {"class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"}
        ),
        namespaces=frozenset({"namespace_definition"}),
        calls={
            "member_call_expression": "name",
            "nullsafe_member_call_expression": "name",
            "scoped_call_expression": "name",
            "function_call_expression": "function",
        },
        openers={"startSpan": 0},
        annotations=frozenset({"attribute"}),
    ),
)

_BY_SUFFIX = {ext: g for g in GRAMMARS for ext in g.extensions}
_local = threading.local()


def grammar_for(path: str) -> Grammar | None:
    """The grammar for a file by its suffix, or None for a language feedbot does not read."""
    return _BY_SUFFIX.get(PurePosixPath(path).suffix.lower())


@cache
def _language(module: str, function: str) -> Language:
    return Language(getattr(importlib.import_module(module), function)())


def parser(grammar: Grammar) -> Parser:
    """A parser for the grammar, made once per thread (parsers are not thread-safe)."""
    parsers: dict[str, Parser] = _local.__dict__.setdefault("parsers", {})
    found = parsers.get(grammar.name)
    if found is None:
        found = parsers[grammar.name] = Parser(_language(*grammar.module))
    return found
