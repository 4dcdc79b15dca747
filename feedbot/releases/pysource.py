"""What a change to one Python file means: the functions it touched, and which of them open spans.

Pure: the callers (:mod:`feedbot.releases.gitdiff` for a git range, the demo for two directories)
read the files and the diff; this module only parses text. A hunk that touches nothing but
docstrings, comments and blank lines, on both of its sides, is no change to the running code and
names no function; a file whose every hunk is like that is no change at all. A changed function is
*traced* when its own code (body or decorators, not the functions nested in it) calls
``start_as_current_span`` or ``start_span``, whatever the receiver: such a function leaves a span
each time it runs, so its absence from the traces means it did not run.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from feedbot.releases.event import Change

LineRange = tuple[int, int]
Source = str | bytes

#: Calls that open a span in the OpenTelemetry API (``tracer.start_as_current_span(...)``).
SPAN_OPENERS = frozenset({"start_as_current_span", "start_span"})

_NOT_CODE = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
    }
)
_PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, tokenize.TokenError)


@dataclass(frozen=True)
class FunctionSpan:
    """A function or method: its qualified name inside the module and its lines (decorators in).

    ``traced`` is True when its own body or decorators open a span (see the module docstring).
    """

    name: str
    start: int
    end: int
    traced: bool = False


@dataclass(frozen=True)
class Hunk:
    """One ``@@ -a,b +c,d @@`` hunk of a ``-U0`` diff, with git's numbers.

    A side with count 0 has no lines; its start is the line the other side's lines follow.
    """

    old_start: int
    old_count: int
    new_start: int
    new_count: int

    @property
    def new_range(self) -> LineRange:
        """The new side's lines; a pure deletion counts as the line it follows (1 at the top)."""
        if self.new_count == 0:
            return (max(self.new_start, 1), max(self.new_start, 1))
        return (self.new_start, self.new_start + self.new_count - 1)

    @property
    def old_lines(self) -> range:
        """The old side's lines (empty for a pure addition)."""
        return range(self.old_start, self.old_start + self.old_count)

    @property
    def new_lines(self) -> range:
        """The new side's lines (empty for a pure deletion)."""
        return range(self.new_start, self.new_start + self.new_count)


def merge_ranges(ranges: Iterable[LineRange]) -> tuple[LineRange, ...]:
    """Sort line ranges and join the ones that overlap or touch."""
    merged: list[LineRange] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def module_name(path: str) -> str:
    """The dotted module of a ``.py`` path: ``src/vault/__init__.py`` → ``vault``."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts[:1] == ["src"]:
        parts = parts[1:]
    if parts[-1:] == ["__init__"]:
        parts = parts[:-1]
    return ".".join(parts)


def function_spans(source: Source) -> list[FunctionSpan] | None:
    """Every function and method of a module, outer before inner, in source order.

    Args:
        source: the module's text; bytes honour a ``# -*- coding`` line.

    Returns:
        Spans named by their path inside the module (``Appraiser.appraise``,
        ``outer.inner``), or None when the source does not parse.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    spans: list[FunctionSpan] = []
    _collect(tree, (), spans)
    return spans


