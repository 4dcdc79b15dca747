"""What the analysis reads from one span's attributes; pure, no I/O.

Both generations of the OpenTelemetry semantic conventions: group labels (``http.route`` and
``http.request.method`` or ``http.method``; else a statement or templated URL, read by
:mod:`feedbot.spans.resources`), normalised DB statements (``db.query.text`` or
``db.statement``), code locations (``code.function.name`` or ``code.namespace`` +
``code.function``, ``code.file.path`` or ``code.filepath``, ``code.line.number`` or
``code.lineno``) and exception types (``exception`` events, else the span's ``error.type``).
Shared by the streaming aggregator and the fast OTLP/JSON file reader, so both read spans alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from feedbot.spans.resources import RESOURCE_KEYS, resource_of

#: (qualified function, file path, line) of a span's ``code.*`` attributes.
CodeLocation = tuple[str | None, str | None, int | None]
#: (exception type, message) per exception the span recorded.
Exceptions = tuple[tuple[str, str], ...]
#: What only some spans carry: their exceptions and their code location (None when absent).
Extras = tuple[Exceptions, CodeLocation | None]

CODE_KEYS = frozenset(
    ("code.function.name", "code.function", "code.file.path", "code.filepath")
    + ("code.line.number", "code.lineno")
)
STATEMENT_KEYS = ("db.query.text", "db.statement")
#: Every span attribute the analysis reads; a reader may skip the others.
READ_KEYS = (
    CODE_KEYS
    | {"code.namespace", "error.type", *STATEMENT_KEYS, *RESOURCE_KEYS}
    | {
        "http.route",
        "http.request.method",
        "http.method",
    }
)
_NO_CODE: CodeLocation = (None, None, None)


def label(
    name: str, kind: str, method: str | None, route: str | None, resource: str | None = None
) -> str:
    """The name a group is reported under.

    "METHOD route" for routed SERVER spans, else the span's resource
    (:func:`~feedbot.spans.resources.resource_of`: a DB statement, a templated path), else name.
    """
    if kind == "SERVER" and route:
        return f"{method} {route}" if method else route
    return resource or name


def resource_key(
    key: tuple[str, str, str | None, str | None],
    attributes: Mapping[str, Any],
    statement: str | None,
) -> str | None:
    """The resource a span of (name, kind, method, route) is grouped by, or None.

    None where :func:`label` uses the route; ``statement`` is :func:`statement_of`'s answer.
    """
    name, kind, method, route = key
    if kind == "SERVER" and route:
        return None
    return resource_of(name, kind, method, attributes, statement)


# The lookahead lets the engine skip positions where no literal can start (twice as fast).
_LITERAL = re.compile(
    r"""(?=['"$0-9.])(?:(?P<str>'(?:[^']|'')*')"""
    r"""|(?P<ident>"(?:[^"]|"")*")"""
    r"""|(?P<num>(?<![\w.$])(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?!\w))"""
    r"""|(?P<param>\$\d+))"""
)
_IN_LIST = re.compile(r"\b(IN) ?\( ?\?(?: ?, ?\?)* ?\)", re.IGNORECASE)


def _literal(match: re.Match[str]) -> str:
    return match.group() if match.lastgroup == "ident" else "?"


#: Every ASCII digit as "1": statements that differ only in numbers share one shape. A bytes
#: table: str.translate takes 1.5 µs on a short statement, encode-translate-decode 0.3 µs
#: (UTF-8 never puts an ASCII byte inside a multi-byte character, so only digits change).
_ONES = bytes.maketrans(b"0123456789", b"1" * 10)


def normalize_statement(sql: str) -> str:
    """A statement with its literals replaced, so repeats with different values compare equal.

    String and numeric literals and ``$n`` parameters become ``?``, ``IN (?, ?, ?)`` becomes
    ``IN (?)``, runs of whitespace become one space. Quoted identifiers and the case of keywords
    are kept.
    """
    # The repeats of an N+1 differ in their numbers, so the cache below would miss on each.
    # Normalise the statement's shape instead (its digits all "1"): the pattern treats every
    # digit alike but for the "0" of "0x", which "1" never matches, so when no digit survives
    # in the shape's answer every digit was inside a literal, and the statement's answer is
    # the same. Otherwise (digits in names, hex literals) normalise the statement itself.
    raw = sql.encode("utf-8", "surrogatepass")
    shape = _normalize(raw.translate(_ONES).decode("utf-8", "surrogatepass"))
    return shape if "1" not in shape else _normalize(sql)


def normalize_shape(shape: str) -> str:
    """:func:`normalize_statement` of a statement whose digits are all "1" already (cached)."""
    return _normalize(shape)


@lru_cache(maxsize=4096)
def _normalize(sql: str) -> str:
    out = " ".join(_LITERAL.sub(_literal, sql).split())
    if "?," in out or "? ," in out or "( ?" in out or "? )" in out:
        out = _IN_LIST.sub(lambda m: f"{m.group(1)} (?)", out)
    return out


def statement_of(attributes: Mapping[str, Any]) -> str | None:
    """The normalised DB statement of a span (new attribute name first), or None."""
    statement = attributes.get("db.query.text") or attributes.get("db.statement")
    return normalize_statement(str(statement)) if statement else None


def code_location(attributes: Mapping[str, Any]) -> CodeLocation:
    """(qualified function, file path, line) from either generation of ``code.*`` attributes."""
    function, namespace = attributes.get("code.function.name"), attributes.get("code.namespace")
    if function is None:
        function = attributes.get("code.function")
    if function is not None and namespace and "." not in str(function):
        # Old SDKs: bare function plus namespace; 1.30-era: bare code.function.name likewise.
        function = f"{namespace}.{function}"
    path = attributes.get("code.file.path", attributes.get("code.filepath"))
    line = attributes.get("code.line.number", attributes.get("code.lineno"))
    return (
        None if function is None else str(function),
        None if path is None else str(path),
        line if isinstance(line, int) and not isinstance(line, bool) else None,
    )


def is_exception_event(name: str) -> bool:
    """``exception``, or a domain event such as ``db.client.operation.exception``."""
    return name == "exception" or name.endswith(".exception")


def exceptions_of(
    events: Iterable[Mapping[str, Any]], attributes: Mapping[str, Any], is_error: bool
) -> Exceptions:
    """(type, message) per exception event; else the ``error.type`` of a failed span.

    Semantic conventions 1.40+ move exception events to logs, which leaves ``error.type``.
    """
    found = []
    for event in events:
        if is_exception_event(event.get("name", "")):
            event_attributes = event.get("attributes") or {}
            kind = event_attributes.get("exception.type") or event_attributes.get("error.type")
            message = str(event_attributes.get("exception.message") or "")
            found.append((str(kind or "(unknown)"), message))
    error_type = attributes.get("error.type")
    if not found and is_error and error_type:
        found.append((str(error_type), ""))
    return tuple(found)


def extras_of(
    events: Iterable[Mapping[str, Any]], attributes: Mapping[str, Any], is_error: bool
) -> Extras | None:
    """The exceptions and code location of a span, or None when it has neither."""
    exceptions = exceptions_of(events, attributes, is_error) if events or is_error else ()
    code = None
    if not CODE_KEYS.isdisjoint(attributes):
        code = code_location(attributes)
        code = None if code == _NO_CODE else code
    return (exceptions, code) if exceptions or code else None
