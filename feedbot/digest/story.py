"""The story of a check: what changed for whom and why, told once, in plain words. Pure.

Every rendering (the Slack reply and broadcast, the text fallback, ``/feedback``, the weekly
digest, ``feedbot report --format text``, the demo's console and preview) is drawn from one
:class:`Story`, built from the report JSON (:func:`feedbot.analysis.report.to_json`):

- A change that propagates up a call chain (child → handler → route) is **one** chapter at the
  route the developer knows: the first SERVER or CONSUMER group above it along the busiest
  callers, else the topmost changed ancestor. The chapter names the cause below it, from the
  report's ``causes`` (critical path, attribute contrast) or, in reports without causes, from
  its bottleneck, N+1 and new-exception findings. The findings it folds in are not told again.
- At most :data:`MAX_CHAPTERS` chapters, alarms first; the rest (unchanged, too quiet, new or
  gone operations) is one line, and changed code one more.
- The evidence (tests, n, p/q, CI, windows) is kept apart in :attr:`Story.evidence`, for a
  details view: never in a headline.

Text in a story is plain, with code names in backticks (which read as code in Slack and as
they are in a terminal); renderers escape it for their medium.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feedbot.digest import delta
from feedbot.digest.evidence import evidence_lines, percentiles
from feedbot.digest.words import (
    ENTRY_KINDS,
    code_name,
    count_words,
    ms,
    ms_pair,
    rate,
    short_type,
    slower_words,
)

Report = Mapping[str, Any]
Finding = Mapping[str, Any]
#: Chapters told in full; the rest is counted in :attr:`Story.rest`.
MAX_CHAPTERS = 3
#: Findings a chapter can be about, most telling first (the lead is the first present).
_TOLD = (
    "latency_regression",
    "error_rate_increase",
    "new_error_type",
    "n_plus_one",
    "latency_improvement",
    "error_rate_decrease",
)
#: Findings that only ever name a cause or fill the "rest" line.
_FOLDED = ("bottleneck", "new_operation", "operation_gone", "low_traffic")
_ALARMS = frozenset({"latency_regression", "error_rate_increase", "new_error_type"})
_BOTTLENECK = re.compile(r"^In (?P<parent>.+?), (?P<child>.+?) owns ")


@dataclass(frozen=True)
class Chapter:
    """One change, told at the operation the developer knows.

    Attributes:
        where: The operation it is told at (a route, a consumer, or the topmost changed one).
        headline: One sentence: what changed there, with the numbers a person compares.
        because: Sentences naming the cause below it and what else changed with it.
        context: The evidence line beside it: requests baseline → new and the tail latency.
        keys: The findings it tells (their :func:`feedbot.digest.delta.key_of`).
        alarms: Those of them that are alarms: what an "Expected" press acknowledges.
        alarm: Whether it is a confirmed regression or a new exception that passed its test.
        watching: Whether its lead finding is not confirmed yet.
        trace_ids: Example traces.
        mark: In a later check: "new", "confirmed" (was watching) or "" (told before).
    """

    where: str
    headline: str
    because: tuple[str, ...] = ()
    context: str = ""
    keys: tuple[str, ...] = ()
    alarms: tuple[str, ...] = ()
    alarm: bool = False
    watching: bool = False
    trace_ids: tuple[str, ...] = ()
    mark: str = ""

    @property
    def improvement(self) -> bool:
        """Whether it tells of something faster or failing less."""
        return self.keys[0].startswith(("latency_improvement", "error_rate_decrease"))

    @property
    def text(self) -> str:
        """The headline and its cause sentences as one paragraph."""
        return " ".join((self.headline, *self.because))


@dataclass(frozen=True)
class Since:
    """What changed since the previous check, in the story's words.

    Attributes:
        label: Which check that was ("+15m check").
        summary: ``1 new, 1 confirmed, 3 went away``.
        went_away: One line per change no longer seen.
        still: One line for the chapters told before and still there.
    """

    label: str
    summary: str
    went_away: tuple[str, ...] = ()
    still: str = ""


@dataclass(frozen=True)
class Story:
    """A check (or a stored report) told for people.

    Attributes:
        verdict: The report's verdict.
        headline: The first thing to read: the lead chapter's headline, or what it means that
            there is none ("No change worth your attention: …").
        chapters: The chapters shown, at most :data:`MAX_CHAPTERS` (after a previous check:
            only the new or changed ones).
        rest: One line for everything else.
        code: One line for the changed code: ran, not reached yet.
        since: What changed since the previous check, when there was one.
        evidence: The details: windows, then per finding its test, n, p/q, CI.
        trace_ids: Example traces of the chapters, first the lead's.
        acknowledged: Findings marked expected and left out.
    """

    verdict: str
    headline: str
    chapters: tuple[Chapter, ...] = ()
    rest: str = ""
    code: str = ""
    since: Since | None = None
    evidence: tuple[str, ...] = ()
    trace_ids: tuple[str, ...] = ()
    acknowledged: int = 0
    all_chapters: tuple[Chapter, ...] = field(default=(), repr=False)


def tell(
    report: Report,
    *,
    previous: Sequence[Finding] | None = None,
    since: str = "the last check",
    acknowledged: Collection[str] = (),
) -> Story:
    """The story of ``report``.

    Args:
        report: ``to_json`` output (the ``causes`` key may be missing in stored reports).
        previous: The previous check's findings: the story then tells what changed since.
        since: What that check was ("+15m check").
        acknowledged: Finding keys marked expected: left out.

    Returns:
        The story.
    """
    findings = [f for f in report.get("findings", []) if delta.key_of(f) not in acknowledged]
    graph = _Graph(report)
    chapters = _chapters(report, findings, graph)
    shown = chapters
    told_since = None
    if previous is not None:
        change = delta.compare(previous, findings, acknowledged)
        chapters = tuple(_marked(c, change) for c in chapters)
        shown = tuple(c for c in chapters if c.mark)
        told_since = _since(change, chapters, since)
    folded = {k for c in chapters for k in c.keys}
    return Story(
        verdict=str(report.get("verdict") or ""),
        headline=shown[0].headline if shown else _quiet_headline(report, findings, told_since),
        chapters=shown[:MAX_CHAPTERS],
        rest=_rest(report, findings, folded, graph, len(shown) - MAX_CHAPTERS),
        code=_code(findings),
        since=told_since,
        evidence=tuple(evidence_lines(report, findings)),
        trace_ids=tuple(
            dict.fromkeys(
                [
                    *(t for c in chapters for t in c.trace_ids),
                    *(str(t) for f in findings for t in f.get("example_trace_ids", [])),
                ]
            )
        ),
        acknowledged=len(acknowledged),
        all_chapters=chapters,
    )


def say(finding: Finding, report: Report) -> str:
    """One finding as one plain sentence, where it is (for lists such as the weekly digest)."""
    kind = str(finding.get("kind"))
    span = str(finding.get("span") or "")
    later = " (not confirmed yet)" if finding.get("state") == "suspected" else ""
    if kind.startswith("latency") and span:
        sentence = _latency_headline(span, finding, _Graph(report))
    elif kind.startswith("error_rate") or kind == "new_error_type":
        sentence = _error_sentence(span, finding, [finding]) if span else ""
    elif kind == "n_plus_one" and span:
        sentence = _repeat_sentence(span, finding)
    elif kind == "code_not_reached" and finding.get("function"):
        requests = (finding.get("candidate") or {}).get("n")
        tail = f" in {requests} requests" if requests else ""
        sentence = f"{code_name(str(finding['function']))} never ran{tail}."
    else:
        sentence = ""
    if not sentence:
        return str(finding.get("message") or kind.replace("_", " "))
    return sentence.rstrip(".") + later + "."


def leads(report: Report) -> set[str]:
    """Keys of the findings the report's chapters open with: each change once, where told."""
    return {c.keys[0] for c in tell(report).all_chapters}


