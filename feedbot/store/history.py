"""The code history: what feedbot learnt at each check, per operation, function and file.

Written by every finished check (:func:`record`, from :mod:`feedbot.checks.recorder`), read by
``/feedback <function | file | route>``, the weekly digest and anyone else who wants a key's
past without asking the trace store. Two tables (:mod:`feedbot.store.models`): the catalogue
:class:`~feedbot.store.models.CodeKey` (one row per service, kind and name) and the series
:class:`~feedbot.store.models.CodeHistory` (one row per key and release, replaced by each later
check of the release, whose window includes the earlier one's).

The read API, for other modules (all take a Session and only read):

- :func:`find` resolves what someone typed (``appraise``, ``vault/appraisal.py``,
  ``GET /vaults/{id}``, ``/vaults/{id}``) into keys; :func:`closest` names the nearest known
  ones when nothing matched.
- :func:`summarise` gathers one answer from the keys' rows: use per day and its trend, callers,
  baseline p50/p95 and error rate, exception types, insights, environments, and the releases
  that changed the code (:class:`Summary`, plain data that :mod:`feedbot.digest.answers`
  renders).
- :func:`footprint_of` what the checks of a recent window saw of named functions of a service
  (:class:`Held`; the PR preview reads it instead of asking the trace store again).
- :func:`reached` which of a service's names were seen since a time (code never reached, with
  :func:`instrumented`); :func:`busiest` and :func:`environments_of` for the weekly code view;
  :func:`same_function` says whether a diff's function name and a span's are the same.
"""

from __future__ import annotations

import difflib
import itertools
import re
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from feedbot.spans.footprint import KINDS, Footprint, short_name
from feedbot.spans.footprint import same_function as _same_function
from feedbot.store.models import Change, Check, CodeHistory, CodeKey, Release

#: The baseline (p50/p95, error rate, callers) is taken over this much recent history.
BASELINE = timedelta(days=30)
#: The trend compares the last week's calls a day with the three weeks before.
RECENT = timedelta(days=7)
#: A rate over less than a minute of serving is too short to count as a day's use.
MIN_SECONDS = 60.0
RELEASES_SHOWN = 5
#: Changes read at a time, newest first, looking for the releases that touched a key.
TOUCHED_PAGE = 200


@dataclass(frozen=True)
class Touched:
    """A release that changed the code: which, when, and what its last check said."""

    service: str
    version: str
    environment: str
    deployed_at: datetime
    verdict: str | None
    functions: tuple[str, ...] = ()
    title: str | None = None


@dataclass(frozen=True)
class EnvironmentSeen:
    """Whether the code ran in one environment of its services (``calls`` 0: never)."""

    environment: str
    calls: int
    last_seen: datetime | None


@dataclass(frozen=True)
class Summary:
    """Everything ``/feedback`` says about a function, file or route, from the history.

    Attributes:
        query: What was asked.
        keys: ``(service, kind, name)`` of every key it matched.
        observed: The latest day's calls and the seconds of serving they were counted over
            (the rate of ``per_day`` is extrapolated from them), None without any.
        per_day: ``(day, calls a day)`` in production (or the services' main environment),
            oldest first; a day's figure is the summed rate of the releases checked that day.
        trend: Last week's calls a day against the three weeks before, as a ratio (None when
            either side has no data).
        callers: ``(caller, spans)``, busiest first, over :data:`BASELINE`.
        p50_ms: Median of the checks' p50s over :data:`BASELINE` (main environment).
        p95_ms: Median of their p95s.
        error_rate: Errors over calls, same rows.
        calls: Calls counted over :data:`BASELINE`.
        exceptions: ``(type, spans, last seen)`` over the whole history.
        insights: ``(kind, checks that said it, last seen)``.
        environments: Per environment the services were deployed to: calls and last seen.
        touched: The newest releases that changed the code.
        first_seen: The first check that saw it.
        last_seen: The latest.
    """

    query: str
    keys: tuple[tuple[str, str, str], ...]
    per_day: tuple[tuple[date, float], ...] = ()
    observed: tuple[int, float] | None = None
    trend: float | None = None
    callers: tuple[tuple[str, int], ...] = ()
    p50_ms: float | None = None
    p95_ms: float | None = None
    error_rate: float | None = None
    calls: int = 0
    exceptions: tuple[tuple[str, int, datetime], ...] = ()
    insights: tuple[tuple[str, int, datetime], ...] = ()
    environments: tuple[EnvironmentSeen, ...] = ()
    touched: tuple[Touched, ...] = ()
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    main_environment: str = "production"
    services: tuple[str, ...] = field(default=())


