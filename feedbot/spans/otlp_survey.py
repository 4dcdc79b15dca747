"""What one read of OTLP/JSON files gathers: a release, its baselines, spans per version; pure.

``feedbot report --traces`` needs three answers from the same files: the new version's spans,
which other version had the most spans before the deploy, and that version's spans. Each read
of a large file is a full JSON parse, so a :class:`Survey` gathers all three in one read: the
new version into one aggregator, every other version (or the one named) into one aggregator
each, and the spans per version in a counting window. A survey of one part of the input can
be joined to the survey of the part before (:meth:`Survey.absorb`), which
:mod:`feedbot.spans.otlp_parallel` does.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence

from feedbot.spans.aggregate import MAX_OPEN_SPANS, Aggregator
from feedbot.spans.aggregate_columns import fold
from feedbot.spans.columns import SpanColumns
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp_scan import Scanner, Target
from feedbot.spans.rows import SpanRow

Window = tuple[int, int]


class Survey:
    """The aggregators and counters of one read of spans of one service.

    Args:
        service: whose spans are read.
        environment: as :attr:`SpanQuery.environment`.
        candidate: the release's query (its service and environment must be the ones above).
        others: a window (ns): every other version's spans in it are aggregated too, one
            aggregator per version (:attr:`baselines`); with ``only``, that version's alone.
        only: see ``others``.
        counted: a window (ns): spans per version starting in it are counted (:attr:`counts`).
        held: this survey reads a part of the input that follows another: its first traces
            are held open for :meth:`absorb` (see :class:`~feedbot.spans.aggregate.Aggregator`).
    """

    def __init__(
        self,
        service: str,
        environment: str | None,
        *,
        candidate: SpanQuery | None = None,
        others: Window | None = None,
        only: str | None = None,
        counted: Window | None = None,
        held: bool = False,
    ) -> None:
        self._settings = (service, environment, candidate, others, only, counted)
        self._hold = MAX_OPEN_SPANS if held else 0
        self._candidate = candidate
        self._others, self._only = others, only
        self.candidate: Aggregator | None = None
        self._target: tuple[Target, ...] = ()
        if candidate is not None:
            self.candidate = Aggregator(warmup=candidate.warmup, hold_first=self._hold)
            self._target = (Target.of(candidate, self.candidate),)
        self.baselines: dict[str, Aggregator] = {}
        self._routes: dict[str | None, tuple[Target, ...]] = {}
        self._lock = threading.Lock()
        self.scanner = Scanner(service, environment, self.route, counted)
        #: (file, line, bytes) of an unfinished last line left out (a file still being written).
        self.unfinished: list[tuple[str, int, int]] = []

    @property
    def counts(self) -> Counter[str]:
        """Spans per version in the counting window."""
        return self.scanner.counts

    def later(self) -> Survey:
        """An empty survey like this one, for the part of the input that follows."""
        service, environment, candidate, others, only, counted = self._settings
        return Survey(
            service,
            environment,
            candidate=candidate,
            others=others,
            only=only,
            counted=counted,
            held=True,
        )

    def route(self, version: str | None) -> Sequence[Target]:
        """The targets of a block of spans of ``version`` (safe to call from any thread: the
        block reader decodes the next block on its read-ahead thread)."""
        routes = self._routes.get(version)
        if routes is None:
            with self._lock:
                routes = self._routes.get(version)
                if routes is None:
                    routes = self._routes[version] = self._targets(version)
        return routes

    @property
    def columnar(self) -> bool:
        """Whether blocks of columns may be added (not to a survey of a later part)."""
        return self._hold == 0

    def add_columns(
        self, found: Iterable[tuple[Aggregator, SpanColumns]], counts: Counter[str]
    ) -> None:
        """Count what :class:`~feedbot.spans.otlp_arrow.BlockReader` read of a block."""
        for aggregator, columns in found:
            fold(aggregator, columns)
        self.counts.update(counts)

    def add_rows(self, rows: Iterable[SpanRow]) -> None:
        """Count decoded span rows (of a document the scanner handed over) like the scanner."""
        service, environment, _, _, _, counted = self._settings
        for row in rows:
            if row["service"] != service or (
                environment is not None and row["environment"] not in (None, environment)
            ):
                continue
            start, version = row["start_ns"], row["version"]
            if counted is not None and version and counted[0] <= start < counted[1]:
                self.counts[version] += 1
            for target in self.route(version):
                name = target.span_name
                if target.low <= start < target.high and (name is None or row["name"] == name):
                    target.aggregator.add(row)

    def absorb(self, later: Survey) -> None:
        """Add in the survey of the part of the input after this one's."""
        if self.candidate is not None and later.candidate is not None:
            self.candidate.absorb(later.candidate)
        for version, aggregator in later.baselines.items():
            mine = self.baselines.get(version)
            if mine is None:
                self.baselines[version] = aggregator
                self._routes.pop(version, None)
            else:
                mine.absorb(aggregator)
        self.counts.update(later.counts)
        self.unfinished += later.unfinished

    def result(self) -> ReleaseData:
        """The candidate's answer (an empty one without a candidate)."""
        return (self.candidate or Aggregator()).result(notes=self.notes())

    def baseline(self, version: str) -> ReleaseData:
        """The answer for another version (empty when it had no block in the file).

        The read's :meth:`notes` go with the candidate's answer only, to be said once.
        """
        return self.baselines.get(version, Aggregator()).result()

    def notes(self) -> tuple[str, ...]:
        """What the read left out: unfinished last lines, each with its file and line."""
        return tuple(
            f"{path}, line {line}: an unfinished last line ({size:,} bytes) was left out (a "
            "file still being written, or cut short)."
            for path, line, size in self.unfinished
        )

    def _targets(self, version: str | None) -> tuple[Target, ...]:
        query = self._candidate
        if query is not None and version == query.version:
            return self._target
        if self._others is None or not version or self._only not in (None, version):
            return ()
        aggregator = self.baselines[version] = Aggregator(hold_first=self._hold)
        span_name = query.span_name if query is not None else None
        return (Target(*self._others, aggregator, span_name),)