def _collect(node: ast.AST, prefix: tuple[str, ...], spans: list[FunctionSpan]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
            name = (*prefix, child.name)
            end = child.end_lineno or child.lineno
            spans.append(FunctionSpan(".".join(name), start, end, opens_span(child)))
            _collect(child, name, spans)
        elif isinstance(child, ast.ClassDef):
            _collect(child, (*prefix, child.name), spans)
        else:
            _collect(child, prefix, spans)


def opens_span(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the function's decorators or body call a span opener (nested definitions aside)."""
    todo: list[ast.AST] = [*function.decorator_list, *function.body]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue  # A nested definition is a function of its own.
        if isinstance(node, ast.Call) and _callee(node.func) in SPAN_OPENERS:
            return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def functions_for_lines(
    spans: Sequence[FunctionSpan], lines: Iterable[LineRange], module: str
) -> tuple[str, ...]:
    """The innermost functions that hold any of ``lines``, qualified with ``module``.

    Args:
        spans: the module's functions, outer before inner (as :func:`function_spans` gives).
        lines: changed line ranges on the same version of the source.
        module: the dotted module name; empty for a top-level ``__init__.py``.

    Returns:
        Qualified names in order of their first changed line; module-level lines add none.
    """
    last = max((span.end for span in spans), default=0)
    owner: list[str | None] = [None] * (last + 1)
    for span in spans:  # Inner spans come later and overwrite their parent's lines.
        owner[span.start : span.end + 1] = [span.name] * (span.end - span.start + 1)
    found: dict[str, None] = {}
    for start, end in sorted(lines):
        for line in range(max(start, 0), min(end, last) + 1):
            name = owner[line]
            if name is not None:
                found.setdefault(qualify(module, name))
    return tuple(found)


def deleted_functions(
    old: Sequence[FunctionSpan], new: Sequence[FunctionSpan], module: str
) -> tuple[str, ...]:
    """Functions of the old source that the new one no longer has, qualified with ``module``."""
    remaining = {span.name for span in new}
    gone = dict.fromkeys(span.name for span in old if span.name not in remaining)
    return tuple(qualify(module, name) for name in gone)


def qualify(module: str, name: str) -> str:
    """``module.name``, or ``name`` alone for a top-level ``__init__.py``."""
    return f"{module}.{name}" if module else name


def code_lines(source: Source) -> frozenset[int] | None:
    """The lines that hold code: not blank, not only a comment, not inside a docstring.

    Args:
        source: the module's text; bytes honour a ``# -*- coding`` line.

    Returns:
        1-based line numbers, or None when the source does not parse (then every line counts).
    """
    try:
        tree = ast.parse(source)
        tokens = list(_tokens(source))
    except _PARSE_ERRORS:
        return None
    docstrings = [(node.lineno, node.end_lineno or node.lineno) for node in _docstrings(tree)]
    found: set[int] = set()
    for token in tokens:
        if token.type in _NOT_CODE:
            continue
        first, last = token.start[0], token.end[0]
        if token.type == tokenize.STRING and any(a <= first and last <= b for a, b in docstrings):
            continue
        found.update(range(first, last + 1))
    return frozenset(found)


def _tokens(source: Source) -> Iterable[tokenize.TokenInfo]:
    if isinstance(source, bytes):
        return tokenize.tokenize(io.BytesIO(source).readline)
    return tokenize.generate_tokens(io.StringIO(source).readline)


def _docstrings(tree: ast.Module) -> Iterable[ast.expr]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            if isinstance(first.value.value, str):
                yield first.value


def touches_code(hunk: Hunk, old: frozenset[int] | None, new: frozenset[int] | None) -> bool:
    """Whether either side of ``hunk`` holds a line of code (an unparsed side always does)."""
    if hunk.old_count and (old is None or any(line in old for line in hunk.old_lines)):
        return True
    return bool(hunk.new_count and (new is None or any(line in new for line in hunk.new_lines)))


def describe(
    *,
    old_path: str | None,
    new_path: str | None,
    old: Source | None,
    new: Source | None,
    hunks: Sequence[Hunk],
) -> Change | None:
    """The change to one Python file, or None when its hunks only touch docstrings and comments.

    Args:
        old_path: the file before (None when added).
        new_path: the file after (None when deleted).
        old: the text before, None when added or unreadable.
        new: the text after, None when deleted or unreadable.
        hunks: the diff's hunks; none for a pure rename or a deletion.

    Returns:
        The file, the innermost functions its code hunks fall in plus the functions it deleted,
        the new-side line ranges of those hunks, and the changed functions that open a span.
    """
    old_code, new_code = _lines_of(old), _lines_of(new)
    kept = [h for h in hunks if touches_code(h, old_code, new_code)]
    if hunks and not kept:
        return None
    lines = merge_ranges(h.new_range for h in kept) if new_path is not None else ()
    new_spans = function_spans(new) if new is not None else None
    old_spans = function_spans(old) if old is not None else None
    functions: tuple[str, ...] = ()
    traced: tuple[str, ...] = ()
    if new_spans is not None and new_path is not None:
        module = module_name(new_path)
        functions = functions_for_lines(new_spans, lines, module)
        opening = {qualify(module, s.name) for s in new_spans if s.traced}
        traced = tuple(f for f in functions if f in opening)
    if old_spans is not None and old_path is not None and (new_spans is not None or not new_path):
        functions += deleted_functions(old_spans, new_spans or [], module_name(old_path))
    return Change(file=new_path or old_path, functions=functions, lines=lines, traced=traced)


def _lines_of(source: Source | None) -> frozenset[int] | None:
    return frozenset() if source is None else code_lines(source)
