"""``feedbot report``: analyse one release from trace files or the configured backend, once.

::

    feedbot report --deploy DEPLOY.json (--traces FILE [--traces FILE …] | --config CFG)
                   [--baseline-version V] [--since ISO] [--until ISO]
                   [--warmup DURATION] [--assumed-spread TAU] [--format json|text]
                   [--fail-on regressed]

A report is one look of one (a CI job runs it once, after its load test): the whole FDR level
goes to it, and what passes its test and effect floor is decided now, never left "watching" for a
later look. No warm-up is tested unless ``--warmup`` (or the service's
``detectors.latency.warmup`` in ``--config``) asks; when asked, each new instance's first minutes
are left out of latency only where they were slower than its later spans
(:mod:`feedbot.analysis.warmup`), so a short load test keeps its spans.

Exit status: 0 whatever the verdict, unless ``--fail-on regressed`` and the verdict is
``regressed`` (1, a CI quality gate); 2 for bad input, with a message naming it; 3 when the
trace backend cannot be reached; 4 with ``--fail-on regressed`` when no span of the new version
was found (verdict ``not_running``): a gate that saw nothing of what it guards cannot pass it,
and the message says why (no ``service.version``, another environment, a window before the
deploy). The report is the same :class:`~feedbot.analysis.compare.Analysis`
the Slack digest renders.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from feedbot.analysis.detectors import TauRecord
from feedbot.analysis.report import ReportContext
from feedbot.backends.base import TraceBackend, VersionLister
from feedbot.checks import concurrent, pipeline
from feedbot.checks.pipeline import Finished
from feedbot.errors import BackendError, BackendUnavailable, ConfigError, WebhookRejected
from feedbot.policy import DetectionPolicy, duration
from feedbot.releases.event import ReleaseEvent
from feedbot.spans.model import ReleaseData, SpanQuery

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

EXIT_OK, EXIT_REGRESSED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_UNSEEN = 0, 1, 2, 3, 4
#: Baseline window when no config says otherwise (``checks.baseline_window``'s default).
DEFAULT_BASELINE_WINDOW = timedelta(hours=24)
#: Processes reading --traces files. Two forked workers (feedbot.spans.otlp_parallel) read
#: 1M spans in 7.9 s instead of 12.4 s on an idle 2-core machine, but took 13.9 CPU s instead
#: of 12.4 and peaked at 510 MiB instead of 146 (parent plus worker); on a busy machine they
#: were slower. One, so that a CI job's report stays small; within it, the file reader
#: decodes blocks on two threads while it counts (feedbot.spans.otlp_lines.READ_THREADS).
REPORT_WORKERS = 1
#: With trace files and no ``deployed_at`` or ``--since``, every span counts.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


class BadInput(Exception):
    """A command-line input is wrong; the message names it."""


@runtime_checkable
class OnePassReader(Protocol):
    """A backend that reads its input once for the release, the baseline and version counts."""

    @property
    def name(self) -> str:
        """The backend's configuration name."""
        ...

    def survey(
        self,
        candidate: SpanQuery,
        *,
        baseline: tuple[datetime, datetime],
        counted: tuple[datetime, datetime],
        baseline_version: str | None = None,
    ) -> SurveyResult:
        """Gather in one read what ``feedbot report`` asks (see :meth:`OtlpFileBackend.survey`)."""
        ...


class SurveyResult(Protocol):
    """What :meth:`OnePassReader.survey` returns."""

    @property
    def counts(self) -> Mapping[str, int]:
        """Spans per version in the ``counted`` window."""
        ...

    def result(self) -> ReleaseData:
        """The candidate's answer."""
        ...

    def baseline(self, version: str) -> ReleaseData:
        """Another version's answer in the baseline window."""
        ...


