"""The release, service and meeting pages: everything behind a thread's story, as HTML. Pure.

A thread tells a release in five seconds (:mod:`feedbot.digest.story`); its page holds the rest:
the story in full (every chapter, not only the first three), each finding's evidence (test, n,
p/q, confidence interval), every span group, the charts the thread got (inline, as data URIs),
example traces linked to the team's trace UI, and the check timeline. The service page lists
its releases over time; the meeting page is the agenda of the feedback meeting: what reached
production since the last one, what it did, and the open questions.

Pages are rendered on the server from the Jinja2 templates in ``templates/`` (autoescaped, no
JavaScript, one stylesheet inline that reads on a phone). The callers (:mod:`feedbot.web.pages`)
gather the data; nothing here reads a database or the network.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import jinja2
import markupsafe

from feedbot.digest import story
from feedbot.digest.blocks import trace_url
from feedbot.digest.evidence import evidence_lines, window_text
from feedbot.digest.home import open_findings
from feedbot.digest.text import VERDICT_WORDS
from feedbot.digest.words import display_name

Report = Mapping[str, Any]


def verdict_words(verdict: str) -> str:
    """The verdict in words without its emoji (the page's colour says it): ``regressed``."""
    words = VERDICT_WORDS.get(verdict, verdict.replace("_", " ") or "no verdict")
    return words.split(" ", 1)[1] if " " in words and not words[0].isascii() else words


@dataclass(frozen=True)
class CheckRow:
    """One planned check of a release: the check timeline.

    Attributes:
        label: ``+15m``.
        due_at: When it was (or is) due.
        state: ``pending``, ``running``, ``done`` or ``failed``.
        verdict: The verdict of its report, when it finished with one.
        headline: Its story's headline.
        error: Why it failed, when it did.
    """

    label: str
    due_at: datetime
    state: str
    verdict: str | None = None
    headline: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Chart:
    """A chart the thread got: its title, what it shows in words, the PNG."""

    title: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


@dataclass(frozen=True)
class ReleaseFacts:
    """What the store knows of a release, beyond its report.

    Attributes:
        release_id: Its id.
        service: Its service.
        version: Its version.
        environment: Where it went.
        deployed_at: When.
        commit: Its commit.
        title: The change's title (a PR title), if known.
        url: Where the change is described, if known (http(s) only).
        author: Who shipped it, if known.
        features: The features it names.
        rollback: Whether it rolled back to an earlier version.
        thread: Its Slack thread, if one was posted.
    """

    release_id: int
    service: str
    version: str
    environment: str
    deployed_at: datetime
    commit: str = ""
    title: str | None = None
    url: str | None = None
    author: str | None = None
    features: tuple[str, ...] = ()
    rollback: bool = False
    thread: str | None = None


@dataclass(frozen=True)
class PageRelease:
    """A release with its latest report, as the service and meeting pages list it.

    Attributes:
        facts: The release.
        report: The latest finished check's report, None while none finished.
        acknowledged: Finding keys marked expected.
        link: Its release page.
    """

    facts: ReleaseFacts
    report: Report | None = None
    acknowledged: Collection[str] = ()
    link: str | None = None


@dataclass(frozen=True)
class Meeting:
    """The meeting page's frame.

    Attributes:
        start: Since when (the last meeting).
        end: Until when.
        cadence: ``weekly`` or ``biweekly``.
        link: Where the meeting happens (``slack.weekly_digest.meeting_link``).
    """

    start: datetime
    end: datetime
    cadence: str = "weekly"
    link: str | None = None


@dataclass(frozen=True)
class _Trace:
    trace_id: str
    url: str | None


@dataclass(frozen=True)
class _Evidence:
    kind: str
    where: str
    state: str
    sentence: str
    test: str
    n: str
    p: str
    q: str
    ci: str


@dataclass(frozen=True)
class _Group:
    span: str
    kind: str
    n: str
    p50: str
    p95: str
    errors: str
    changed: bool


@dataclass(frozen=True)
class _Listed:
    """A release on the service or meeting page, in the story's words."""

    facts: ReleaseFacts
    verdict: str
    verdict_words: str
    headline: str
    open: tuple[str, ...]
    questions: tuple[str, ...]
    link: str | None
    traces: tuple[_Trace, ...] = field(default=())


def release_page(
    facts: ReleaseFacts,
    report: Report | None,
    *,
    checks: Sequence[CheckRow] = (),
    charts: Sequence[Chart] = (),
    acknowledged: Collection[str] = (),
    ui_url: str | None = None,
    service_link: str | None = None,
    now: datetime,
) -> str:
    """The release page as an HTML document.

    Args:
        facts: The release.
        report: Its latest finished check's report; None: no check finished yet.
        checks: Its planned checks, in order.
        charts: The charts posted in its thread.
        acknowledged: Finding keys marked expected (left out of the story, listed as such).
        ui_url: The trace UI (``traces.ui_url``), for links to example traces.
        service_link: The service's page.
        now: When the page is drawn (said at its foot).
    """
    context: dict[str, Any] = {
        "facts": facts,
        "checks": checks,
        "charts": charts,
        "service_link": service_link,
        "now": now,
        "report": report,
    }
    if report is not None:
        told = story.tell(report, acknowledged=acknowledged)
        findings = list(report.get("findings", []))
        context |= {
            "story": told,
            "verdict": told.verdict,
            "verdict_words": verdict_words(told.verdict),
            "chapters": [
                (c, [_Trace(t, trace_url(ui_url, t)) for t in dict.fromkeys(c.trace_ids)])
                for c in told.all_chapters
            ],
            "traces": [_Trace(t, trace_url(ui_url, t)) for t in told.trace_ids[:10]],
            "evidence": [_evidence(f) for f in _ordered(findings)],
            "causes": [c for c in evidence_lines(report, []) if c.startswith("why ")],
            "groups": _groups(report),
            "notes": list(report.get("notes") or []),
            "windows": _windows(report),
            "expected": [f for f in findings if _key(f) in acknowledged],
        }
    return _render("release.html.j2", context)


def service_page(
    service: str, releases: Sequence[PageRelease], *, now: datetime, meeting_link: str | None
) -> str:
    """A service's page: its releases over time, newest first, each in its story's words."""
    listed = [_listed(r) for r in releases]
    verdicts = [item.verdict for item in listed]
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    return _render(
        "service.html.j2",
        {
            "service": service,
            "releases": listed,
            "timeline": _timeline(listed),
            "counts": [
                (verdict_words(v) if v != "unchecked" else "not checked yet", n)
                for v, n in counts.items()
            ],
            "now": now,
            "meeting_link": meeting_link,
        },
    )


def meeting_page(meeting: Meeting, releases: Sequence[PageRelease], *, now: datetime) -> str:
    """The feedback meeting's agenda: the features and changes that reached production since
    the last meeting, what each did (its story and open findings), and the open questions."""
    listed = sorted((_listed(r) for r in releases), key=lambda item: item.facts.deployed_at)
    features: dict[str, list[_Listed]] = {}
    for item in listed:
        for name in item.facts.features:
            features.setdefault(name, []).append(item)
    questions = [(item, q) for item in listed for q in item.questions]
    return _render(
        "meeting.html.j2",
        {
            "meeting": meeting,
            "releases": listed,
            "features": sorted(features.items()),
            "questions": questions,
            "alarms": [item for item in listed if item.open],
            "now": now,
        },
    )


def agenda_lines(releases: Sequence[PageRelease]) -> list[str]:
    """The meeting's agenda in plain lines (for ``/feedback meeting``): one per release,
    then the open questions."""
    listed = sorted((_listed(r) for r in releases), key=lambda item: item.facts.deployed_at)
    lines = [
        f"{item.verdict_words} · {item.facts.service} {item.facts.version}"
        + (f" ({', '.join(item.facts.features)})" if item.facts.features else "")
        + f": {item.headline}"
        for item in listed
    ]
    lines += [
        f"❓ {item.facts.service} {item.facts.version}: {q}"
        for item in listed
        for q in item.questions
    ]
    return lines


# --- building blocks --------------------------------------------------------------------------


def _listed(release: PageRelease) -> _Listed:
    report = release.report
    if report is None:
        return _Listed(
            facts=release.facts,
            verdict="unchecked",
            verdict_words="not checked yet",
            headline="No check has finished yet.",
            open=(),
            questions=(),
            link=release.link,
        )
    told = story.tell(report, acknowledged=release.acknowledged)
    found = open_findings(report, release.acknowledged)
    return _Listed(
        facts=release.facts,
        verdict=told.verdict,
        verdict_words=verdict_words(told.verdict),
        headline=told.headline,
        open=tuple(story.say(f, report) for f in found),
        questions=tuple(_questions(report, release.acknowledged)),
        link=release.link,
    )


#: The service page's strip of releases over time: its viewBox width and the dots' colours.
_STRIP_WIDTH = 600
_COLOURS = {"regressed": "#c0392b", "improved": "#1e8e3e", "neutral": "#7a8ca3"}


@dataclass(frozen=True)
class _Dot:
    x: float
    colour: str
    label: str


def _timeline(listed: Sequence[_Listed]) -> list[_Dot]:
    """One dot per release on a line from the first deploy to the last, coloured by verdict."""
    if not listed:
        return []
    times = [item.facts.deployed_at.timestamp() for item in listed]
    first, span = min(times), (max(times) - min(times)) or 1.0
    margin = 12
    return [
        _Dot(
            x=round(margin + (t - first) / span * (_STRIP_WIDTH - 2 * margin), 1),
            colour=_COLOURS.get(item.verdict, "#c8c8c8"),
            label=f"{item.facts.version} · {item.facts.deployed_at:%b %d %H:%M} · "
            f"{item.verdict_words}",
        )
        for item, t in zip(listed, times, strict=True)
    ]


def _questions(report: Report, acknowledged: Collection[str]) -> list[str]:
    """What to ask in the meeting: open alarms (expected?), changed code that never ran,
    watching changes (real?), a release checked against nothing."""
    out = []
    for finding in open_findings(report, acknowledged):
        out.append(f"Was this expected? {story.say(finding, report)}")
    for finding in report.get("findings", []):
        kind = finding.get("kind")
        if kind == "code_not_reached" and finding.get("function"):
            out.append(f"Is this code live yet? {story.say(finding, report)}")
        elif kind in ("latency_regression", "error_rate_increase") and (
            finding.get("state") == "suspected"
        ):
            out.append(f"Real or noise? {story.say(finding, report)}")
    if report.get("baseline_version") is None:
        out.append("No earlier version to compare with: what should this one be judged against?")
    return out


_ORDER = (
    "latency_regression",
    "error_rate_increase",
    "new_error_type",
    "n_plus_one",
    "latency_improvement",
    "error_rate_decrease",
    "tail_latency_regression",
    "code_not_reached",
    "code_reached",
    "bottleneck",
    "new_operation",
    "operation_gone",
    "low_traffic",
)


def _ordered(findings: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rank = {kind: i for i, kind in enumerate(_ORDER)}
    return sorted(findings, key=lambda f: rank.get(str(f.get("kind")), len(_ORDER)))


def _key(finding: Mapping[str, Any]) -> str:
    from feedbot.digest.delta import key_of

    return key_of(finding)


def _evidence(finding: Mapping[str, Any]) -> _Evidence:
    base = finding.get("baseline") or {}
    new = finding.get("candidate") or {}
    change = finding.get("change") or {}
    ci = ""
    if change.get("ci_low") is not None and change.get("ci_high") is not None:
        level = float(change.get("ci_level") or 0.95)
        times = "×" if "latency" in str(finding.get("kind")) else ""
        low, high = float(change["ci_low"]), float(change["ci_high"])
        ci = f"{low:.3g}{times} – {high:.3g}{times} ({level:.0%})"
    n = f"{base.get('n', '–')} → {new.get('n', '–')}" if base or new else "–"
    where = str(finding.get("span") or finding.get("function") or "")
    return _Evidence(
        kind=str(finding.get("kind") or "finding").replace("_", " "),
        where=display_name(where) if where else "",
        state=str(finding.get("state") or ""),
        sentence=display_name(str(finding.get("message") or "")),
        test=str(finding.get("method") or "–"),
        n=n,
        p=_sci(finding.get("p_value")),
        q=_sci(finding.get("q_value")),
        ci=ci or "–",
    )


def _sci(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2g}"


def _groups(report: Report) -> list[_Group]:
    changed = {str(f.get("span")) for f in report.get("findings", []) if f.get("span")}
    out = []
    for group in report.get("groups", []):
        base, new = group.get("baseline") or {}, group.get("candidate") or {}
        out.append(
            _Group(
                span=display_name(str(group.get("span"))),
                kind=str(group.get("kind") or ""),
                n=f"{base.get('count', '–')}\u00a0→ {new.get('count', '–')}",
                p50=_pair(base.get("p50_ms"), new.get("p50_ms")),
                p95=_pair(base.get("p95_ms"), new.get("p95_ms")),
                errors=f"{base.get('errors', '–')}\u00a0→ {new.get('errors', '–')}",
                changed=str(group.get("span")) in changed,
            )
        )
    return sorted(out, key=lambda g: (not g.changed, g.kind not in ("SERVER", "CONSUMER"), g.span))


def _pair(base: Any, new: Any) -> str:
    def one(v: Any) -> str:
        return "–" if v is None else f"{float(v):.3g}"

    return f"{one(base)}\u00a0→ {one(new)}"  # on a phone the pair breaks after the arrow


def _windows(report: Report) -> list[tuple[str, str]]:
    window = report.get("window") or {}
    out = []
    for side, version in (
        ("baseline", report.get("baseline_version")),
        ("candidate", report.get("version")),
    ):
        if version is not None and window.get(side):
            out.append((str(version), window_text(window[side])))
    return out


_BACKTICKS = re.compile(r"`([^`]+)`")


def code_markup(text: str) -> markupsafe.Markup:
    """Story text as HTML: escaped, with its backticked code names in ``<code>``."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(_BACKTICKS.sub(r"<code>\1</code>", escaped))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("feedbot.digest", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["code"] = code_markup
    return env


def _render(name: str, context: Mapping[str, Any]) -> str:
    return _environment().get_template(name).render(**context)


__all__ = [
    "Chart",
    "CheckRow",
    "Meeting",
    "PageRelease",
    "ReleaseFacts",
    "agenda_lines",
    "meeting_page",
    "release_page",
    "service_page",
]
