"""One check's three steps, plan → collect → analyse, shared by the runner and ``feedbot report``.

A :class:`Plan` says what to compare: the release, the baseline version, both windows, the
changed code, the detection policy and where the look stands. The check runner plans from the
store (:mod:`feedbot.checks.runner`); ``feedbot report`` plans from a deploy document and the
command line. When neither knows the baseline version (no earlier release was registered, or
``report`` was not told one), :func:`baseline_from_data` asks the backend which versions sent
spans before the deploy and takes the most common other one. Both then :func:`collect` from a
trace backend (``report`` may read its files once
for both versions instead) and :func:`analyse` the result the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from feedbot.analysis import compare
from feedbot.analysis.compare import Analysis
from feedbot.analysis.detectors import TauHistory, TauRecord, tau_history
from feedbot.analysis.findings import KnownException
from feedbot.analysis.report import Comparison, ReportContext, to_json
from feedbot.analysis.stats import TauEstimate
from feedbot.backends.base import SpanCensus, TraceBackend, VersionLister
from feedbot.checks import concurrent
from feedbot.checks.charts import RouteChart
from feedbot.config import Settings
from feedbot.digest.text import report_text
from feedbot.policy import DetectionPolicy, with_overrides
from feedbot.releases.event import Change
from feedbot.spans.footprint import Footprint, footprints, with_insights
from feedbot.spans.model import Elsewhere, ReleaseData, SpanQuery
from feedbot.store import queries
from feedbot.store.queries import Observed


@dataclass(frozen=True)
class Plan:
    """What a check compares, read before any trace backend is asked.

    Attributes:
        context: The release, its baseline version and both windows.
        changes: The functions the release changed.
        policy: The detection policy, with the service's overrides applied.
        look: Which scheduled look this is (1-based).
        looks: How many looks are scheduled.
        held: Keys of the findings the previous look held.
        known_exceptions: Exception types the service raised before.
        final: No later look follows (``feedbot report``): findings are decided at this one.
        baseline_search: Where to look for the baseline version in the traces, ``(start,
            before)``, when the context names none (see :func:`baseline_from_data`).
        tau_records: The service's earlier releases' host spread, newest first, for the
            guard to pool (``host_guard.history_checks``); None without a store.
    """

    context: ReportContext
    changes: Sequence[Change]
    policy: DetectionPolicy
    look: int = 1
    looks: int = 4
    held: tuple[str, ...] = ()
    known_exceptions: tuple[KnownException, ...] = ()
    final: bool = False
    baseline_search: tuple[datetime, datetime] | None = None
    tau_records: tuple[TauRecord, ...] | None = None

    def candidate_query(self, window: tuple[datetime, datetime] | None = None) -> SpanQuery:
        """The new version's spans (over ``window`` when given, else its own window); its
        instances are new, so their warm-up is left out."""
        ctx = self.context
        window = window or ctx.candidate_window
        return _query(ctx, ctx.version, window, self.policy.latency.warmup)

    def baseline_query(self, window: tuple[datetime, datetime] | None = None) -> SpanQuery | None:
        """The baseline version's spans (its instances were already running), if any."""
        ctx = self.context
        if ctx.baseline_version is None or ctx.baseline_window is None:
            return None
        return _query(ctx, ctx.baseline_version, window or ctx.baseline_window, timedelta(0))


@dataclass(frozen=True)
class Collected:
    """What the trace backend answered for both versions."""

    candidate: ReleaseData
    baseline: ReleaseData | None
    backend: str
    comparison: Comparison | None = None


