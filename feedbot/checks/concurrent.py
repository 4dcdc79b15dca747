"""Over which time to compare two versions: while both served, else before and after the deploy.

During a rolling deploy both versions serve at once, under the same load: that overlap is the
comparison that time cannot confound (detection-methods.md §8, §9). The baseline's window
otherwise reaches back before the deploy, and a change of load at the deploy moment (a busier
hour, a batch job ending) then looks like the new version's doing. But once the old version is
fully replaced, "the baseline must come from the past" (§8): the overlap is only the look's
comparison while it is most of what the new version served.

The overlap runs from the new version's first span to the old version's last span in the
candidate window (same service and environment). It is used when both hold:

- it covers :data:`SERVING_SHARE` of the new version's serving time in this look's window (its
  first span to its last);
- it holds enough spans to test: the span groups with ``latency.min_samples`` spans of each
  version in it must hold :data:`TESTABLE_SHARE` of the new version's spans there (in groups
  both versions have, so a new operation does not count against it). Groups are counted as the
  analysis groups them, from the overlap's own answer, so the rule sees what the tests will see.

Otherwise the before/after window is the fallback, and the report says why in plain words.

The overlap guards against the time; it costs spans (the old version serves less and less of
it). So when it is testable, the old version's spans there are also set against its own spans
from before the deploy (:func:`feedbot.analysis.drift.steadiness`): when they show it ran as
before (the 90% interval of its shift within ±5%, no route moving on its own), the time of
the deploy moved nothing and the before/after window, with its larger baseline, is compared
instead; the report gives the old version's shift either way.

What it costs (``python -m benchmarks.overlap --deploys 20``: a 30-minute rollout, 10 requests a
minute per route, looks at +30 min, +1 h, +2 h, +4 h). The overlap at every look: no false
alarm when the load rises 30% at the deploy moment or an hour later (before/after: every
deploy), but +20% on one route confirmed by the end in 40% of the deploys, since every look
after the rollout compares the same half hour. With :data:`SERVING_SHARE` only the first look
reads the overlap (the second sits at the boundary, 30 min of 60): +20% is confirmed by the end
in every deploy again, found at the first look in 40% (before/after: 70%), and a load change at
the deploy moment or after it is again a false alarm in every deploy, at the later looks, as
with before/after, unless those looks are netted of the untouched routes' shift. They are by
default where the whole service's requests per minute moved with it (:func:`service_load`,
``latency.before_after_correction: auto``; ``--deploys 10``): a false alarm at a later look in
0% of the deploys with the load step at the deploy, 10% with it an hour later (on: 10%; off:
100% for both), while a release-wide +20% under the same load, or a closed loop's smaller one,
still regresses at a later look in every deploy (on: 0% and 20%).

The old version's past standing in when it ran steadily (``--deploys 10``, the overlap rule
without it vs with it): +20% found at the first look 50% → 70% (before/after alone: 80%),
confirmed by the end 100% in both; the load step at the deploy keeps the overlap at the first
look (its old version is 30% slower than before: not steady), no change gives no false alarm
in either; looks compared over the overlap without a change 32% → 12%.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from feedbot.analysis import drift
from feedbot.analysis.drift import ServiceLoad
from feedbot.analysis.report import Comparison
from feedbot.backends.base import RequestCounter, ServingTimes, TraceBackend, Traffic
from feedbot.digest.evidence import length_text, window_text
from feedbot.spans.model import ENTRY_KINDS, ReleaseData

Window = tuple[datetime, datetime]
#: (new version, baseline) as the backend answered them.
Pair = tuple[ReleaseData, ReleaseData | None]
#: Where a version served in a window: first and last span start, spans.
Served = tuple[datetime, datetime, int]
#: Share of the new version's overlap spans (in groups both versions have) that must sit in
#: groups testable there (``latency.min_samples`` spans of each version). Most of the traffic,
#: not all of it: a rare route that the overlap leaves untested loses a verdict it would get
#: from a day of baseline, but that baseline is confounded with time for every route; a short
#: overlap that would leave most of the traffic untested is not worth that trade.
TESTABLE_SHARE = 0.8
#: Share of the new version's serving time in the look's window (its first span to its last)
#: that the overlap must cover to be the look's comparison. Half: while the old version served
#: at least as long as the new one has served alone, the overlap is still most of the look, and
#: the same load for both is worth more than the spans left out. Past that, most of what the new
#: version served (its later spans, its exceptions after the old version stopped, its reach)
#: would be left out, and every later look would test the same overlap again; the baseline then
#: comes from the past (§8), which trades the overlap's immunity to a load change at the deploy
#: for the power of the whole window. Higher keeps the overlap for fewer looks; 0 keeps it for
#: every look (``benchmarks.overlap`` measures both).
SERVING_SHARE = 0.5
_TICK = timedelta(microseconds=1)


def where_served(
    backend: TraceBackend,
    *,
    service: str,
    versions: tuple[str, str],
    window: Window,
    env: str | None,
) -> tuple[Window | None, str]:
    """The overlap of ``versions`` (new, baseline) in ``window``, or None and why not.

    Asks the backend where each version served (:class:`ServingTimes`, one cheap query); a
    backend that cannot say keeps the before/after window.

    Raises:
        BackendError: the backend could not be reached or answered badly.
    """
    if not isinstance(backend, ServingTimes):
        return None, (
            f"The {backend.name} backend cannot say cheaply when each version served, so the "
            "before/after window was kept:"
        )
    seen = backend.serving(service, window[0], window[1], env)
    return overlap(seen.get(versions[0]), seen.get(versions[1]), window[0])


def overlap(
    new: Served | None, old: Served | None, deployed: datetime
) -> tuple[Window | None, str]:
    """From the new version's first span to the old one's last (end exclusive), or why not.

    None, too, when the overlap covers less than :data:`SERVING_SHARE` of the new version's
    serving time (its first span to its last): the old version was replaced early in the look.

    Args:
        new: where the new version served in its window.
        old: where the baseline version served in the new version's window (or later).
        deployed: the new version's window start, for the words.
    """
    if new is None:
        return None, "The new version sent no span in its window:"
    if old is None or old[1] < deployed:
        return None, f"The old version stopped serving at the deploy ({_clock(deployed)}):"
    first, last = new[0], old[1]
    if last <= first:
        return None, (
            f"The old version stopped serving before the new one started (its last span at "
            f"{_clock(last)}, the new version's first at {_clock(first)}):"
        )
    serving = (new[1] - first).total_seconds()
    together = (last - first).total_seconds()
    if together < SERVING_SHARE * serving:
        return None, (
            f"The old version stopped serving at {_clock(last)}, {length_text(together)} into "
            f"this {length_text(serving)} look (both served together for "
            f"{together / serving:.0%} of it, {SERVING_SHARE:.0%} needed):"
        )
    return (first, last + _TICK), ""


def choose(
    *,
    read: Callable[[Window | None], Pair],
    window: Window | None,
    why_not: str,
    min_samples: int,
    baseline_window: Window,
    full: Pair | None = None,
) -> tuple[Pair, Comparison]:
    """Both versions over ``window`` when it holds enough to test, else the fallback.

    Args:
        read: reads both versions over a window, or over their own windows with None.
        window: the overlap, None when there is none (``why_not`` says why).
        why_not: the sentence that opens the fallback's reason.
        min_samples: spans of each version a group needs for a latency verdict.
        baseline_window: the fallback's baseline window, for the words.
        full: the fallback's answer when already read (trace files are read once for it).
    """
    if window is not None:
        pair = read(window)
        share = testable_share(pair, min_samples)
        if share >= TESTABLE_SHARE:
            full = full if full is not None else read(None)
            if pair[1] is None or full[1] is None:
                return pair, _overlap(window, pair)
            steady = drift.steadiness(pair[1], full[1], min_samples, until=window[0])
            if not steady.steady:
                return pair, _overlap(window, pair, steady)
            why_not = (
                f"Both versions served together {_span(window)}, and {steady.sentence}: the "
                "time of the deploy moved nothing, so the larger sample from before it is used:"
            )
        else:
            why_not = (
                f"Both versions served together {_span(window)}, but too few spans to test "
                f"there (groups with {min_samples} spans of each version held {share:.0%} of "
                f"the new version's spans, {TESTABLE_SHARE:.0%} needed):"
            )
    pair = full if full is not None else read(None)
    spans = (_spans(pair[1]), _spans(pair[0]))
    reason = (
        f"{why_not} compared with the old version's spans of {_span(baseline_window)}, "
        f"before and after the deploy, {spans[0]:,} vs {spans[1]:,} spans."
    )
    if not spans[0]:
        reason = f"The old version sent no span in {_span(baseline_window)}: nothing to compare."
    rates = _rates(pair, None)
    return pair, Comparison("before_after", reason, None, spans, rates)


def service_load(
    backend: TraceBackend,
    *,
    service: str,
    env: str | None,
    before: Window,
    after: Window,
) -> ServiceLoad:
    """The whole service's requests per minute, every version together, ``before`` the deploy
    and ``after`` it: one count per window, pushed down to the store (:class:`RequestCounter`).

    Each rate divides by the time the service was seen serving in its window (first to last
    span), so a store that holds a few hours of a day's baseline window is not read as a quiet
    day. Requests are SERVER and CONSUMER spans; a service with none in either window is
    counted in spans. A backend that cannot count says so, and nothing is gated on it.

    Raises:
        BackendError: the backend could not be reached or answered badly.
    """
    if not isinstance(backend, RequestCounter):
        return ServiceLoad(
            None,
            unknown=f"the {backend.name} backend cannot count the service's requests before "
            "and after the deploy",
        )
    old = backend.traffic(service, before[0], before[1], env)
    new = backend.traffic(service, after[0], after[1], env)
    if old is None or new is None:
        where = "before" if old is None else "after"
        return ServiceLoad(None, unknown=f"the service sent no span {where} the deploy")
    counted = "requests" if old.entries and new.entries else "spans"
    rates = _per_minute(old, counted), _per_minute(new, counted)
    if rates[0] is None or rates[1] is None:
        return ServiceLoad(
            None, counted, unknown="the service was seen for too short a time to give a rate"
        )
    return ServiceLoad((rates[0], rates[1]), counted)


def _per_minute(traffic: Traffic, counted: str) -> float | None:
    n = traffic.entries if counted == "requests" else traffic.spans
    minutes = (traffic.last - traffic.first).total_seconds() / 60
    return n / minutes if minutes > 0 and n > 0 else None


def testable_share(pair: Pair, min_samples: int) -> float:
    """Share of the new version's spans, in groups both versions have, in testable groups."""
    candidate, baseline = pair
    if baseline is None:
        return 0.0
    base = {(g.name, g.kind): g.count for g in baseline.groups}
    both = [(g.count, base[g.name, g.kind]) for g in candidate.groups if (g.name, g.kind) in base]
    total = sum(n for n, _ in both)
    tested = sum(n for n, b in both if n >= min_samples and b >= min_samples)
    return tested / total if total else 0.0