@dataclass(frozen=True)
class _Windows:
    """The release and the windows ``report`` reads: the command line's part of the plan.

    ``counted`` is where other versions' spans are counted to find the baseline version: the
    baseline window up to ``deployed_at``, or all of it without one; ``where`` says so.
    """

    event: ReleaseEvent
    candidate: SpanQuery
    baseline: tuple[datetime, datetime]
    counted: tuple[datetime, datetime]
    where: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``feedbot report``'s options on ``parser``."""
    parser.add_argument(
        "--deploy",
        required=True,
        type=Path,
        metavar="DEPLOY.json",
        help="the generic deploy document (service, version, changes, deployed_at)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--traces",
        action="append",
        type=Path,
        metavar="FILE",
        help="OTLP/JSON file (one export per line, or one document; .gz too)",
    )
    source.add_argument("--config", type=Path, metavar="CFG", help="query the configured backend")
    parser.add_argument(
        "--baseline-version",
        metavar="V",
        help="compare against V (default: the most common other version before deployed_at)",
    )
    parser.add_argument(
        "--since", metavar="ISO", help="candidate window start (default deployed_at)"
    )
    parser.add_argument("--until", metavar="ISO", help="candidate window end (default now)")
    parser.add_argument(
        "--warmup",
        metavar="DURATION",
        default=None,
        help="test each new instance's first DURATION (e.g. 5m) against its later spans and "
        "leave it out of latency if slower (default 0, or the service's "
        "detectors.latency.warmup with --config)",
    )
    parser.add_argument(
        "--assumed-spread",
        metavar="TAU",
        default=None,
        help="between-instance spread on log-latency assumed where spans name one instance a "
        "version (e.g. 0.10; 0 assumes none; default 0.10, or the service's "
        "detectors.host_guard.assumed_spread with --config)",
    )
    parser.add_argument(
        "--format", choices=("json", "text"), default="text", help="text for people (default), json"
    )
    parser.add_argument(
        "--fail-on",
        choices=("regressed",),
        default=None,
        help="exit 1 when the verdict is regressed, 4 when no span of the new version was found "
        "(a CI quality gate)",
    )