@dataclass(frozen=True)
class Finished:
    """A check's outcome before it is recorded: the analysis, its report, and what it saw.

    ``exceptions`` lists (version, span group, type, spans) for both versions, for the
    service's exception history. ``footprints`` is what the new version's spans showed per
    operation, function and file, with the findings about each, over ``serving_seconds`` (its
    first to its last span): the rows of the code history (:mod:`feedbot.store.history`).
    ``charts`` are the pictures of changed routes drawn for the thread (the runner draws them;
    ``report`` does not). ``tau`` is the look's own host spread per version, for the service's
    later checks (:func:`tau_json`).
    """

    analysis: Analysis
    report: dict[str, Any]
    text: str
    exceptions: tuple[Observed, ...] = ()
    charts: tuple[RouteChart, ...] = ()
    footprints: tuple[Footprint, ...] = ()
    serving_seconds: float = 0.0
    tau: dict[str, Any] | None = None


def policy_for(
    settings: Settings, service: str, base: DetectionPolicy | None = None
) -> DetectionPolicy:
    """The detection policy for ``service``: ``base`` with ``services.<service>.detectors``."""
    base = base or DetectionPolicy()
    conf = settings.services.get(service)
    return with_overrides(base, conf.detectors) if conf else base


def baseline_from_data(backend: TraceBackend, plan: Plan, *, why: str = "") -> Plan:
    """``plan`` with the baseline version found in the traces, when it names none.

    The backend counts the spans per version of the service in ``plan.baseline_search``; the
    most common version other than the release's becomes the baseline, compared over the
    search's start up to the candidate window's end, and a note says so (with ``why``).
    Unchanged when the plan has a baseline, no search window, or the backend cannot list
    versions.

    Raises:
        BackendError: the backend could not be reached or answered badly.
    """
    ctx, search = plan.context, plan.baseline_search
    if ctx.baseline_version is not None or search is None:
        return plan
    if not isinstance(backend, VersionLister):
        return plan
    seen = backend.versions(ctx.service, search[0], search[1], ctx.environment)
    where = f"between {search[0].isoformat()} and {search[1].isoformat()}"
    version, note = most_common(ctx.service, ctx.version, seen, where)
    window = (search[0], ctx.candidate_window[1]) if version is not None else None
    context = replace(
        ctx, baseline_version=version, baseline_window=window, notes=(note + why, *ctx.notes)
    )
    return replace(plan, context=context)


def most_common(
    service: str, version: str, seen: Mapping[str, int], where: str
) -> tuple[str | None, str]:
    """The version other than ``version`` with the most spans in ``seen``, and a note saying so.

    Args:
        service: The service, for the note.
        version: The release's own version, never its baseline.
        seen: Spans per version.
        where: Where they were counted, for the note (``"between … and …"``).
    """
    others = Counter(seen)
    others.pop(version, None)
    if not others:
        return None, (f"Baseline version: none; no other version of {service} had spans {where}.")
    best, spans = others.most_common(1)[0]
    also = ", ".join(f"{v} ({n})" for v, n in others.most_common()[1:4])
    return best, (
        f"Baseline version {best}: the most common other version of {service} {where} "
        f"({spans} spans)" + (f"; also seen: {also}." if also else ".")
    )


def collect(backend: TraceBackend, plan: Plan) -> Collected:
    """Ask the trace backend for both versions' spans; no database access here.

    Both versions are read over the time both served when the backend can say where that was
    and it holds enough spans to test (:mod:`feedbot.checks.concurrent`), else each over its
    own window.

    Raises:
        BackendError: the backend could not be reached or answered badly.
    """

    def read(window: tuple[datetime, datetime] | None) -> concurrent.Pair:
        candidate = backend.collect(plan.candidate_query(window))
        baseline_query = plan.baseline_query(window)
        return candidate, backend.collect(baseline_query) if baseline_query else None

    ctx = plan.context
    if ctx.baseline_version is None or ctx.baseline_window is None:
        candidate, baseline = read(None)
        return surveyed(backend, plan, Collected(candidate, baseline, backend.name))
    window, why_not = concurrent.where_served(
        backend,
        service=ctx.service,
        versions=(ctx.version, ctx.baseline_version),
        window=ctx.candidate_window,
        env=ctx.environment,
    )
    collected = compared(plan, read, window, why_not, backend.name)
    return surveyed(backend, plan, loaded(backend, plan, collected))