class _Graph:
    """Span groups by name, with the busiest caller of each: the call chain upward."""

    def __init__(self, report: Report) -> None:
        self.groups: dict[str, Mapping[str, Any]] = {
            str(g["span"]): g for g in report.get("groups", [])
        }
        shift = report.get("global_shift") or {}
        #: Each group's baseline scale when the look was netted of every route's shift.
        self.net: dict[str, float] = (
            {str(f["span"]): float(f["factor"]) for f in shift.get("factors") or []}
            if shift.get("applied")
            else {}
        )

    def caller(self, span: str) -> str | None:
        group = self.groups.get(span) or {}
        for side in ("candidate", "baseline"):
            callers = (group.get(side) or {}).get("callers") or []
            if callers:
                name = str(callers[0]["span"])
                return None if name.startswith("(") else name
        return None

    def chain(self, span: str) -> list[str]:
        """``span`` and its busiest callers upward, to the root (cycles cut)."""
        out = [span]
        while (up := self.caller(out[-1])) is not None and up not in out and len(out) < 30:
            out.append(up)
        return out

    def entry(self, span: str) -> bool:
        """A route or consumer: what the developer knows the service by."""
        group = self.groups.get(span) or {}
        return str(group.get("kind")) in ENTRY_KINDS

    def side(self, span: str, which: str) -> Mapping[str, Any]:
        return (self.groups.get(span) or {}).get(which) or {}


