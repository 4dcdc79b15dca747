"""What a span is grouped under when its name says too little: statements and URL templates; pure.

Instrumentations name a DB span after its operation (``SELECT checkout``, ``SELECT
/tmp/…/vault.db``) and an HTTP span without ``http.route`` after its method or raw path
(``GET``, ``GET /clients/8f3a…``). Grouping by those names mixes every statement, or every
route, into one group, or splits one route into a group per id. As Datadog's resource names and
Sentry's span descriptions do, such spans get a *resource* instead:

* a span with a DB statement: ``<database>: <statement>``, the database being the last path
  segment of ``db.namespace`` / ``db.name`` (a sqlite file's name, never its directory), else
  ``db.system``; the statement is the normalised ``db.query.text`` / ``db.statement`` with a
  select list or insert column list of several columns shortened to ``…`` (as Sentry's ``..``),
  cut to :data:`MAX_STATEMENT` characters; else ``db.query.summary``;
* an HTTP span without ``http.route``: ``METHOD path``, the path from ``url.path`` /
  ``http.target`` / ``http.path`` / ``url.full`` / ``http.url`` (or the span name, when it is
  ``METHOD /path``), without query string, its id-like segments (numbers, UUIDs, hex hashes,
  long tokens with digits) written ``{id}``; a CLIENT span's path keeps its host name, without
  the port, an IP address written ``{ip}``: pods' addresses and ephemeral ports differ from one
  version to the next, so a group keyed on them would never meet its baseline;
* an INTERNAL span of the ASGI instrumentation (``GET /covers/8f3a….jpg http send``: one per
  ``send``/``receive`` event, named after its SERVER span): the same templated path, with the
  event kept (``GET /covers/{id} http send``), or an app without routes would get one such group
  per id.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

#: Characters of a statement kept in a group name.
MAX_STATEMENT = 120
#: How an id-like path segment is written.
ID = "{id}"
#: How a host given as an IP address is written.
IP = "{ip}"
PATH_KEYS = ("url.path", "http.target", "http.path")
URL_KEYS = ("url.full", "http.url")
DB_KEYS = ("db.namespace", "db.name", "db.system.name", "db.system", "db.query.summary")
#: The span attributes read here, beyond the statement.
RESOURCE_KEYS = PATH_KEYS + URL_KEYS + DB_KEYS

_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
_HEX = re.compile(r"(?=.*\d)[0-9a-fA-F]{8,}")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*")
_TOKEN = re.compile(r"(?=.*\d)[\w.~%=-]{16,}")
_METHOD_PATH = re.compile(r"([A-Za-z]{3,7}) (/\S*)")
_ASGI_EVENT = re.compile(r"([A-Za-z]{3,7}) (/\S*) ((?:http|websocket) (?:send|receive))")
_SELECT_LIST = re.compile(r"^(SELECT (?:DISTINCT )?)([^()]*?,[^()]*?)( FROM )", re.IGNORECASE)
_INSERT_COLUMNS = re.compile(r"^(INSERT INTO \S+ )\([^()]*,[^()]*\)", re.IGNORECASE)


def resource_of(
    name: str,
    kind: str,
    method: str | None,
    attributes: Mapping[str, Any],
    statement: str | None,
) -> str | None:
    """The group name of a span without ``http.route`` (see the module docstring), or None.

    Args:
        name: the span's name.
        kind: ``SERVER``, ``CLIENT``, ...
        method: its HTTP method, upper case, or None.
        attributes: its attributes (only :data:`RESOURCE_KEYS` are read).
        statement: its normalised DB statement, or None.
    """
    if statement:
        return f"{database_of(attributes)}{short_statement(statement)}"
    summary = attributes.get("db.query.summary")
    if summary:
        return f"{database_of(attributes)}{summary}"
    if kind not in ("SERVER", "CLIENT"):
        event = _ASGI_EVENT.fullmatch(name) if kind == "INTERNAL" else None
        if event is None:
            return None
        return f"{event.group(1).upper()} {template_path(event.group(2))} {event.group(3)}"
    path = _path_of(kind, attributes)
    if path is None:
        found = _METHOD_PATH.fullmatch(name)
        if found is None:
            return None
        method, path = method or found.group(1).upper(), found.group(2)
    if method is None:
        return None
    return f"{method} {template_path(path)}"


def asgi_event(resource: str) -> tuple[str, str] | None:
    """(method, event) of an ASGI event span's resource (``GET /a/{id} http send``), or None."""
    found = _ASGI_EVENT.fullmatch(resource)
    return None if found is None else (found.group(1), found.group(3))


def database_of(attributes: Mapping[str, Any]) -> str:
    """``"<database>: "`` for a DB span's group name ("" when no attribute names it)."""
    for key in ("db.namespace", "db.name", "db.system.name", "db.system"):
        value = attributes.get(key)
        if value:
            last = re.split(r"[/\\]", str(value).rstrip("/\\"))[-1]
            return f"{last or value}: "
    return ""


@lru_cache(maxsize=4096)
def short_statement(statement: str) -> str:
    """A normalised statement as a group name: long column lists as ``…``, cut to fit."""
    short = _SELECT_LIST.sub(r"\1…\3", statement, count=1)
    short = _INSERT_COLUMNS.sub(r"\1(…)", short, count=1)
    return short if len(short) <= MAX_STATEMENT else short[: MAX_STATEMENT - 1] + "…"


def _path_of(kind: str, attributes: Mapping[str, Any]) -> str | None:
    """The request's path (a CLIENT's with its host) from the attributes, or None."""
    url = next((str(attributes[k]) for k in URL_KEYS if attributes.get(k)), None)
    host = ""
    if url is not None and kind == "CLIENT":
        host = _host(urlsplit(url).hostname or "")
    path = next((str(attributes[k]) for k in PATH_KEYS if attributes.get(k)), None)
    if path is None and url is not None:
        path = urlsplit(url).path or "/"
    if path is None:
        return None
    return host + path


def _host(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return IP


@lru_cache(maxsize=8192)
def template_path(path: str) -> str:
    """``path`` without query string or fragment, its id-like segments written :data:`ID`.

    >>> template_path("/clients/8f3a9c1e77d2/orders/42?page=2")
    '/clients/{id}/orders/{id}'
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    return "/".join(ID if _is_id(segment) else segment for segment in path.split("/"))


def _is_id(segment: str) -> bool:
    return bool(
        segment
        and (
            _NUMBER.fullmatch(segment)
            or _UUID.fullmatch(segment)
            or _HEX.fullmatch(segment)
            or _TOKEN.fullmatch(segment)
        )
    )