def loaded(backend: TraceBackend, plan: Plan, collected: Collected) -> Collected:
    """``collected``, with the whole service's requests per minute before and after the deploy
    when the look is before/after (:func:`concurrent.service_load`: one count per window).

    Before: the baseline window up to the deploy; after: the look's window from the deploy.

    Raises:
        BackendError: the backend could not be reached or answered badly.
    """
    ctx, comparison = plan.context, collected.comparison
    if comparison is None or comparison.kind != "before_after" or ctx.baseline_window is None:
        return collected
    deployed, end = ctx.candidate_window
    load = concurrent.service_load(
        backend,
        service=ctx.service,
        env=ctx.environment,
        before=(min(ctx.baseline_window[0], deployed), deployed),
        after=(deployed, end),
    )
    return replace(collected, comparison=replace(comparison, service_load=load))


def compared(
    plan: Plan,
    read: Callable[[tuple[datetime, datetime] | None], concurrent.Pair],
    window: tuple[datetime, datetime] | None,
    why_not: str,
    backend: str,
    full: concurrent.Pair | None = None,
) -> Collected:
    """Both versions over the overlap ``window`` when it holds enough to test, else over their
    own windows (``full`` when already read), with the comparison that says which."""
    ctx = plan.context
    assert ctx.baseline_window is not None
    (candidate, baseline), comparison = concurrent.choose(
        read=read,
        window=window,
        why_not=why_not,
        min_samples=plan.policy.latency.min_samples,
        baseline_window=ctx.baseline_window,
        full=full,
    )
    return Collected(candidate, baseline, backend, comparison)


def surveyed(backend: TraceBackend, plan: Plan, collected: Collected) -> Collected:
    """``collected``, and when the new version matched no span, what the store holds instead.

    A backend that can count the service's spans by environment and version
    (:class:`~feedbot.backends.base.SpanCensus`) is asked about the candidate window, so the
    report names a mismatched environment or missing ``service.version`` with the values seen.

    Raises:
        BackendError: the backend could not be reached or answered badly.
    """
    candidate = collected.candidate
    if any(g.count for g in candidate.groups) or not isinstance(backend, SpanCensus):
        return collected
    query = plan.candidate_query()
    seen = backend.census(query.service, query.start, query.end)
    spans = tuple(
        (env, version, n) for (env, version), n in sorted(seen.items(), key=_census_order)
    )
    return replace(collected, candidate=replace(candidate, elsewhere=Elsewhere(query, spans)))


def _census_order(item: tuple[tuple[str | None, str | None], int]) -> tuple[int, str, str]:
    (env, version), n = item
    return (-n, env or "", version or "")


def analyse(plan: Plan, collected: Collected) -> Finished:
    """Compare the versions and render the report (JSON for the store, text for people)."""
    analysis = compare.analyse(
        collected.candidate,
        collected.baseline,
        changes=plan.changes,
        policy=plan.policy,
        look=plan.look,
        looks=plan.looks,
        held=plan.held,
        known_exceptions=plan.known_exceptions,
        final=plan.final,
        tau_history=_tau_history(plan),
        window=collected.comparison.kind if collected.comparison is not None else None,
        load=collected.comparison.per_minute if collected.comparison is not None else None,
        service_load=collected.comparison.service_load
        if collected.comparison is not None
        else None,
    )
    # Each side's own notes (lines cut short, repeats, spans without an end) are in the
    # analysis' summary, marked "New version:" or "Baseline:"; once is enough.
    notes = (*plan.context.notes, f"traces from the {collected.backend} backend")
    context = replace(plan.context, comparison=collected.comparison)
    if collected.comparison is not None and collected.comparison.window is not None:
        window = collected.comparison.window
        context = replace(context, candidate_window=window, baseline_window=window)
    context = replace(
        context,
        notes=notes,
        candidate_observed=collected.candidate.observed,
        baseline_observed=collected.baseline.observed if collected.baseline else None,
    )
    seen = _exceptions_seen(plan.context, collected.candidate, collected.baseline)
    report = to_json(analysis, context)
    look = f"look {analysis.look} of {analysis.looks}" + (", final" if analysis.final else "")
    prints = with_insights(footprints(collected.candidate), report.get("findings", []))
    observed = collected.candidate.observed
    seconds = (observed[1] - observed[0]).total_seconds() if observed else 0.0
    return Finished(
        analysis,
        report,
        report_text(report, look=look),
        seen,
        footprints=tuple(prints),
        serving_seconds=seconds,
        tau=tau_json(analysis, plan.context),
    )