def _home(span: str, graph: _Graph, changed: Collection[str]) -> str:
    """Where a change of ``span`` is told: the first route above it, else the topmost changed."""
    chain = graph.chain(span)
    for name in chain:
        if graph.entry(name):
            return name
    return next((name for name in reversed(chain) if name in changed), span)


def _chapters(report: Report, findings: Sequence[Finding], graph: _Graph) -> tuple[Chapter, ...]:
    """One chapter per home, alarms first, then watching regressions, then the rest."""
    told = [f for f in findings if f.get("kind") in _TOLD and f.get("span")]
    told = [f for f in told if f.get("kind") != "new_error_type" or _passed(f) or _lonely(f, told)]
    changed = {str(f["span"]) for f in told}
    homes: dict[str, list[Finding]] = {}
    for finding in told:
        homes.setdefault(_home(str(finding["span"]), graph, changed), []).append(finding)
    causes = list(report.get("causes") or [])
    out = [_chapter(home, fs, findings, causes, graph) for home, fs in homes.items()]
    return tuple(
        sorted(out, key=lambda c: (not c.alarm, c.watching, _TOLD.index(c.keys[0].split("|")[0])))
    )


def _passed(finding: Finding) -> bool:
    return finding.get("severity") == "high"


def _lonely(finding: Finding, told: Sequence[Finding]) -> bool:
    """A new exception type that failed its test is told only beside an error-rate change."""
    return any(
        f.get("kind") == "error_rate_increase" and f.get("span") == finding.get("span")
        for f in told
    )


def is_alarm(finding: Finding) -> bool:
    """What is broadcast and gets an "Expected" button: a confirmed regression, or a new
    exception type whose test passed (severity high), from its first look."""
    if finding.get("kind") == "new_error_type":
        return _passed(finding)
    return finding.get("kind") in _ALARMS and finding.get("state") == "confirmed"


def _lead(home: str, found: Sequence[Finding], graph: _Graph) -> Finding:
    """The finding a chapter opens with: the most telling kind, confirmed first, highest up."""
    chain = graph.chain(str(found[0]["span"]))

    def rank(f: Finding) -> tuple[int, int, int]:
        kind = str(f["kind"])
        # New exception types are told within the error-rate change when there is one.
        order = _TOLD.index(kind)
        height = -chain.index(str(f["span"])) if str(f["span"]) in chain else 0
        return (f.get("state") != "confirmed", order, height)

    return min(found, key=rank)