# --- writing -------------------------------------------------------------------------------


def record(
    session: Session,
    *,
    release_id: int,
    service: str,
    environment: str,
    version: str,
    at: datetime,
    seconds: float,
    prints: Sequence[Footprint],
) -> int:
    """Keep what one check of a release saw; replaces the rows an earlier check of it wrote.

    Args:
        session: the store (the caller commits).
        release_id: the release checked.
        service: its service; keys are per service.
        environment: where it ran.
        version: its version.
        at: the check's time.
        seconds: how long the version was seen serving in the check's window.
        prints: one per key (:func:`feedbot.spans.footprint.footprints`).

    Returns:
        Rows written.
    """
    if not prints:
        return 0
    ids = _key_ids(session, service, prints, at)
    session.execute(delete(CodeHistory).where(CodeHistory.release_id == release_id))
    rows = [
        {
            "key_id": ids[(p.kind, p.name)],
            "release_id": release_id,
            "environment": environment,
            "version": version,
            "at": at,
            "seconds": float(seconds),
            "calls": p.calls,
            "errors": p.errors,
            "p50_ms": p.p50_ms,
            "p95_ms": p.p95_ms,
            "callers": [list(c) for c in p.callers],
            "exceptions": [list(e) for e in p.exceptions],
            "insights": list(p.insights),
        }
        for p in prints
    ]
    session.execute(insert(CodeHistory), rows)
    return len(rows)


def _key_ids(
    session: Session, service: str, prints: Sequence[Footprint], at: datetime
) -> dict[tuple[str, str], int]:
    """The catalogue ids of ``prints``' keys, adding the new ones; their ``last_seen`` is ``at``."""
    wanted = {(p.kind, p.name): p for p in prints}
    existing = session.execute(
        select(CodeKey.kind, CodeKey.name, CodeKey.id).where(
            CodeKey.service == service, CodeKey.name.in_({p.name for p in prints})
        )
    ).all()
    ids = {(kind, name): id_ for kind, name, id_ in existing if (kind, name) in wanted}
    new = [
        {"service": service, "kind": k, "name": n, "short": short_name(k, n),
         "file": p.file, "first_seen": at, "last_seen": at}
        for (k, n), p in wanted.items() if (k, n) not in ids
    ]  # fmt: skip
    if new:
        # Two checks of one service may add the same key at once: the second inserts nothing
        # and reads the first one's id.
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(CodeKey).on_conflict_do_nothing(
            index_elements=["service", "kind", "name"]
        )
        session.execute(stmt, new)
        added = session.execute(
            select(CodeKey.kind, CodeKey.name, CodeKey.id).where(
                CodeKey.service == service, CodeKey.name.in_({row["name"] for row in new})
            )
        ).all()
        ids.update({(k, n): i for k, n, i in added if (k, n) in wanted})
    seen = [ids[key] for key in wanted]
    session.execute(
        update(CodeKey)
        .where(CodeKey.id.in_(seen), CodeKey.last_seen < at)
        .values(last_seen=at)
        .execution_options(synchronize_session=False)
    )
    return ids


