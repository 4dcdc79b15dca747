"""What every deploy source shares: authentication, JSON loading, and field checks.

Authentication failures are 401, an unreadable request is 400, and a readable document with wrong
fields is 422. The field checks collect problems instead of stopping at the first, so a sender
learns every mistake from one answer, each written as ``path.to.field: problem`` and joined with
``"; "``. The readers at the bottom turn the generic document's ``author`` and ``changes`` into
event objects; the GitHub source reuses them for ``deployment.payload``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias, TypeGuard

from feedbot.errors import WebhookRejected
from feedbot.releases.event import Author, Change

# Length caps: generous for real values, small enough that one request cannot flood a Slack
# message or a database row.
NAME_MAX = 200
#: The store's columns for these are narrower than NAME_MAX: a longer value is refused here,
#: naming its field, rather than by the database (a 500 on PostgreSQL; a test keeps them equal).
ENVIRONMENT_MAX = 100
COMMIT_MAX = 64
HANDLE_MAX = 100
TITLE_MAX = 500
PATH_MAX = 1000
URL_MAX = 2000
FEATURES_MAX = 100
CHANGES_MAX = 1000
LIST_MAX = 1000

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")

TimeParser: TypeAlias = Callable[[str], datetime | None]


def require_secret(owner: str, secret: str) -> str:
    """Refuse an empty secret, which would make any request authentic.

    Args:
        owner: the class being built, for the message.
        secret: the configured secret or token.

    Returns:
        The secret, unchanged.
    """
    if not secret:
        raise ValueError(f"{owner}: the secret must not be empty")
    return secret


def required_header(headers: Mapping[str, str], name: str, display: str) -> str:
    """Return a header's stripped value, or reject the request with 400 when it is missing.

    Args:
        headers: the request headers, lower-case keys.
        name: the lower-case key.
        display: the header as documented (``X-GitHub-Delivery``), for the message.
    """
    value = optional_header(headers, name, display)
    if value is None:
        raise WebhookRejected(400, f"{display}: missing")
    return value


def optional_header(
    headers: Mapping[str, str], name: str, display: str, *, max_length: int = NAME_MAX
) -> str | None:
    """Return a header's stripped value, None when absent, or reject an oversized one with 400.

    Args:
        headers: the request headers, lower-case keys.
        name: the lower-case key.
        display: the header as documented, for the message.
        max_length: the longest value accepted.
    """
    value = headers.get(name, "").strip()
    if len(value) > max_length:
        raise WebhookRejected(400, f"{display}: expected at most {max_length} characters")
    return value or None


def verify_hmac_sha256(
    headers: Mapping[str, str], body: bytes, *, secret: str, name: str, display: str
) -> None:
    """Check a ``sha256=<hex>`` HMAC-SHA256 signature of the raw body, in constant time.

    Args:
        headers: the request headers, lower-case keys.
        body: the raw request body, exactly as received.
        secret: the shared secret.
        name: the lower-case header key.
        display: the header as documented, for the message.

    Raises:
        WebhookRejected: 401 when the header is missing or the signature does not match.
    """
    given = headers.get(name, "").strip()
    if not given:
        raise WebhookRejected(401, f"{display}: missing")
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not _same(f"sha256={digest}", given.lower()):
        raise WebhookRejected(401, f"{display}: does not match the body")


def verify_token(given: str | None, expected: str, *, display: str) -> None:
    """Check a static shared token in constant time.

    Args:
        given: the token the request presented, None when absent.
        expected: the configured token.
        display: where the token travels (``X-Gitlab-Token``), for the message.

    Raises:
        WebhookRejected: 401 when the token is missing or wrong.
    """
    if not given:
        raise WebhookRejected(401, f"{display}: missing")
    if not _same(expected, given):
        raise WebhookRejected(401, f"{display}: wrong token")


def _same(expected: str, given: str) -> bool:
    # compare_digest refuses non-ASCII str, and a header may carry any byte, so compare bytes.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def load_json(body: bytes) -> object:
    """Decode a request body as JSON.

    Raises:
        WebhookRejected: 400 ``body: not valid JSON (…)`` naming the parser's complaint.
    """
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both derive from it.
        raise WebhookRejected(400, f"body: not valid JSON ({exc})") from None
    except RecursionError:
        raise WebhookRejected(400, "body: not valid JSON (nested too deeply)") from None


def parse_rfc3339(text: str) -> datetime | None:
    """Parse an RFC 3339 time that carries a zone (``2026-11-24T10:00:00Z``) into aware UTC.

    Returns:
        The time in UTC, or None when the text is not such a time.
    """
    text = text.upper()
    if not _RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):  # 9999-12-31T23:00:00-05:00 is past the calendar in UTC
        return None


def past_the_calendar(text: str) -> bool:
    """Whether ``text`` is a valid RFC 3339 time whose UTC falls outside years 1 to 9999."""
    if not _RFC3339.fullmatch(text.upper()):
        return False
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        return False
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return True
    return False


class Problems:
    """Every problem found in one document, raised together as a single 422."""

    def __init__(self) -> None:
        self._items: list[str] = []

    def add(self, path: str, problem: str) -> None:
        """Record ``path: problem``."""
        self._items.append(f"{path}: {problem}")

    def raise_if_any(self) -> None:
        """Raise WebhookRejected(422) listing every recorded problem, if there is one."""
        if self._items:
            raise WebhookRejected(422, "; ".join(self._items))


@dataclass(frozen=True)
class Fields:
    """Typed, path-aware reads from one JSON object; problems go to the shared collector.

    Every reader returns a safe empty value (None, ``()``) after recording a problem, so
    validation carries on and reports everything at once. JSON ``null`` counts as absent.
    """

    data: Mapping[str, object]
    problems: Problems = field(default_factory=Problems)
    prefix: str = ""

    @classmethod
    def of(cls, doc: object, problems: Problems | None = None) -> Fields:
        """Wrap a decoded document, rejecting anything but a JSON object with 422."""
        if not isinstance(doc, dict):
            raise WebhookRejected(422, f"body: expected a JSON object, not {_kind(doc)}")
        return cls(doc, problems or Problems())

    def path(self, key: str) -> str:
        """The full path of ``key`` inside this object, for messages."""
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        """Whether ``key`` is present and not null."""
        return self.data.get(key) is not None

    def text(self, key: str, *, required: bool = False, max_length: int = NAME_MAX) -> str | None:
        """A stripped string; empty counts as absent, which is a problem only when required."""
        return check_text(self.data.get(key), self.path(key), self.problems, required, max_length)

    def texts(
        self, key: str, *, max_items: int = LIST_MAX, max_length: int = NAME_MAX
    ) -> tuple[str, ...]:
        """A list of non-empty strings."""
        found: list[str] = []
        for index, item in enumerate(self._list(key, max_items)):
            path = f"{self.path(key)}[{index}]"
            value = check_text(item, path, self.problems, True, max_length)
            if value is not None:
                found.append(value)
        return tuple(found)

    def child(self, key: str) -> Fields | None:
        """A nested object, or None when absent or not an object."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.add(self.path(key), "expected an object")
            return None
        return Fields(value, self.problems, self.path(key))

    def objects(self, key: str, *, max_items: int = LIST_MAX) -> list[Fields]:
        """A list of objects, each readable with its own indexed path."""
        found: list[Fields] = []
        for index, item in enumerate(self._list(key, max_items)):
            path = f"{self.path(key)}[{index}]"
            if isinstance(item, dict):
                found.append(Fields(item, self.problems, path))
            else:
                self.problems.add(path, "expected an object")
        return found

    def items(self, key: str, *, max_items: int = LIST_MAX) -> list[object]:
        """A list's raw items, for shapes the other readers do not cover."""
        return self._list(key, max_items)

    def url(self, key: str) -> str | None:
        """An absolute http(s) URL."""
        value = self.text(key, max_length=URL_MAX)
        if value is not None and not value.lower().startswith(("https://", "http://")):
            self.problems.add(self.path(key), "expected an http(s) URL")
            return None
        return value

    def time(
        self, key: str, *, parse: TimeParser = parse_rfc3339, expected: str = ""
    ) -> datetime | None:
        """A time with a zone, as aware UTC; ``expected`` describes the format in messages."""
        value = self.text(key, max_length=64)
        if value is None:
            return None
        parsed = parse(value)
        if parsed is None:
            problem = expected or "not an RFC 3339 time with a zone"
            if past_the_calendar(value):
                problem = f"{value} is past the calendar's edge in UTC (years 1 to 9999)"
            self.problems.add(self.path(key), problem)
        return parsed

    def identifier(self, key: str) -> str | None:
        """An id sent as a JSON string or integer, as a string."""
        value = self.data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if value is not None and not isinstance(value, str):
            self.problems.add(self.path(key), "expected a string or an integer")
            return None
        return self.text(key)

    def _list(self, key: str, max_items: int) -> list[object]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.add(self.path(key), "expected a list")
            return []
        if len(value) > max_items:
            self.problems.add(self.path(key), f"expected at most {max_items} items")
            return []
        return value