def _chapter(
    home: str,
    found: Sequence[Finding],
    findings: Sequence[Finding],
    causes: Sequence[Mapping[str, Any]],
    graph: _Graph,
) -> Chapter:
    lead = _lead(home, found, graph)
    because: list[str] = []
    kind = str(lead["kind"])
    if kind in ("latency_regression", "latency_improvement"):
        headline = _latency_headline(home, lead, graph)
        because += _latency_causes(lead, found, findings, causes, graph)
    elif kind in ("error_rate_increase", "error_rate_decrease", "new_error_type"):
        headline = _error_sentence(home, lead, found)
        because += _error_causes(lead, causes)
    else:
        headline = _repeat_sentence(home, lead)
    for other in found:
        if other is lead or _said(other, lead, [headline, *because]):
            continue
        sentence = _aside(other, found)
        if sentence:
            because.append(sentence)
    watching = lead.get("state") == "suspected"
    if watching:
        headline = f"Watching: {headline.rstrip('.')} (not confirmed yet)."
    keys = [delta.key_of(lead), *(delta.key_of(f) for f in found if f is not lead)]
    keys += [delta.key_of(f) for f in _folded_findings(found, findings, because)]
    return Chapter(
        where=home,
        headline=headline,
        because=tuple(dict.fromkeys(because)),
        context=_context(home, lead, graph),
        keys=tuple(dict.fromkeys(keys)),
        alarms=tuple(delta.key_of(f) for f in found if is_alarm(f)),
        alarm=any(is_alarm(f) for f in found),
        watching=watching and not any(is_alarm(f) for f in found),
        trace_ids=tuple(t for f in (lead, *found) for t in f.get("example_trace_ids", []))[:3],
    )


def _said(other: Finding, lead: Finding, because: Sequence[str]) -> bool:
    """Whether ``other`` is already said: the same change further down the chain, or the
    exception type the error sentence names."""
    if other.get("kind") == lead.get("kind") and other.get("kind", "").startswith("latency"):
        return True  # the same slowdown told once, at the top
    if other.get("kind") == "new_error_type":
        return short_type(str(other.get("exception_type"))) in " ".join(because)
    if lead.get("kind") == "new_error_type" and other.get("kind") == "error_rate_increase":
        return other.get("span") == lead.get("span")
    return False


def _latency_headline(home: str, lead: Finding, graph: _Graph) -> str:
    """```POST /items` is 3.1× slower: 19 → 58 ms at the median.``"""
    base, new = _values(lead)
    where = code_name(home)
    span = str(lead["span"])
    words = slower_words(base, new)
    numbers = f": {ms_pair(base, new)} at the median" if base and new is not None else ""
    factor = graph.net.get(span)
    ratio = (lead.get("change") or {}).get("ratio")
    if factor and factor != 1.0 and ratio:
        numbers += (
            f" ({slower_words(1.0, float(ratio))} net of the {factor - 1:+.0%} every route "
            "moved after the deploy)"
        )
    if span == home:
        return f"{where} is {words}{numbers}."
    return f"In {where}, {code_name(span)} is {words}{numbers}."


def _values(finding: Finding) -> tuple[float | None, float | None]:
    base = (finding.get("baseline") or {}).get("value")
    new = (finding.get("candidate") or {}).get("value")
    return (None if base is None else float(base), None if new is None else float(new))


def _latency_causes(
    lead: Finding,
    found: Sequence[Finding],
    findings: Sequence[Finding],
    causes: Sequence[Mapping[str, Any]],
    graph: _Graph,
) -> list[str]:
    """The cause below the slowdown: from the report's causes, else its bottleneck findings."""
    mine = [c for c in causes if c.get("explains") == "latency"]
    if mine:
        return _told_causes(str(lead["span"]), mine, findings, graph)
    return _bottleneck_causes(str(lead["span"]), findings, graph)