def served(data: ReleaseData) -> Served | None:
    """Where a version served, from an answer already read (its first and last span)."""
    if data.observed is None:
        return None
    return data.observed[0], data.observed[1], _spans(data)


def _overlap(window: Window, pair: Pair, steady: drift.Steadiness | None = None) -> Comparison:
    spans = (_spans(pair[1]), _spans(pair[0]))
    reason = (
        f"Compared while both versions served: {_span(window)}, {spans[0]:,} vs {spans[1]:,} "
        "spans (old vs new)."
    )
    if steady is not None:
        reason += (
            f" Not with the larger sample from before the deploy: {steady.sentence}, so a change "
            "of load or time at the deploy could pass for the release's doing."
        )
    return Comparison("overlap", reason, window, spans, _rates(pair, window))


def _rates(pair: Pair, window: Window | None) -> tuple[float, float] | None:
    """Requests per minute of (baseline, new) over ``window``, else each one's serving time."""
    candidate, baseline = pair
    if baseline is None:
        return None
    kinds = ENTRY_KINDS if _entries(candidate) or _entries(baseline) else None
    rates = []
    for data in (baseline, candidate):
        seen = window or data.observed
        minutes = (seen[1] - seen[0]).total_seconds() / 60 if seen else 0.0
        if minutes <= 0:
            return None
        rates.append(_entries(data, kinds) / minutes)
    return rates[0], rates[1]


def _entries(data: ReleaseData, kinds: tuple[str, ...] | None = ENTRY_KINDS) -> int:
    return sum(g.count for g in data.groups if kinds is None or g.kind in kinds)


def _spans(data: ReleaseData | None) -> int:
    return sum(g.count for g in data.groups) if data is not None else 0


def _span(window: Window) -> str:
    return window_text({"start": window[0].isoformat(), "end": window[1].isoformat()})


def _clock(moment: datetime) -> str:
    return f"{moment:%b %d %H:%M:%S} UTC"