def check_text(
    value: object, path: str, problems: Problems, required: bool, max_length: int
) -> str | None:
    """Validate one string value; see :meth:`Fields.text`."""
    if value is None:
        if required:
            problems.add(path, "is required")
        return None
    if not isinstance(value, str):
        problems.add(path, "expected a string")
        return None
    value = value.strip()
    if not value:
        if required:
            problems.add(path, "must not be empty")
        return None
    if len(value) > max_length:
        problems.add(path, f"expected at most {max_length} characters")
        return None
    if "\x00" in value or not _encodable(value):
        # PostgreSQL refuses NUL in text and no database stores a lone surrogate: say so here
        # rather than fail the insert with a 500.
        problems.add(path, "expected text without NUL characters or unpaired surrogates")
        return None
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: object) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_author(fields: Fields | None) -> Author:
    """The generic document's ``author`` object (every field optional)."""
    if fields is None:
        return Author()
    return Author(
        email=fields.text("email"),
        name=fields.text("name"),
        github=fields.text("github", max_length=HANDLE_MAX),
        gitlab=fields.text("gitlab", max_length=HANDLE_MAX),
        slack=fields.text("slack", max_length=HANDLE_MAX),
    )


def read_changes(fields: Fields) -> tuple[Change, ...]:
    """The generic document's ``changes`` list: files, functions (traced ones too), lines."""
    changes: list[Change] = []
    for item in fields.objects("changes", max_items=CHANGES_MAX):
        if not any(item.has(key) for key in ("file", "functions", "lines")):
            item.problems.add(item.prefix, "expected at least one of file, functions, lines")
        functions = item.texts("functions", max_length=PATH_MAX)
        changes.append(
            Change(
                file=item.text("file", max_length=PATH_MAX),
                functions=functions,
                lines=_read_lines(item),
                traced=_read_traced(item, functions),
            )
        )
    return tuple(changes)


def _read_traced(item: Fields, functions: tuple[str, ...]) -> tuple[str, ...]:
    """``traced``: a subset of the change's ``functions`` (their own code opens a span)."""
    traced: dict[str, None] = {}
    for index, raw in enumerate(item.items("traced")):
        path = f"{item.path('traced')}[{index}]"
        name = check_text(raw, path, item.problems, True, PATH_MAX)
        if name is not None and name not in functions:
            item.problems.add(path, f"{name!r} is not one of this change's functions")
        elif name is not None:
            traced[name] = None
    return tuple(traced)


def _read_lines(item: Fields) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for index, pair in enumerate(item.items("lines")):
        if _is_range(pair):
            ranges.append((pair[0], pair[1]))
        else:
            item.problems.add(
                f"{item.path('lines')}[{index}]",
                "expected [start, end] with 1 <= start <= end",
            )
    return tuple(ranges)


def _is_range(pair: object) -> TypeGuard[list[int]]:
    if not isinstance(pair, list) or len(pair) != 2:
        return False
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in pair):
        return False
    return bool(1 <= pair[0] <= pair[1])