def _told_causes(
    span: str,
    causes: Sequence[Mapping[str, Any]],
    findings: Sequence[Finding],
    graph: _Graph,
) -> list[str]:
    """Follow the strongest child cause down (route → handler → child) and name the deepest
    one, with the share of the slowdown it explains; then any attribute the change shares."""
    by_span: dict[str, list[Mapping[str, Any]]] = {}
    for cause in causes:
        by_span.setdefault(str(cause["span"]), []).append(cause)
    share, here, seen = 1.0, span, {span}
    chosen: Mapping[str, Any] | None = None
    while here in by_span:
        steps = sorted(
            (c for c in by_span[here] if c.get("kind") != "attribute"),
            key=lambda c: -float(c.get("share") or 0),
        )
        if not steps:
            break
        chosen = steps[0]
        share *= min(1.0, float(chosen.get("share") or 0))
        nxt = str(chosen.get("name"))
        if chosen.get("kind") not in ("child", "new_child") or nxt in seen:
            break
        seen.add(nxt)
        here = nxt
    out = []
    if chosen is not None:
        out.append(_cause_sentence(chosen, share, findings))
    attributes = [c for c in causes if c.get("kind") == "attribute" and str(c["span"]) in seen]
    if attributes:
        best = max(attributes, key=lambda c: float(c.get("share") or 0))
        out.append(_attribute_sentence(best, "slowdown"))
    return out


def _cause_sentence(cause: Mapping[str, Any], share: float, findings: Sequence[Finding]) -> str:
    """``The new `goblin_seal` adds 26 ms to every `deposit` (65% of the slowdown).``"""
    name, parent = code_name(str(cause["name"])), code_name(str(cause["span"]))
    base, new = cause.get("baseline"), cause.get("candidate")
    added = (float(new or 0) - float(base or 0)) if new is not None else None
    part = f" ({share:.0%} of the slowdown)" if share < 0.995 else ""
    kind = cause.get("kind")
    if kind == "new_child" or (kind == "child" and base in (None, 0)):
        return f"The new {name} adds {ms(added)} to every {parent} call{part}."
    if kind == "self":
        return f"The time is in {name}'s own code: {ms_pair(base, new)} per call{part}."
    if kind == "repeat":
        return f"A query repeated in {parent} adds {ms(added)} per call{part}: {name}."
    return f"{name} takes {ms_pair(base, new)} per {parent} call{part}."


def _attribute_sentence(cause: Mapping[str, Any], what: str) -> str:
    """``It is where `region=eu-west-1`: 80% of the slowdown.``"""
    share = min(1.0, float(cause.get("share") or 0))
    return f"It is concentrated where {code_name(str(cause['name']))}: {share:.0%} of the {what}."


def _bottleneck_causes(span: str, findings: Sequence[Finding], graph: _Graph) -> list[str]:
    """For reports without causes: follow the bottleneck findings (group means) down, from
    the slowed span or, when it has none, from the highest span below it that has one."""
    steps: dict[str, Finding] = {}
    for f in findings:
        match = _BOTTLENECK.match(str(f.get("message") or ""))
        if f.get("kind") == "bottleneck" and match:
            steps.setdefault(str(f.get("span")), f)
    if span not in steps:
        below = [s for s in steps if span in graph.chain(s)]
        span = min(below, key=lambda s: len(graph.chain(s)), default=span)
    here, seen, chosen = span, {span}, None
    while here in steps:
        chosen = steps[here]
        match = _BOTTLENECK.match(str(chosen.get("message")))
        nxt = match["child"] if match else here
        if nxt in seen:
            break
        seen.add(nxt)
        here = nxt
    if chosen is None:
        return []
    parent = code_name(str(chosen["span"]))
    name = code_name(here)
    base, new = _values(chosen)
    new_ops = {f.get("span") for f in findings if f.get("kind") == "new_operation"}
    if here in new_ops or not base:
        return [f"The new {name} adds {ms(new)} to every {parent} call."]
    return [f"{name} takes {ms_pair(base, new)} per {parent} call."]


