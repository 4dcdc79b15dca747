"""Trace backend over OTLP/JSON files, as the OpenTelemetry Collector's file exporter writes them.

Differs from the other backends in that there is no server: ``traces.path`` names files (globs,
expanded at each :meth:`OtlpFileBackend.collect`), each holding one ``ExportTraceServiceRequest``
per line, or one whole document (pretty-printed, like the OTLP repository's example). Files may
be gzip-compressed. Lines are read one at a time, decoded, filtered and aggregated, so memory does
not grow with the file; a whole-document file is the exception and is read at once.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import IO, cast

import orjson

from feedbot.backends.aggregate import Aggregator, matcher, to_ns
from feedbot.backends.base import ReleaseData, SpanQuery
from feedbot.backends.otlp_json import decode_document, loads
from feedbot.backends.otlp_scan import Scanner, Unusual, count_versions
from feedbot.errors import BackendResponseError, BackendUnavailable, WebhookRejected
from feedbot.store.spans import SpanRow

GZIP_MAGIC = b"\x1f\x8b"
#: Names that every JSON encoder writes verbatim, so a line without them has no matching span.
_VERBATIM = re.compile(r"[A-Za-z0-9._:@+-]+")


class OtlpFileBackend:
    """Spans read from OTLP/JSON files.

    Args:
        paths: file names or glob patterns (``**`` recurses, ``~`` is expanded).
    """

    name = "otlp-file"

    def __init__(self, paths: Sequence[str]) -> None:
        self._patterns = tuple(paths)

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Read every file the patterns match, in name order.

        Documents in the Collector's usual shape go through the fast reader
        (:mod:`feedbot.backends.otlp_scan`); any other through the validating decoder.

        Raises:
            BackendUnavailable: a pattern matches no file, or a file cannot be read.
            BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
        """
        aggregator = Aggregator()
        scanner, keep = Scanner(aggregator, query), matcher(query)
        needles = _needles(query.service, query.version)
        for path in self.files():
            for number, document, strict in _documents(path, needles):
                try:
                    if not strict:
                        raise Unusual
                    scanner.scan(document)
                except Unusual:
                    aggregator.add_many(filter(keep, _decode(path, number, document)))
        return aggregator.result()

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
        window, counts = (to_ns(start), to_ns(end)), Counter[str]()
        for path in self.files():
            for number, document, strict in _documents(path, _needles(service)):
                try:
                    if not strict:
                        raise Unusual
                    count_versions(document, service, window, environment, counts)
                except Unusual:
                    for row in _decode(path, number, document):
                        if _counts_toward(row, service, window, environment):
                            counts[cast(str, row["version"])] += 1
        return dict(counts)

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


def read_rows(path: str, needles: tuple[bytes, ...] = ()) -> Iterator[SpanRow]:
    """Every span row of one OTLP/JSON file, streamed line by line, fully validated.

    Args:
        path: a file of OTLP/JSON lines or one OTLP/JSON document, gzip-compressed or not.
        needles: byte strings a line must contain to be decoded (a fast pre-filter).

    Raises:
        BackendUnavailable: the file cannot be opened.
        BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
    """
    for number, document, _ in _documents(path, needles):
        yield from _decode(path, number, document)


def _decode(path: str, number: int, document: object) -> list[SpanRow]:
    try:
        return decode_document(document)
    except WebhookRejected as exc:
        raise _malformed(path, number, exc.message) from None


def _counts_toward(
    row: SpanRow, service: str, window: tuple[int, int], environment: str | None
) -> bool:
    return (
        row["service"] == service
        and bool(row["version"])
        and (not environment or row["environment"] in (None, environment))
        and window[0] <= row["start_ns"] < window[1]
    )


def paths_from_setting(value: str) -> list[str]:
    """``traces.path`` split into globs: one, or several separated by commas."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _needles(*names: str) -> tuple[bytes, ...]:
    """Byte strings every line with a matching span contains (empty when unsure)."""
    if all(_VERBATIM.fullmatch(name) for name in names):
        return tuple(f'"{name}"'.encode() for name in names)
    return ()


def _documents(path: str, needles: tuple[bytes, ...]) -> Iterator[tuple[int, object, bool]]:
    """(line number, parsed JSON, parsed by orjson) per non-blank line, or one whole document.

    Lines after the first that lack one of ``needles`` are skipped without being parsed, and so
    is an unparsable last line without a newline (the exporter is still writing it). The flag is
    False when only the standard library could parse the text (lone surrogates, huge integers):
    such a document is left to the validating decoder.
    """
    with _open(path) as handle:
        first = True
        for number, line in _lines(path, handle):
            if not first and needles and not all(needle in line for needle in needles):
                continue
            try:
                yield number, orjson.loads(line), True
            except orjson.JSONDecodeError:
                pass
            else:
                first = False
                continue
            try:
                document = loads(line)
            except WebhookRejected as exc:
                if first and not line.rstrip().endswith(b"}"):
                    yield 1, _whole(path), False
                    return
                if not line.endswith(b"\n"):
                    return  # The last line, still being written by the exporter.
                raise _malformed(path, number, exc.message) from None
            first = False
            yield number, document, False


def _lines(path: str, handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    try:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated member raises EOFError.
        raise BackendResponseError(f"otlp-file: {path}: cannot be read: {exc}") from None


def _open(path: str) -> IO[bytes]:
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
        if magic == GZIP_MAGIC:
            return cast("IO[bytes]", gzip.open(path, "rb"))
        return open(path, "rb")
    except OSError as exc:
        raise BackendUnavailable(f"otlp-file: cannot open {path}: {exc.strerror}") from None


def _whole(path: str) -> object:
    """A file holding one pretty-printed document, parsed at once."""
    with _open(path) as handle:
        try:
            data = handle.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise BackendResponseError(f"otlp-file: {path}: cannot be read: {exc}") from None
    try:
        return loads(data)
    except WebhookRejected as exc:
        raise BackendResponseError(
            f"otlp-file: {path}: neither OTLP/JSON lines nor one JSON document: "
            + exc.message.removeprefix("body: ")
        ) from None


def _malformed(path: str, number: int, problem: str) -> BackendResponseError:
    problem = problem.removeprefix("body: ")
    return BackendResponseError(f"otlp-file: {path}, line {number}: {problem}")
