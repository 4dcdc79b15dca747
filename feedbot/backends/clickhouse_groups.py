"""The group name of a span as a ClickHouse SQL expression over the exporter's columns.

The same names as :func:`feedbot.spans.semconv.label` with
:func:`feedbot.spans.resources.resource_of`: ``METHOD route`` for routed SERVER spans, else
``<database>: <statement>`` for DB spans, else ``METHOD <templated path>`` for HTTP spans, else
the span name. The statement is normalised in SQL as :func:`~feedbot.spans.semconv.
normalize_statement` does (RE2 has no look-around: numbers are matched with the character
either side, in two passes). Known differences: digits inside double-quoted identifiers
become ``?``, ``\\w`` and ``\\d`` are ASCII only, an IPv6 host is kept as written (an IPv4 one
becomes ``{ip}`` on both sides), the ASGI instrumentation's INTERNAL ``METHOD <raw path> http
send`` spans keep their raw path, and the cap on resource groups
(``aggregate.MAX_RESOURCE_GROUPS``) is not applied.
"""

from __future__ import annotations

from feedbot.spans.resources import ID, IP, MAX_STATEMENT

_ATTR = "SpanAttributes['{}']"


def _first(*keys: str) -> str:
    """The first non-empty of these span attributes ('' when none)."""
    return f"arrayFirst(v -> v != '', [{', '.join(_ATTR.format(k) for k in keys)}, ''])"


_NUMBER = (
    r"(^|[^\\w.$])(0[xX][0-9a-fA-F]+|[0-9]+(?:\\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\\.[0-9]+)($|[^\\w])"
)
_ONE_PASS = "replaceRegexpAll({}, '" + _NUMBER + "', '\\\\1?\\\\3')"
_NUMBERS = _ONE_PASS.format(_ONE_PASS.format("s0"))  # two: a match takes the character after
#: ``stmt`` normalised (literals ``?``, one space, ``IN (?)``) and shortened as a group name.
STATEMENT = f"""(
  (replaceRegexpAll(stmt, '\\'(?:[^\\']|\\'\\')*\\'', '?') AS s0),
  (replaceRegexpAll({_NUMBERS}, '\\\\$[0-9]+', '?') AS s1),
  (replaceRegexpAll(trimBoth(replaceRegexpAll(s1, '\\\\s+', ' ')),
     '(?i)\\\\b(IN) ?\\\\( ?\\\\?(?: ?, ?\\\\?)* ?\\\\)', '\\\\1 (?)') AS s2),
  (replaceRegexpOne(replaceRegexpOne(s2,
     '(?i)^(SELECT (?:DISTINCT )?)([^()]*?,[^()]*?)( FROM )', '\\\\1…\\\\3'),
     '(?i)^(INSERT INTO \\\\S+ )\\\\([^()]*,[^()]*\\\\)', '\\\\1(…)') AS s3),
  if(lengthUTF8(s3) <= {MAX_STATEMENT}, s3, concat(substringUTF8(s3, 1, {MAX_STATEMENT - 1}), '…'))
).5"""

_DB = _first("db.namespace", "db.name", "db.system.name", "db.system")
#: ``"<database>: "``: the last path segment of the database's name ('' when none is named).
DATABASE = f"""(
  ({_DB} AS dbv),
  (splitByRegexp('[/\\\\\\\\]', replaceRegexpOne(dbv, '[/\\\\\\\\]+$', ''))[-1] AS dblast),
  if(dbv = '', '', concat(if(dblast = '', dbv, dblast), ': '))
).3"""

_IS_ID = r"""(seg != '' AND (match(seg, '^[-+]?[0-9]+(?:[.,][0-9]+)*$')
  OR match(seg, '^[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$')
  OR (match(seg, '^[0-9a-fA-F]{8,}$') AND match(seg, '[0-9]'))
  OR (match(seg, '^[\\w.~%=-]{16,}$') AND match(seg, '[0-9]'))))"""


def template(path: str) -> str:
    """SQL for :func:`~feedbot.spans.resources.template_path` of the SQL string ``path``."""
    bare = f"splitByChar('#', splitByChar('?', {path})[1])[1]"
    return (
        f"arrayStringConcat(arrayMap(seg -> if({_IS_ID}, '{ID}', seg), "
        f"splitByChar('/', {bare})), '/')"
    )


_URL = _first("url.full", "http.url")
_PATH = f"""(
  ({_URL} AS url),
  ({_first("url.path", "http.target", "http.path")} AS given),
  (if(given != '', given, if(url != '', if(path(url) != '', path(url), '/'), '')) AS p),
  (extractGroups(url, '^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]*)(?::([0-9]+))?')
     AS authority),
  (if(kind = 'CLIENT' AND url != '' AND p != '',
     if(match(authority[1], '^[0-9]{{1,3}}(\\\\.[0-9]{{1,3}}){{3}}$'), '{IP}', lower(authority[1])),
     '') AS host),
  if(p = '', '', concat(host, p))
).6"""
_NAMED = "match(SpanName, '^[A-Za-z]{3,7} /[^ \\t\\n]*$')"
#: The group name of a span of the ``f`` CTE (which has ``kind``, ``route`` and ``method``).
GROUP = f"""multiIf(
  kind = 'SERVER' AND route != '', if(method != '', concat(method, ' ', route), route),
  ({_first("db.query.text", "db.statement")} AS stmt) != '', concat({DATABASE}, {STATEMENT}),
  {_ATTR.format("db.query.summary")} != '',
    concat({DATABASE}, {_ATTR.format("db.query.summary")}),
  kind NOT IN ('SERVER', 'CLIENT'), SpanName,
  ({_PATH} AS full_path) != '',
    if(method != '', concat(method, ' ', {template("full_path")}), SpanName),
  {_NAMED}, concat(if(method != '', method, upper(splitByChar(' ', SpanName)[1])), ' ',
    {template("substring(SpanName, position(SpanName, ' ') + 1)")}),
  SpanName)"""