def _error_sentence(home: str, lead: Finding, found: Sequence[Finding]) -> str:
    """```POST /items` fails 5.2% of the time (was 0%): GoblinRateLimitError, new in this
    version.`` (in the operation below the route when the errors are there)."""
    span = str(lead["span"])
    where = code_name(home) if span == home else f"In {code_name(home)}, {code_name(span)}"
    types = [
        f
        for f in found
        if f.get("kind") == "new_error_type" and f.get("span") == span and f.get("exception_type")
    ]
    named = (
        f": {code_name(short_type(str(types[0]['exception_type'])))}, new in this version"
        if types
        else ""
    )
    if lead.get("kind") == "new_error_type":
        share = (lead.get("candidate") or {}).get("n")
        count = (lead.get("candidate") or {}).get("value")
        kind = code_name(short_type(str(lead.get("exception_type"))))
        if count is None:
            return f"{where} raises {kind}, new in this version."
        of = f" in {share} calls" if share else ""
        return f"{where} raises {kind}, new in this version: {int(count)} times{of}."
    base, new = _values(lead)
    verb = "now fails" if lead.get("kind") == "error_rate_increase" else "now fails only"
    return f"{where} {verb} {rate(new)} of the time (was {rate(base)}){named}."


def _error_causes(lead: Finding, causes: Sequence[Mapping[str, Any]]) -> list[str]:
    mine = [c for c in causes if c.get("explains") == "errors" and c.get("span") == lead["span"]]
    out = []
    for cause in sorted(mine, key=lambda c: -float(c.get("share") or 0))[:2]:
        if cause.get("kind") == "attribute":
            out.append(_attribute_sentence(cause, "failures"))
        else:
            share = min(1.0, float(cause.get("share") or 0))
            out.append(f"They come from {code_name(str(cause['name']))} ({share:.0%} of them).")
    return out


def _repeat_sentence(home: str, lead: Finding) -> str:
    """``In `GET /appraisal`, `appraise` runs one query 7 times per request (new): `SELECT …```."""
    span = str(lead["span"])
    where = code_name(home) if span == home else f"In {code_name(home)}, {code_name(span)}"
    _, repeats = _values(lead)
    times = f"{repeats:.0f} times" if repeats else "many times"
    statement = str(lead.get("statement") or "")
    short = statement if len(statement) <= 80 else statement[:79] + "…"
    query = f": {code_name(short)}" if short else ""
    return f"{where} runs the same query {times} per request, new in this version{query}."


def _aside(other: Finding, found: Sequence[Finding]) -> str:
    """A further change in the same chapter, as one sentence."""
    kind = str(other.get("kind"))
    span = code_name(str(other.get("span")))
    later = " (not confirmed yet)" if other.get("state") == "suspected" else ""
    if kind in ("error_rate_increase", "new_error_type"):
        return _error_sentence(str(other["span"]), other, found).rstrip(".") + later + "."
    if kind == "n_plus_one":
        return _repeat_sentence(str(other["span"]), other).rstrip(".") + later + "."
    if kind.startswith("latency"):
        base, new = _values(other)
        return f"{span} is {slower_words(base, new)}{later}."
    return ""


def _folded_findings(
    found: Sequence[Finding], findings: Sequence[Finding], because: Sequence[str]
) -> list[Finding]:
    """Bottlenecks and new operations a chapter names: told there, not in the rest line."""
    said = " ".join(because)
    spans = {str(f.get("span")) for f in found}
    out = []
    for f in findings:
        kind = f.get("kind")
        if kind == "bottleneck" and str(f.get("span")) in spans:
            out.append(f)
        elif kind in ("new_operation", "operation_gone") and code_name(str(f.get("span"))) in said:
            out.append(f)
    return out


def _context(home: str, lead: Finding, graph: _Graph) -> str:
    """``213 → 213 requests · p95 37 → 102 ms`` for the chapter's operation."""
    span = str(lead["span"]) if lead.get("kind", "").startswith("latency") else home
    base, new = graph.side(span, "baseline"), graph.side(span, "candidate")
    n_base = base.get("count", (lead.get("baseline") or {}).get("n", "–"))
    n_new = new.get("count", (lead.get("candidate") or {}).get("n", "–"))
    unit = "requests" if graph.entry(span) else "calls"
    parts = [f"{n_base} → {n_new} {unit} of {code_name(span)}"]
    if base.get("p95_ms") is not None and new.get("p95_ms") is not None:
        parts.append(f"p95 {ms_pair(base['p95_ms'], new['p95_ms'])}")
    return " · ".join(parts)