def run(args: argparse.Namespace, *, now: Callable[[], datetime] | None = None) -> int:
    """Run ``feedbot report``; returns the exit status (see the module docstring)."""
    try:
        with cycle_collector_paused():
            finished = _report(args, (now or (lambda: datetime.now(UTC)))())
    except BadInput as exc:
        _err(f"feedbot report: {exc}")
        return EXIT_BAD_INPUT
    except ConfigError as exc:
        for problem in exc.problems:
            _err(f"feedbot report: {problem}")
        return EXIT_BAD_INPUT
    except BackendUnavailable as exc:
        _err(f"feedbot report: trace backend unreachable: {exc}")
        return EXIT_UNAVAILABLE
    except BackendError as exc:
        _err(f"feedbot report: trace backend answered badly: {exc}")
        return EXIT_BAD_INPUT if args.traces else EXIT_UNAVAILABLE
    if args.format == "json":
        sys.stdout.write(json.dumps(finished.report, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(finished.text)
    if args.fail_on == "regressed" and finished.analysis.verdict == "regressed":
        return EXIT_REGRESSED
    if args.fail_on == "regressed" and finished.analysis.verdict == "not_running":
        _err(
            "feedbot report: the gate saw no span of the new version, so it cannot pass it: "
            + " ".join(finished.analysis.summary)
        )
        return EXIT_UNSEEN
    return EXIT_OK


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Run the body with Python's cyclic garbage collector off, then restore it.

    Reading a million spans allocates tens of millions of short-lived, acyclic objects (the
    parsed JSON), and the collector's passes they trigger walk the aggregator's open traces
    and every imported module again and again: measured, a third of ``--traces``' time, for
    nothing to collect (reference counting frees the documents). A one-shot command can skip
    them; a long-running server must not, so this is here and not in the backend.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")


def _report(args: argparse.Namespace, now: datetime) -> Finished:
    """Plan from the deploy document and the options, collect, and analyse as a check does.

    A report is one final look (see the module docstring); the baseline version is the one
    given, else the most common other version in the traces.
    """
    event = read_deploy(args.deploy)
    backend, window, policy, warmup, sessions = _backend(args, event.service)
    policy = replace(policy, latency=replace(policy.latency, warmup=warmup))
    if args.assumed_spread is not None:
        spread = _assumed_spread(args.assumed_spread)
        policy = replace(policy, host_guard=replace(policy.host_guard, assumed_spread=spread))
    try:
        # Only the new version's instances are new: its query alone leaves their warm-up out.
        windows = _windows(event, args, now, window, policy.latency.warmup)
        given, notes, collected = _known_baseline(args, backend, windows)
        plan = pipeline.Plan(
            context=ReportContext(
                service=event.service,
                version=event.version,
                baseline_version=given,
                environment=event.environment,
                candidate_window=(windows.candidate.start, windows.candidate.end),
                baseline_window=windows.baseline if given is not None else None,
                notes=(*notes, _window_note(windows)),
            ),
            changes=event.changes,
            policy=policy,
            look=1,
            looks=1,
            final=True,
            baseline_search=None if collected is not None else windows.counted,
            tau_records=_spread_history(sessions, event, policy, now),
        )
        plan = pipeline.baseline_from_data(backend, plan)
        if collected is not None:
            assert isinstance(backend, OnePassReader)
            collected = _over_overlap(backend, plan, windows, collected)
            collected = pipeline.loaded(backend, plan, collected)
            collected = pipeline.surveyed(backend, plan, collected)
        return pipeline.analyse(plan, collected or pipeline.collect(backend, plan))
    finally:
        backend.close()


def _known_baseline(
    args: argparse.Namespace, backend: TraceBackend, windows: _Windows
) -> tuple[str | None, tuple[str, ...], pipeline.Collected | None]:
    """The baseline version known before the plan, its note, and the spans if already read.

    Files are read once for everything (:class:`OnePassReader`); other backends get the
    given version, or none for :func:`pipeline.baseline_from_data` to find.
    """
    if isinstance(backend, OnePassReader):
        version, note, collected = _read_once(args, backend, windows)
        return version, (note,), collected
    if args.baseline_version:
        return args.baseline_version, (_given_baseline(args.baseline_version),), None
    if not isinstance(backend, VersionLister):
        raise BadInput(
            f"--baseline-version: required with the {backend.name} backend, "
            "which cannot list versions"
        )
    return None, (), None


def read_deploy(path: Path) -> ReleaseEvent:
    """Read and validate the deploy document, naming the file and field on failure."""
    from feedbot.releases.sources.generic import parse_document

    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise BadInput(f"--deploy {path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise BadInput(f"--deploy {path}: not JSON: {exc}") from exc
    try:
        return parse_document(doc, source="report")
    except WebhookRejected as exc:
        raise BadInput(f"--deploy {path}: {exc.message}") from exc


def _warmup(text: str) -> timedelta:
    """``--warmup``: 0 or a duration such as ``5m``. Raises BadInput naming the option."""
    try:
        return duration(text)  # the config's spelling of a detector's duration
    except ValueError as exc:
        raise BadInput(f"--warmup: {exc}") from exc


def _assumed_spread(text: str) -> float:
    """``--assumed-spread``: τ on log-latency, 0 to 1. Raises BadInput naming the option."""
    try:
        spread = float(text)
    except ValueError as exc:
        raise BadInput(f"--assumed-spread {text!r}: not a number") from exc
    if not 0.0 <= spread <= 1.0:  # also refuses nan
        raise BadInput(f"--assumed-spread {text!r}: must be between 0 and 1 (e.g. 0.10)")
    return spread


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time; naive times are UTC. Raises BadInput naming the option."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise BadInput(f"{option} {text!r}: not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _spread_history(
    sessions: sessionmaker[Session] | None, event: ReleaseEvent, policy: DetectionPolicy,
    now: datetime,
) -> tuple[TauRecord, ...] | None:  # fmt: skip
    """The host spread the service's registered releases recorded (``serve``'s checks), when
    the config names a database; None with trace files (no store, so no history). A report
    reads the history and records nothing in it."""
    from sqlalchemy.exc import SQLAlchemyError

    if sessions is None:
        return None
    try:
        with sessions() as session:
            return pipeline.spread_history(
                session,
                service=event.service,
                environment=event.environment,
                version=event.version,
                deployed_before=event.deployed_at or now,
                now=now,
                policy=policy,
            )
    except SQLAlchemyError:  # not migrated, or unreachable: the backend says so if it needs it
        return None


def _has_store(url: str) -> bool:
    """Whether the config's database exists to be read: PostgreSQL, or a SQLite file that is
    there (a report must not create ``feedbot.db`` in the working directory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return True
    return (
        bool(parsed.database)
        and parsed.database != ":memory:"
        and Path(str(parsed.database)).is_file()
    )


def _backend(
    args: argparse.Namespace, service: str
) -> tuple[
    TraceBackend, timedelta, DetectionPolicy, timedelta, sessionmaker[Session] | None
]:  # fmt: skip
    """The backend to read, the baseline window, the service's detection policy and warm-up,
    and the store's sessions (None with trace files).

    The warm-up is ``--warmup`` when given; else the one the config sets for the service
    (``services.<name>.detectors.latency.warmup``), else none: a one-shot run tests no warm-up
    unless asked.
    """
    given = None if args.warmup is None else _warmup(args.warmup)
    if args.traces:
        missing = [str(p) for p in args.traces if not p.is_file()]
        if missing:
            raise BadInput(f"--traces {missing[0]}: no such file")
        from feedbot.backends.otlp_file import OtlpFileBackend

        backend = OtlpFileBackend([str(p) for p in args.traces], workers=REPORT_WORKERS)
        return backend, DEFAULT_BASELINE_WINDOW, DetectionPolicy(), given or timedelta(0), None
    from feedbot.backends import build_backend
    from feedbot.config import load_settings
    from feedbot.store.db import make_engine, make_sessions

    if not args.config.is_file():
        raise BadInput(f"--config {args.config}: no such file")
    settings = load_settings(args.config)
    sessions = make_sessions(make_engine(settings.database_url))
    policy = pipeline.policy_for(settings, service)
    if given is None:
        conf = settings.services.get(service)
        asked = conf is not None and "warmup" in conf.detectors.get("latency", {})
        given = policy.latency.warmup if asked else timedelta(0)
    store = sessions if _has_store(settings.database_url) else None
    return build_backend(settings, sessions), settings.checks.baseline_window, policy, given, store


def _read_once(
    args: argparse.Namespace, backend: OnePassReader, windows: _Windows
) -> tuple[str | None, str, pipeline.Collected]:
    """Baseline version and its note, and both versions' spans: from one read of the files."""
    survey = backend.survey(
        windows.candidate,
        baseline=windows.baseline,
        counted=windows.counted,
        baseline_version=args.baseline_version,
    )
    version: str | None
    if args.baseline_version:
        version, note = args.baseline_version, _given_baseline(args.baseline_version)
    else:
        event = windows.event
        version, note = pipeline.most_common(
            event.service, event.version, survey.counts, windows.where
        )
    baseline = survey.baseline(version) if version is not None else None
    return version, note, pipeline.Collected(survey.result(), baseline, backend.name)


def _over_overlap(
    backend: OnePassReader, plan: pipeline.Plan, windows: _Windows, collected: pipeline.Collected
) -> pipeline.Collected:
    """Both versions over the time both served, when they did and it holds enough to test.

    Where each served is what the first read saw (its first and last span); the overlap is
    then read again, both versions only inside it: files have no cheaper query, and a second
    read is paid only when the versions served together.
    """
    version = plan.context.baseline_version
    if version is None or collected.baseline is None:
        return collected
    full = (collected.candidate, collected.baseline)
    new, old = concurrent.served(collected.candidate), concurrent.served(collected.baseline)
    window, why_not = concurrent.overlap(new, old, windows.candidate.start)

    def read(within: tuple[datetime, datetime] | None) -> concurrent.Pair:
        if within is None:
            return full
        candidate = replace(windows.candidate, start=within[0], end=within[1])
        survey = backend.survey(
            candidate, baseline=within, counted=within, baseline_version=version
        )
        return survey.result(), survey.baseline(version)

    return pipeline.compared(plan, read, window, why_not, backend.name, full=full)


def _windows(
    event: ReleaseEvent,
    args: argparse.Namespace,
    now: datetime,
    window: timedelta,
    warmup: timedelta,
) -> _Windows:
    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    start = since or event.deployed_at or (EARLIEST if args.traces else now - window)
    end = until or now
    if end <= start:
        raise BadInput(f"--until {end.isoformat()}: not after the window start {start.isoformat()}")
    deployed = event.deployed_at
    # The baseline reaches up to the candidate's end: versions are told apart by
    # service.version. Where both served at once, only that overlap is compared (the
    # concurrent window, §8 of detection-methods.md; see _over_overlap).
    base_start = (deployed or start) - window if deployed or not args.traces else EARLIEST
    candidate = SpanQuery(
        event.service, event.version, start, end, environment=event.environment, warmup=warmup
    )
    # Without deployed_at the deploy's moment is unknown: every other version's spans in the
    # window count, in the files or in the store, rather than none before an invented moment.
    counted = (base_start, deployed or end)
    if base_start == EARLIEST:
        where = "in the trace files (no deployed_at, so every span counts)"
    else:
        where = f"between {counted[0].isoformat()} and {counted[1].isoformat()}"
    return _Windows(event, candidate, (base_start, end), counted, where)


def _given_baseline(version: str) -> str:
    return f"Baseline version {version}: given by --baseline-version."


def _window_note(windows: _Windows) -> str:
    start, end = windows.baseline
    return (
        f"Windows: new version {windows.candidate.start.isoformat()} to "
        f"{windows.candidate.end.isoformat()}; "
        f"baseline {start.isoformat()} to {end.isoformat()} (versions told apart by "
        "service.version; where both served at once, only that overlap was compared)."
    )
