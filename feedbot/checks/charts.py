"""Which routes of a check get a picture, and the pictures themselves.

A route (a SERVER or CONSUMER span group) with a latency regression or improvement, or an error
rate increase, in this check gets a chart of both versions' request times (and error rates when
they rose): at most :data:`MAX_CHARTS` per check, of the routes the reply's chapters are told
at, in its order (a chart beside the text shows what the text says). A route is drawn again
only when what is said about it changed: each chart has an identity (the route, its findings
and their states), and the check's result keeps the identities it charted, so a later check of
the release skips the ones already in the thread.

Drawing happens in the runner, outside any database transaction; the recorder queues the PNGs
in the outbox with the check's reply.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from feedbot.analysis.compare import Analysis
from feedbot.analysis.findings import Finding
from feedbot.spans.model import ReleaseData, SpanGroupStats

#: Charts per check reply, at most: a thread is read on a phone.
MAX_CHARTS = 2
#: Finding kinds a chart shows.
CHARTED_KINDS = frozenset({"latency_regression", "latency_improvement", "error_rate_increase"})
#: Span kinds that are routes a user knows (requests served, messages consumed).
ROUTE_KINDS = frozenset({"SERVER", "CONSUMER"})


@dataclass(frozen=True)
class RouteChart:
    """A chart of one route, ready to queue.

    Attributes:
        ident: What it shows (route, findings and states); drawn again only when this changes.
        span: The route.
        png: The image.
        title: Its title in the thread.
        alt: What it shows, in words (screen readers, and the text fallback).
    """

    ident: str
    span: str
    png: bytes
    title: str
    alt: str


@dataclass(frozen=True)
class _Wanted:
    span: str
    findings: tuple[Finding, ...]

    @property
    def ident(self) -> str:
        said = sorted(f"{f.kind}@{f.state}" for f in self.findings)
        return f"{self.span}|{','.join(said)}"

    @property
    def errors(self) -> bool:
        return any(f.kind == "error_rate_increase" for f in self.findings)


def wanted(analysis: Analysis, charted: Collection[str], told: Sequence[str]) -> list[_Wanted]:
    """The routes to draw for this check, leaving out identities in ``charted``.

    Args:
        told: The operations the reply tells its chapters at, in its order: only those
            routes, in that order, so the pictures are of what the text says.
    """
    routes = {g.span for g in analysis.groups if g.kind in ROUTE_KINDS}
    by_span: dict[str, list[Finding]] = {}
    for finding in analysis.findings:
        if finding.kind in CHARTED_KINDS and finding.span in routes:
            by_span.setdefault(finding.span, []).append(finding)
    order = {span: i for i, span in reversed(list(enumerate(told)))}
    fresh = [_Wanted(span, tuple(found)) for span, found in by_span.items() if span in order]
    fresh = [w for w in fresh if w.ident not in charted]
    return sorted(fresh, key=lambda w: order[w.span])[:MAX_CHARTS]


def draw(
    analysis: Analysis,
    *,
    candidate: ReleaseData,
    baseline: ReleaseData | None,
    versions: tuple[str, str],
    told: Sequence[str],
    charted: Collection[str] = (),
) -> tuple[RouteChart, ...]:
    """Draw the charts this check wants (see :func:`wanted`).

    Args:
        analysis: The check's analysis.
        candidate: The new version's spans.
        baseline: The baseline's spans; no chart without them.
        versions: ``(baseline version, new version)``, for the legend.
        charted: Identities already charted for this release.
        told: The operations the reply's chapters are told at, in its order (see
            :func:`wanted`).
    """
    from feedbot.digest import chart  # matplotlib loads only when a chart is drawn

    if baseline is None:
        return ()
    out = []
    for want in wanted(analysis, charted, told):
        base, new = _group(baseline.groups, want.span), _group(candidate.groups, want.span)
        if base is None or new is None:
            continue
        picture = chart.render(
            want.span,
            chart.Side(versions[0], base.durations_ms, base.count, base.errors),
            chart.Side(
                versions[1], new.durations_ms, new.count, new.errors, new.starts_ns, new.errored
            ),
            errors=want.errors,
        )
        out.append(RouteChart(want.ident, want.span, picture.png, picture.title, picture.alt))
    return tuple(out)


def _group(groups: Sequence[SpanGroupStats], span: str) -> SpanGroupStats | None:
    """The route's group; a route is named by its span name (kinds differ only for clients)."""
    return next((g for g in groups if g.name == span and g.kind in ROUTE_KINDS), None)