def _marked(chapter: Chapter, change: delta.Delta) -> Chapter:
    """A chapter in a later check: "new", "confirmed" (was watching), or "" (told before)."""
    keys = set(chapter.keys)
    new = {delta.key_of(f) for f in change.new}
    if keys & new and chapter.keys[0] in new:
        mark = "new"
    elif change.was.get(chapter.keys[0]) == "suspected":
        mark = "confirmed"
    elif keys & (new | set(change.was)):
        mark = "changed"
    else:
        mark = ""
    return Chapter(**{**chapter.__dict__, "mark": mark})


def _since(change: delta.Delta, chapters: Sequence[Chapter], label: str) -> Since:
    """What changed since the previous check: counted, the gone ones said in plain words."""
    gone = list(delta.gone_alone(change))
    quiet = [f for f in gone if f.get("kind") == "low_traffic"]
    lines = [_gone_line(f) for f in gone if f.get("kind") not in ("low_traffic", "bottleneck")]
    lines = [line for line in lines if line]
    if quiet:
        lines.append(
            f"enough traffic now on {count_words(len(quiet), 'operation')} that was too quiet"
        )
    folded = {k for c in chapters for k in c.keys}
    facts = [
        f
        for f in change.new
        if f.get("kind") in ("new_error_type", "code_not_reached") and delta.key_of(f) not in folded
    ]
    counts = [
        (sum(c.mark == "new" for c in chapters) + len(facts), "new"),
        (sum(c.mark == "confirmed" for c in chapters), "confirmed"),
        (sum(c.mark == "changed" for c in chapters), "changed"),
        (len([f for f in gone if f.get("kind") != "bottleneck"]), "went away"),
        (sum(not c.mark for c in chapters), "still there"),
    ]
    summary = ", ".join(f"{n} {word}" for n, word in counts if n) or "nothing new"
    same = [c for c in chapters if not c.mark]
    still = "; ".join(_still(c) for c in same)
    return Since(label=label, summary=summary, went_away=tuple(lines), still=still)


def _still(chapter: Chapter) -> str:
    """A chapter told before, short, to go in a list: its headline up to its numbers.

    The cut is at the first ``": "`` outside code (a span such as ``vault.db: SELECT …`` has
    one inside); a chapter still watched says so, and the list's items are joined mid-sentence.
    """
    head = chapter.headline.rstrip(".")
    watching = head.startswith("Watching: ")
    head = head.removeprefix("Watching: ").removesuffix(" (not confirmed yet)")
    at, outside = 0, True
    for part in head.split("`"):
        if outside and ": " in part:
            head = head[: at + part.index(": ")]
            break
        at, outside = at + len(part) + 1, not outside
    if head.startswith("In "):
        head = "in" + head[2:]
    return f"{head} (watching)" if watching else head


def _gone_line(finding: Finding) -> str:
    """A change that went away, in the story's words."""
    kind = str(finding.get("kind"))
    where = code_name(delta.where(finding))
    words = {
        "latency_regression": f"{where} is no longer slower",
        "latency_improvement": f"{where} is no longer faster",
        "error_rate_increase": f"{where} fails no more often than before",
        "error_rate_decrease": f"{where} fails as often as before",
        "new_error_type": f"{where} no longer raises "
        + code_name(short_type(str(finding.get("exception_type")))),
        "n_plus_one": f"the repeated query in {where} is gone",
        "code_not_reached": f"{where} ran after all",
        "new_operation": f"{where} stopped running",
        "operation_gone": f"{where} runs again",
    }
    return words.get(kind, "")


