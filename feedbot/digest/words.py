"""The words and numbers a story is told in: names, durations, rates, ratios. Pure.

Numbers are the units a person compares: ms (seconds from 1,000 ms), ``3.1×`` or ``22%``
for a ratio, ``5.2%`` for an error rate. Code names are put in backticks.
"""

from __future__ import annotations

import re

#: Span kinds a developer knows a service by: its routes and its consumers.
ENTRY_KINDS = frozenset({"SERVER", "CONSUMER"})
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
_FILE_TARGET = re.compile(r"^([A-Z][A-Z_ ]*?) (/\S*/)([^/\s]+\.[A-Za-z0-9]+)$")


def display_name(span: str) -> str:
    """A span group's name as shown: ``SELECT /tmp/x/vault.db`` reads ``SELECT vault.db``.

    Only a database operation on a file path (SQLite's span names) is shortened, to the file's
    name; HTTP routes and every other name are shown as they are.
    """
    match = _FILE_TARGET.match(span)
    if match is None or match[1] in _HTTP_METHODS:
        return span
    return f"{match[1]} {match[3]}"


def code_name(name: str, *, short: bool = False) -> str:
    """A name in backticks; ``short`` keeps a dotted function's last two parts."""
    shown = display_name(name)
    if short and "." in shown and " " not in shown:
        shown = ".".join(shown.split(".")[-2:])
    return "`" + shown.replace("`", "'") + "`"


def short_type(name: str) -> str:
    """``examples.vault.GoblinRateLimitError`` → ``GoblinRateLimitError``."""
    return name.rsplit(".", 1)[-1] if name else "an exception"


def plural(n: int, word: str) -> str:
    """``1 check``, ``2 checks``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


count_words = plural


def ms(value: float | int | None) -> str:
    """``4.4 ms``, ``58 ms``, ``1.2 s``; ``–`` when unknown."""
    if value is None:
        return "–"
    value = float(value)
    if abs(value) >= 1000:
        return f"{value / 1000:.1f} s"
    if abs(value) >= 10:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def rate(value: float | int | None) -> str:
    """An error rate (a fraction) as a percentage: ``0%``, ``0.52%``, ``5.2%``, ``12%``."""
    if value is None:
        return "–"
    percent = float(value) * 100
    if percent == 0:
        return "0%"
    if percent < 1:
        return f"{percent:.2f}%"
    if percent < 10:
        return f"{percent:.1f}%"
    return f"{percent:.0f}%"


def slower_words(base: float | None, new: float | None) -> str:
    """``3.1× slower``, ``22% slower``, ``31% faster``, ``2.0× faster``."""
    if not base or new is None:
        return "slower"
    ratio = new / base
    if ratio >= 1.5:
        return f"{ratio:.1f}× slower"
    if ratio >= 1:
        return f"{ratio - 1:.0%} slower"
    if ratio > 0 and ratio <= 1 / 1.5:
        return f"{1 / ratio:.1f}× faster"
    return f"{1 - ratio:.0%} faster"


def ms_pair(base: float | int | None, new: float | int | None) -> str:
    """``19 → 58 ms``: the unit once when both sides share it."""
    left, right = ms(base), ms(new)
    unit = right.rsplit(" ", 1)[-1] if " " in right else ""
    if unit and left.endswith(" " + unit):
        return f"{left.rsplit(' ', 1)[0]} → {right}"
    return f"{left} → {right}"


#: The Unicode bidirectional controls (Trojan Source, CVE-2021-42574): shown as they are, they
#: reorder the rest of a line in a terminal or Slack.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_OR_NEWLINE = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f{_BIDI}]")


def printable(text: str, *, lines: bool = True) -> str:
    """``text`` with control characters as ``\\xNN``, bidi controls as ``\\uNNNN`` (a span name
    may carry any).

    Args:
        text: Text from spans or a deploy.
        lines: Keep newlines (text made of lines); False escapes them too (one line,
            one table cell).
    """
    pattern = _CONTROL if lines else _CONTROL_OR_NEWLINE
    return pattern.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