def prune(session: Session, before: datetime) -> int:
    """Delete history rows older than ``before`` and keys not seen since; returns rows deleted."""
    gone = session.execute(
        delete(CodeHistory)
        .where(CodeHistory.at < before)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(
        delete(CodeKey)
        .where(CodeKey.last_seen < before)
        .execution_options(synchronize_session=False)
    )
    return int(gone or 0)


# --- resolving names ------------------------------------------------------------------------


def find(session: Session, text: str, *, service: str | None = None) -> list[CodeKey]:
    """The keys ``text`` names: exact names, and names it is a dotted/path suffix of (any kind).

    ``appraise`` finds ``vault.appraisal.Appraiser.appraise`` (and every other ``appraise``),
    ``Appraiser.appraise`` only the methods of classes called so, ``appraisal.py`` and
    ``vault/appraisal.py`` the file, ``/vaults/{id}`` the operations ``GET /vaults/{id}`` and
    ``PUT /vaults/{id}``. Case is ignored. ``service`` narrows it to one service.
    """
    query = text.strip()
    if not query:
        return []
    shorts = {short_name(kind, query) for kind in KINDS}
    stmt = select(CodeKey).where(CodeKey.short.in_(shorts))
    if service is not None:
        stmt = stmt.where(CodeKey.service == service)
    candidates = list(session.scalars(stmt))
    lowered = query.lower()
    return [k for k in candidates if k.name.lower() == lowered or _names(k, lowered)]


def _names(key: CodeKey, query: str) -> bool:
    """Whether ``query`` (lower case) is a whole-part suffix of the key's name."""
    name = key.name.lower()
    if key.kind == "operation":
        return short_name("operation", name) == short_name("operation", query)
    if not name.endswith(query):
        return False
    before = name[: len(name) - len(query)]
    return not before or before[-1] in "./\\:# " or not re.match(r"\w", query[0])


def closest(session: Session, text: str, *, n: int = 5) -> list[str]:
    """Known names nearest to ``text`` (difflib), for "did you mean".

    The short names are compared first (a few hundred, however many services), then the full
    names of the closest of them: the catalogue is never compared name by name.
    """
    typed = text.strip()
    shorts = {short_name(kind, typed).lower() for kind in KINDS}
    known = list(session.scalars(select(CodeKey.short).distinct()))
    near: list[str] = []
    for short in shorts:
        near += difflib.get_close_matches(short, known, n=n, cutoff=0.6)
    if not near:
        return []
    names = list(session.scalars(select(CodeKey.name).where(CodeKey.short.in_(near)).distinct()))
    close = difflib.get_close_matches(typed, names, n=n, cutoff=0.3)
    return close or names[:n]


# --- reading --------------------------------------------------------------------------------


def summarise(
    session: Session,
    query: str,
    keys: Sequence[CodeKey],
    *,
    now: datetime,
    main_environment: str = "production",
) -> Summary:
    """One answer about ``keys`` (what :func:`find` returned for ``query``) from the history."""
    ids = [k.id for k in keys]
    mine = CodeHistory.key_id.in_(ids)
    # Plain rows of the columns used, not ORM objects, and the JSON columns only where they
    # are needed: a year of one key is ~400 rows, decoding them all would be most of the time.
    main: list[Any] = list(
        session.execute(
            select(*(getattr(CodeHistory, c) for c in _SCALARS))
            .where(mine, CodeHistory.environment == main_environment)
            .order_by(CodeHistory.at)
        )
    )
    since = now - BASELINE
    recent = [r for r in main if r.at >= since]
    callers = session.scalars(
        select(CodeHistory.callers).where(
            mine, CodeHistory.environment == main_environment, CodeHistory.at >= since
        )
    )
    per_day = _per_day(main)
    calls = sum(r.calls for r in recent)
    services = tuple(sorted({k.service for k in keys}))
    return Summary(
        query=query,
        keys=tuple((k.service, k.kind, k.name) for k in keys),
        per_day=per_day,
        observed=_observed(main),
        trend=_trend(per_day, now.date()),
        callers=_merged(tuple(c) for listed in callers for c in listed),
        p50_ms=_median([r.p50_ms for r in recent]),
        p95_ms=_median([r.p95_ms for r in recent]),
        error_rate=(sum(r.errors for r in recent) / calls) if calls else None,
        calls=calls,
        exceptions=_elements(session, ids, "exceptions"),
        insights=_elements(session, ids, "insights"),
        environments=_environments(session, services, mine),
        touched=touched(session, keys),
        first_seen=min((k.first_seen for k in keys), default=None),
        last_seen=max((k.last_seen for k in keys), default=None),
        main_environment=main_environment,
        services=services,
    )


#: Per JSON list element of the keys' rows: its first item (or itself), its spans (the second
#: item, else 1) and the latest row's time. SQLite's json_each and PostgreSQL's
#: json_array_elements do it in the database: a year of rows is never decoded in Python.
_ELEMENTS = {
    "sqlite": (
        "SELECT CASE WHEN j.type = 'array' THEN json_extract(j.value, '$[0]') ELSE j.value END,"
        " SUM(CASE WHEN j.type = 'array' THEN json_extract(j.value, '$[1]') ELSE 1 END),"
        " MAX(h.at) FROM code_history h, json_each(h.{column}) j"
        " WHERE h.key_id IN :ids AND h.{column} <> '[]' GROUP BY 1 ORDER BY 2 DESC, 1"
    ),
    "postgresql": (
        "SELECT CASE WHEN json_typeof(j) = 'array' THEN j->>0 ELSE j#>>'{{}}' END,"
        " SUM(CASE WHEN json_typeof(j) = 'array' THEN (j->>1)::bigint ELSE 1 END),"
        " MAX(h.at) FROM code_history h CROSS JOIN LATERAL json_array_elements(h.{column}) j"
        " WHERE h.key_id IN :ids AND h.{column}::text <> '[]' GROUP BY 1 ORDER BY 2 DESC, 1"
    ),
}


def _elements(
    session: Session, ids: Sequence[int], column: str
) -> tuple[tuple[str, int, datetime], ...]:
    """(name, spans or rows, last seen) of what the keys' ``column`` lists, busiest first."""
    dialect = session.get_bind().dialect.name
    sql = _ELEMENTS["postgresql" if dialect == "postgresql" else "sqlite"].format(column=column)
    stmt = text(sql).bindparams(bindparam("ids", expanding=True))
    return tuple(
        (str(name), int(n or 0), _aware(last))
        for name, n, last in session.execute(stmt, {"ids": list(ids)})
    )


def _aware(value: datetime | str) -> datetime:
    """A time from a raw SQL result: SQLite gives text, PostgreSQL an aware datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_SCALARS = ("key_id", "at", "seconds", "calls", "errors", "p50_ms", "p95_ms")


def _rate(row: Any) -> float:
    """Calls a day of one row: its calls over the time its version was seen serving."""
    return float(row.calls * 86_400 / max(row.seconds, MIN_SECONDS))


def _per_day(rows: Iterable[Any]) -> tuple[tuple[date, float], ...]:
    """Per calendar day, the summed calls a day of the keys' latest row that day per key."""
    latest: dict[tuple[date, int], Any] = {}
    for row in rows:  # ordered by time: the day's last row per key wins
        latest[(row.at.date(), row.key_id)] = row
    days: dict[date, float] = defaultdict(float)
    for (day, _), row in latest.items():
        days[day] += _rate(row)
    return tuple(sorted(days.items()))


def _observed(rows: Sequence[Any]) -> tuple[int, float] | None:
    """The latest day's calls and seconds of serving, summed over its last row per key."""
    if not rows:
        return None
    day = rows[-1].at.date()
    latest = {row.key_id: row for row in rows if row.at.date() == day}
    return (
        sum(row.calls for row in latest.values()),
        max(row.seconds for row in latest.values()),
    )


def _trend(per_day: Sequence[tuple[date, float]], today: date) -> float | None:
    last = [v for d, v in per_day if today - d < timedelta(days=7)]
    before = [v for d, v in per_day if timedelta(days=7) <= today - d < timedelta(days=28)]
    if not last or not before or statistics.mean(before) == 0:
        return None
    return statistics.mean(last) / statistics.mean(before)


def _median(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def _merged(pairs: Iterable[tuple[object, ...]], limit: int = 8) -> tuple[tuple[str, int], ...]:
    total: dict[str, int] = defaultdict(int)
    for name, count in pairs:
        total[str(name)] += int(count)  # type: ignore[call-overload]
    return tuple(sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


def _environments(
    session: Session, services: Collection[str], mine: Any
) -> tuple[EnvironmentSeen, ...]:
    """Every environment the services were deployed to, with the keys' calls there."""
    deployed = session.scalars(
        select(Release.environment).where(Release.service.in_(services)).distinct()
    ).all()
    seen = {
        env: (int(calls or 0), last)
        for env, calls, last in session.execute(
            select(CodeHistory.environment, func.sum(CodeHistory.calls), func.max(CodeHistory.at))
            .where(mine, CodeHistory.calls > 0)
            .group_by(CodeHistory.environment)
        )
    }
    names = sorted({*deployed, *seen})
    return tuple(
        EnvironmentSeen(env, *seen[env]) if env in seen else EnvironmentSeen(env, 0, None)
        for env in names
    )


def touched(
    session: Session, keys: Sequence[CodeKey], limit: int = RELEASES_SHOWN
) -> tuple[Touched, ...]:
    """The newest releases of the keys' services whose changes name their functions or files."""
    services = {k.service for k in keys}
    functions = {k.name for k in keys if k.kind == "function"}
    files = {k.name for k in keys if k.kind == "file"} | {k.file for k in keys if k.file}
    if not functions and not files:
        return ()
    stmt = (
        select(Change.release_id, Change.file, Change.functions)
        .join(Release, Change.release_id == Release.id)
        .where(Release.service.in_(services))
        .order_by(Release.deployed_at.desc(), Release.id.desc())
    )
    found: dict[int, list[str]] = {}
    # Newest first, a page at a time: most answers need the first page only.
    for offset in itertools.count(0, TOUCHED_PAGE):
        page = session.execute(stmt.limit(TOUCHED_PAGE).offset(offset)).all()
        for release_id, path, changed in page:
            named = [str(f) for f in changed or () if same_function(str(f), functions)]
            if named or (path is not None and _same_file(path, files)):
                found.setdefault(release_id, []).extend(named)
        if len(found) >= limit or len(page) < TOUCHED_PAGE:
            break
    chosen = list(found)[:limit]
    releases = {r.id: r for r in session.scalars(select(Release).where(Release.id.in_(chosen)))}
    return tuple(
        Touched(r.service, r.version, r.environment, r.deployed_at, _verdict(session, r.id),
                tuple(dict.fromkeys(found[i])), r.title)
        for i in chosen
        for r in (releases[i],)
    )  # fmt: skip


def same_function(changed: str, names: Collection[str]) -> bool:
    """Whether a changed function (from a diff) is one of ``names`` (from spans), as
    :func:`feedbot.spans.footprint.same_function` matches them."""
    return any(_same_function(changed, n) for n in names)


def _same_file(path: str, files: Collection[str]) -> bool:
    path = path.replace("\\", "/").lstrip("./")
    return any(
        path == f or f.endswith("/" + path) or path.endswith("/" + f)
        for f in (x.replace("\\", "/").lstrip("./") for x in files)
    )


def _verdict(session: Session, release_id: int) -> str | None:
    """The verdict of the release's latest finished check."""
    result = session.scalars(
        select(Check.result)
        .where(Check.release_id == release_id, Check.state == "done")
        .order_by(Check.offset_seconds.desc())
        .limit(1)
    ).first()
    report = (result or {}).get("report") or {}
    verdict = report.get("verdict") if isinstance(report, dict) else None
    return str(verdict) if verdict else None


def reached(
    session: Session, service: str, names: Collection[str], since: datetime
) -> dict[str, int]:
    """Calls since ``since`` of each of ``names`` (functions of ``service``; 0: never reached).

    A changed function counts as reached when a key's name is it or a dotted suffix either
    way (the diff and the spans qualify names differently).
    """
    keys = session.execute(
        select(CodeKey.id, CodeKey.name).where(
            CodeKey.service == service, CodeKey.kind == "function", CodeKey.last_seen >= since
        )
    ).all()
    calls: dict[int, int] = dict(
        session.execute(
            select(CodeHistory.key_id, func.sum(CodeHistory.calls))
            .where(CodeHistory.key_id.in_([i for i, _ in keys]), CodeHistory.at >= since)
            .group_by(CodeHistory.key_id)
        ).all()
    )
    return {
        name: sum(int(calls.get(i, 0) or 0) for i, key in keys if same_function(name, {key}))
        for name in names
    }


def instrumented(session: Session, services: Collection[str]) -> set[str]:
    """The services whose spans ever named a function (``code.*``): the only ones where a
    changed function no span names can be called "never reached"."""
    return set(
        session.scalars(
            select(CodeKey.service)
            .where(CodeKey.service.in_(services), CodeKey.kind == "function")
            .distinct()
        )
    )


@dataclass(frozen=True)
class Busy:
    """A key's calls a day over a period, per environment it ran in."""

    service: str
    kind: str
    name: str
    per_day: float
    environments: tuple[str, ...]


def busiest(
    session: Session,
    services: Collection[str],
    since: datetime,
    *,
    kind: str = "function",
) -> list[Busy]:
    """The keys of ``services`` seen since ``since``, by calls a day, busiest first."""
    stmt = (
        select(CodeKey, CodeHistory)
        .join(CodeHistory, CodeHistory.key_id == CodeKey.id)
        .where(
            CodeKey.service.in_(services),
            CodeKey.kind == kind,
            CodeKey.last_seen >= since,
            CodeHistory.at >= since,
        )
    )
    rates: dict[int, list[float]] = defaultdict(list)
    envs: dict[int, set[str]] = defaultdict(set)
    found: dict[int, CodeKey] = {}
    for key, row in session.execute(stmt):
        found[key.id] = key
        rates[key.id].append(_rate(row))
        if row.calls:
            envs[key.id].add(row.environment)
    out = [
        Busy(k.service, k.kind, k.name, statistics.mean(rates[i]), tuple(sorted(envs[i])))
        for i, k in found.items()
    ]
    return sorted(out, key=lambda b: (-b.per_day, b.service, b.name))


def environments_of(session: Session, services: Collection[str]) -> dict[str, set[str]]:
    """The environments each service was deployed to."""
    out: dict[str, set[str]] = defaultdict(set)
    for service, env in session.execute(
        select(Release.service, Release.environment).where(Release.service.in_(services)).distinct()
    ):
        out[service].add(env)
    return dict(out)


@dataclass(frozen=True)
class Held:
    """What the history holds of one function over a window: its checks' rows together.

    Attributes:
        footprint: Calls, errors and exceptions summed over the rows (each row is the latest
            check of one release), p50/p95 the rows' medians, callers merged.
        seconds: The serving time the rows were counted over.
        last_seen: The newest row's time.
    """

    footprint: Footprint
    seconds: float
    last_seen: datetime

    @property
    def per_day(self) -> float:
        """Calls a day: ``calls`` over the serving time they were counted in."""
        return self.footprint.calls * 86_400 / max(self.seconds, MIN_SECONDS)


def footprint_of(
    session: Session,
    service: str,
    functions: Collection[str],
    *,
    since: datetime,
    environment: str,
) -> dict[str, Held]:
    """Per changed function of ``service``, what the history holds of it since ``since`` in
    ``environment`` (the PR preview); functions without such rows are left out.

    A changed name (from a diff) matches the keys :func:`same_function` says it names.
    """
    out: dict[str, Held] = {}
    for name in functions:
        candidates = session.execute(
            select(CodeKey.id, CodeKey.name).where(
                CodeKey.service == service,
                CodeKey.kind == "function",
                CodeKey.short == short_name("function", name),
            )
        )
        ids = [key.id for key in candidates if _same_function(name, key.name)]
        if not ids:
            continue
        rows = list(
            session.execute(
                select(*(getattr(CodeHistory, c) for c in _HELD))
                .where(
                    CodeHistory.key_id.in_(ids),
                    CodeHistory.environment == environment,
                    CodeHistory.at >= since,
                )
                .order_by(CodeHistory.at)
            )
        )
        if rows:
            out[name] = _held(name, rows)
    return out


_HELD = ("at", "seconds", "calls", "errors", "p50_ms", "p95_ms", "callers", "exceptions")


def _held(name: str, rows: Sequence[Any]) -> Held:
    calls = sum(r.calls for r in rows)
    footprint = Footprint(
        kind="function",
        name=name,
        calls=calls,
        errors=sum(r.errors for r in rows),
        p50_ms=_median(r.p50_ms for r in rows),
        p95_ms=_median(r.p95_ms for r in rows),
        callers=_merged(tuple(c) for r in rows for c in r.callers or ()),
        exceptions=_merged(tuple(e) for r in rows for e in r.exceptions or ()),
    )
    return Held(footprint, sum(float(r.seconds) for r in rows), _aware(rows[-1].at))