def _quiet_headline(report: Report, findings: Sequence[Finding], since: Since | None) -> str:
    """What a check without chapters says: nothing worth attention, too little traffic, …"""
    verdict = str(report.get("verdict") or "")
    groups = list(report.get("groups", []))
    entries = [g for g in groups if str(g.get("kind")) in ENTRY_KINDS and g.get("candidate")]
    against = report.get("baseline_version")
    if verdict == "not_running":
        return f"No traffic on {report.get('version')} yet: nothing to compare."
    if since is not None and since.still:
        return f"Nothing new since the {since.label}."
    if verdict == "insufficient_data":
        quiet = [f for f in findings if f.get("kind") == "low_traffic" and f.get("span")]
        return (
            f"Too little traffic to tell yet: {count_words(len(quiet), 'operation')} "
            "had too few requests to compare."
        )
    if against is None:
        return f"Nothing to compare {report.get('version')} with yet: no earlier version."
    what = count_words(len(entries), "route") if entries else count_words(len(groups), "operation")
    return f"No change worth your attention: {what} as fast and as reliable as {against}."


def _rest(
    report: Report,
    findings: Sequence[Finding],
    folded: Collection[str],
    graph: _Graph,
    hidden: int,
) -> str:
    """``11 other operations unchanged · 6 too quiet to judge yet · 7 new operations``."""
    left = [f for f in findings if delta.key_of(f) not in folded]
    told_spans = {
        str(f.get("span")) for f in findings if delta.key_of(f) in folded and f.get("span")
    }
    quiet = [f for f in left if f.get("kind") == "low_traffic" and f.get("span")]
    new = [f for f in left if f.get("kind") == "new_operation"]
    gone = [f for f in left if f.get("kind") == "operation_gone"]
    named = {str(f.get("span")) for f in left if f.get("span")} | told_spans
    unchanged = [g for g in graph.groups if g not in named]
    parts = [_rare(f) for f in left if f.get("kind") == "new_error_type"]
    if hidden > 0:
        parts.append(f"{count_words(hidden, 'more change')} in the details")
    if unchanged:
        other = "other " if told_spans else ""
        parts.append(f"{len(unchanged)} {other}{_ops(len(unchanged))} unchanged")
    if quiet:
        parts.append(f"{len(quiet)} too quiet to judge yet")
    if new:
        parts.append(f"{count_words(len(new), 'new operation')}")
    if gone:
        parts.append(f"{len(gone)} no longer {'runs' if len(gone) == 1 else 'run'}")
    return " · ".join(parts)


def _rare(finding: Finding) -> str:
    """A new exception type too rare to test: ```KeyError` is new in `GET /r2` (3 times)``."""
    kind = code_name(short_type(str(finding.get("exception_type"))))
    count = (finding.get("candidate") or {}).get("value")
    times = f", {int(count)} times" if count is not None else ""
    return f"{kind} is new in {code_name(str(finding.get('span')))}{times}: too few to judge yet"


def _ops(n: int) -> str:
    return "operation" if n == 1 else "operations"


def _code(findings: Iterable[Finding]) -> str:
    """``Changed code: ran `appraisal.appraise`, …; not reached yet: `recount_galleons```."""
    ran = [code_name(str(f["function"]), short=True) for f in findings if _fn(f, "code_reached")]
    never = [f for f in findings if _fn(f, "code_not_reached")]
    waiting = [code_name(str(f["function"]), short=True) for f in findings if _fn(f, "low_traffic")]
    parts = []
    if ran:
        parts.append("ran " + _listed(ran))
    if never:
        requests = (never[0].get("candidate") or {}).get("n")
        tail = f" in {requests} requests" if requests else ""
        names = _listed([code_name(str(f["function"]), short=True) for f in never])
        parts.append(f"never ran{tail}: {names}")
    if waiting:
        parts.append("not reached yet: " + _listed(waiting))
    return "Changed code: " + "; ".join(parts) if parts else ""


def _fn(finding: Finding, kind: str) -> bool:
    return finding.get("kind") == kind and bool(finding.get("function"))


def _listed(names: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


__all__ = ["Chapter", "Since", "Story", "is_alarm", "leads", "percentiles", "say", "tell"]