def _tau_history(plan: Plan) -> TauHistory | None:
    """The earlier releases' τ̂, without the versions this check's own instances count."""
    if plan.tau_records is None:
        return None
    ctx = plan.context
    counted = {ctx.version, *((ctx.baseline_version,) if ctx.baseline_version else ())}
    return tau_history(ctx.service, plan.tau_records, counted)


def tau_json(analysis: Analysis, context: ReportContext) -> dict[str, Any] | None:
    """The look's own τ̂ per version, as stored with the check (None when it had none)."""
    versions = (context.version, context.baseline_version)
    parts = [
        {
            "version": version,
            "tau": est.tau,
            "dof": est.dof,
            "mean_square": est.mean_square,
            "sampling": est.sampling,
        }
        for version, est in zip(versions, analysis.host_tau, strict=False)
        if est is not None and version is not None
    ]
    return {"versions": parts} if parts else None


def spread_history(
    session: Session,
    *,
    service: str,
    environment: str,
    version: str,
    deployed_before: datetime,
    now: datetime,
    policy: DetectionPolicy,
) -> tuple[TauRecord, ...]:
    """The host spread the service's earlier releases recorded, for the guard to pool (read
    from the store in the caller's transaction; ``host_guard.history_checks`` and ``_days``)."""
    guard = policy.host_guard
    if guard.history_checks <= 0:
        return ()
    stored = queries.host_spread_history(
        session,
        service=service,
        environment=environment,
        version=version,
        deployed_before=deployed_before,
        since=now - timedelta(days=guard.history_days),
        releases=guard.history_checks,
    )
    return tau_records(stored)


def tau_records(stored: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[TauRecord, ...]:
    """The store's (release version, recorded ``tau``) pairs as records; malformed ones skipped."""
    records = []
    for release, tau in stored:
        parts = []
        for part in tau.get("versions", []) if isinstance(tau, Mapping) else []:
            try:
                version = str(part["version"])
                estimate = TauEstimate(
                    float(part["tau"]),
                    int(part["dof"]),
                    float(part["mean_square"]),
                    float(part["sampling"]),
                )
            except (KeyError, TypeError, ValueError):
                continue
            parts.append((version, estimate))
        if parts:
            records.append(TauRecord(release, tuple(parts)))
    return tuple(records)


def _query(
    context: ReportContext, version: str, window: tuple[datetime, datetime], warmup: timedelta
) -> SpanQuery:
    return SpanQuery(
        service=context.service,
        version=version,
        start=window[0],
        end=window[1],
        environment=context.environment,
        warmup=warmup,
    )


def _exceptions_seen(
    context: ReportContext, candidate: ReleaseData, baseline: ReleaseData | None
) -> tuple[Observed, ...]:
    """Every (version, span group, type, spans) the check saw, for the exception history."""
    versions = [(context.version, candidate)]
    if baseline is not None and context.baseline_version is not None:
        versions.append((context.baseline_version, baseline))
    return tuple(
        (version, group.name, seen.type, seen.count)
        for version, data in versions
        for group in data.groups
        for seen in group.exceptions
        if seen.count > 0
    )
