"""Logging for a process that holds secrets: redaction of every record, and a JSON line format.

:class:`RedactingFilter` masks the configured secrets and anything shaped like a Slack token in
the message, the formatted traceback and string ``extra`` fields before a handler writes them.
:class:`JsonFormatter` writes one JSON object per record; ``extra={"release_id": ...,
"check_id": ...}`` passed to a logging call become fields of that object, and so do the fields
:func:`bind` holds for the code running inside it (a check's release and check ids, a
delivery's id), which :class:`RedactingFilter` copies onto every record before masking it::

    with logs.bind(release_id=check.release_id, check_id=check.id):
        ...  # every record logged here, in any module, carries both ids
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from feedbot.config import Settings

MASK = "[redacted]"
#: Slack bot, user, app-level, refresh and workspace tokens (xoxb-, xoxp-, xoxa-, xoxr-, xoxs-)
#: and the app-level tokens of Socket Mode (xapp-).
SLACK_TOKEN = re.compile(r"(?:xox[baprs]|xapp)-[A-Za-z0-9-]+")
#: Secrets shorter than this are not masked: a four-character secret would mask common words.
MIN_SECRET = 6
#: Loggers that do not propagate to the root (uvicorn's) get the filter on the logger itself.
OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_BOUND: ContextVar[Mapping[str, Any]] = ContextVar(
    "feedbot_log_fields", default=MappingProxyType({})
)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged inside the block (in this thread or task).

    Blocks nest: an inner block adds to the outer one's fields and may override them. Fields
    that are None are left out. A field passed with ``extra=`` to one logging call wins over a
    bound one of the same name.

    Args:
        fields: names and values, such as ``release_id=7, check_id=21``.
    """
    token = _BOUND.set({**_BOUND.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _BOUND.reset(token)


def bound() -> Mapping[str, Any]:
    """The fields :func:`bind` holds here."""
    return _BOUND.get()


def add_bound(record: logging.LogRecord) -> None:
    """Copy the fields of :func:`bind` the record does not already have onto it."""
    for key, value in _BOUND.get().items():
        if key not in _STANDARD and not hasattr(record, key):
            setattr(record, key, value)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in ``settings``: tokens, webhook secrets, passwords, trace headers."""
    found = [
        settings.slack.bot_token,
        settings.slack.signing_secret,
        settings.slack.app_token,
        settings.webhooks.secret,
        settings.webhooks.github_secret,
        settings.webhooks.gitlab_token,
        settings.webhooks.argocd_token,
        settings.traces.ingest_token,
        settings.github.token,
        settings.web.page_secret,
        urlsplit(settings.database_url).password,
        *settings.traces.headers.values(),
        # The credential of "Bearer <token>" or "Basic <b64>" headers also travels alone.
        *(value.split(None, 1)[-1] for value in settings.traces.headers.values()),
    ]
    return [value for value in found if value]


class Redactor:
    """Replaces known secrets and Slack-token-shaped strings with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        words = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        alternatives = [re.escape(word) for word in words] + [SLACK_TOKEN.pattern]
        self._pattern = re.compile("|".join(alternatives))

    def __call__(self, text: str) -> str:
        """``text`` with every secret masked."""
        return self._pattern.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the message, traceback and ``extra`` strings.

    It first adds the fields of :func:`bind` to the record, so they are masked too and every
    handler feedbot installed on sees them, with one filter per handler.

    The record is rewritten in place (message rendered, arguments dropped, traceback formatted
    once), so every handler and formatter after it sees only the masked text.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields of :func:`bind`, then mask ``record``; never drops it."""
        add_bound(record)
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ``extra`` fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def install(settings: Settings, root: logging.Logger | None = None) -> None:
    """Redact ``settings``' secrets everywhere feedbot's records go; JSON lines if configured.

    Idempotent: a filter installed before (for other settings) is replaced. The formatter is
    only changed on plain ``StreamHandler``s (the CLI's), never on handlers others installed.

    Args:
        settings: the secrets to mask and ``log.format``.
        root: the logger whose handlers get the filter; the root logger by default.
    """
    root = root or logging.getLogger()
    redacting = RedactingFilter(secrets_of(settings))
    for handler in root.handlers:
        _replace_filter(handler, redacting)
        if settings.log.format == "json" and type(handler) is logging.StreamHandler:
            handler.setFormatter(JsonFormatter())
    for name in OWN_HANDLER_LOGGERS:
        _replace_filter(logging.getLogger(name), redacting)


def _replace_filter(target: logging.Filterer, redacting: RedactingFilter) -> None:
    for old in [f for f in target.filters if isinstance(f, RedactingFilter)]:
        target.removeFilter(old)
    target.addFilter(redacting)
