"""Trace backend over OTLP/JSON files, as the OpenTelemetry Collector's file exporter writes them.

Differs from the other backends in that there is no server: ``traces.path`` names files (globs,
expanded at each :meth:`OtlpFileBackend.collect`), each holding one ``ExportTraceServiceRequest``
per line, or one whole document (pretty-printed, like the OTLP repository's example). Files may
be gzip-compressed. Lines are read a block at a time, decoded, filtered and aggregated
(:mod:`feedbot.spans.otlp_lines`), so memory does not grow with the file; a whole-document
file is the exception and is read at once.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from feedbot.errors import BackendUnavailable
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp_lines import Part, read_part, read_rows
from feedbot.spans.otlp_parallel import read_in_parts
from feedbot.spans.otlp_survey import Survey

__all__ = ["OtlpFileBackend", "paths_from_setting"]

#: Names that every JSON encoder writes verbatim, so a line without them has no matching span.
_VERBATIM = re.compile(r"[A-Za-z0-9._:@+-]+")


class OtlpFileBackend:
    """Spans read from OTLP/JSON files.

    Args:
        paths: file names or glob patterns (``**`` recurses, ``~`` is expanded).
        workers: processes to read large plain files with, in parts
            (:mod:`feedbot.spans.otlp_parallel`); 1 reads in this process. More than one
            forks, so only a single-threaded program (``feedbot report``) should ask for it.
    """

    name = "otlp-file"

    def __init__(self, paths: Sequence[str], *, workers: int = 1) -> None:
        self._patterns = tuple(paths)
        self._workers = workers

    def close(self) -> None:
        """Nothing to release: each read opens and closes its files."""

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Read every file the patterns match, in name order.

        Documents in the Collector's usual shape go through the fast reader
        (:mod:`feedbot.spans.otlp_scan`); any other through the validating decoder.

        Raises:
            BackendUnavailable: a pattern matches no file, or a file cannot be read.
            BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
        """
        survey = Survey(query.service, query.environment, candidate=query)
        return self.read(survey, (query.service, query.version)).result()

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """Spans per ``service.version`` of ``service`` that start within ``[start, end)``.

        Spans without a version are not counted; with ``environment``, spans of other
        environments are not either (spans that name none are).

        Raises:
            BackendUnavailable: a pattern matches no file, or a file cannot be read.
            BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
        """
        survey = Survey(service, environment or None, counted=(to_ns(start), to_ns(end)))
        return dict(self.read(survey, (service,)).counts)

    def census(
        self, service: str, start: datetime, end: datetime
    ) -> dict[tuple[str | None, str | None], int]:
        """Spans of ``service`` in ``[start, end)`` per (environment, version).

        A second, fully validating read of the files: asked only when a release matched no
        span, to say why.

        Raises:
            BackendUnavailable: a pattern matches no file, or a file cannot be read.
            BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
        """
        low, high = to_ns(start), to_ns(end)
        counts: Counter[tuple[str | None, str | None]] = Counter()
        for path in self.files():
            for row in read_rows(path, _needles(service)):
                if row["service"] == service and low <= row["start_ns"] < high:
                    counts[(row["environment"] or None, row["version"] or None)] += 1
        return dict(counts)

    def survey(
        self,
        candidate: SpanQuery,
        *,
        baseline: tuple[datetime, datetime],
        counted: tuple[datetime, datetime],
        baseline_version: str | None = None,
    ) -> Survey:
        """Read the files once for a release report: what :meth:`collect` of ``candidate``,
        :meth:`versions` in ``counted`` and :meth:`collect` of a baseline would answer.

        Args:
            candidate: the new version's query.
            baseline: the baseline window: every other version of the service is gathered in
                it (``Survey.baseline(version)``), or just ``baseline_version`` when given.
            counted: the window of the spans per version (``Survey.counts``).
            baseline_version: the one other version to gather, when known.

        Raises:
            BackendUnavailable: a pattern matches no file, or a file cannot be read.
            BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
        """
        survey = Survey(
            candidate.service,
            candidate.environment,
            candidate=candidate,
            others=(to_ns(baseline[0]), to_ns(baseline[1])),
            only=baseline_version,
            counted=(to_ns(counted[0]), to_ns(counted[1])),
        )
        return self.read(survey, (candidate.service,))

    def read(self, survey: Survey, names: tuple[str, ...]) -> Survey:
        """Read every file into ``survey``, in parts on several processes when worth it.

        Args:
            survey: what to gather (see :mod:`feedbot.spans.otlp_survey`).
            names: the service (and version) names every line with a wanted span contains
                (lines without them are skipped unparsed).

        Returns:
            ``survey``, filled.

        Raises:
            BackendUnavailable: a pattern matches no file, or a file cannot be read.
            BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
        """
        files, needles = self.files(), _needles(*names)
        if self._workers > 1 and read_in_parts(files, survey, needles, self._workers):
            return survey
        for path in files:
            read_part(Part(path, 0, None), survey, needles)
        return survey

    def files(self) -> list[str]:
        """The files the patterns match now, each once, in pattern then name order.

        Raises:
            BackendUnavailable: a pattern matches no file.
        """
        found: dict[str, None] = {}
        for pattern in self._patterns:
            expanded = os.path.expanduser(pattern)
            matched = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
            if not matched:
                raise BackendUnavailable(f"otlp-file: no file matches traces.path {pattern!r}")
            found.update(dict.fromkeys(matched))
        return list(found)


def paths_from_setting(value: str) -> list[str]:
    """``traces.path`` split into globs: one, or several separated by commas."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _needles(*names: str) -> tuple[bytes, ...]:
    """Byte strings every line with a matching span contains (empty when unsure)."""
    if all(_VERBATIM.fullmatch(name) for name in names):
        return tuple(f'"{name}"'.encode() for name in names)
    return ()
