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
from collections.abc import Iterator, Sequence
from typing import IO, cast

from feedbot.backends.aggregate import Aggregator, matcher
from feedbot.backends.base import ReleaseData, SpanQuery
from feedbot.backends.otlp_json import decode_document, loads
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

        Raises:
            BackendUnavailable: a pattern matches no file, or a file cannot be read.
            BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
        """
        aggregator = Aggregator()
        keep = matcher(query)
        needles = _needles(query)
        for path in self.files():
            aggregator.add_many(filter(keep, read_rows(path, needles)))
        return aggregator.result()

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
    """Every span row of one OTLP/JSON file, streamed line by line.

    Args:
        path: a file of OTLP/JSON lines or one OTLP/JSON document, gzip-compressed or not.
        needles: byte strings a line must contain to be decoded (a fast pre-filter).

    Raises:
        BackendUnavailable: the file cannot be opened.
        BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
    """
    for number, document in _documents(path, needles):
        try:
            rows = decode_document(document)
        except WebhookRejected as exc:
            raise _malformed(path, number, exc.message) from None
        yield from rows


def paths_from_setting(value: str) -> list[str]:
    """``traces.path`` split into globs: one, or several separated by commas."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _needles(query: SpanQuery) -> tuple[bytes, ...]:
    """Byte strings every line with a matching span contains (empty when unsure)."""
    names = (query.service, query.version)
    if all(_VERBATIM.fullmatch(name) for name in names):
        return tuple(f'"{name}"'.encode() for name in names)
    return ()


def _documents(path: str, needles: tuple[bytes, ...]) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) per non-blank line; (1, document) for a whole-document file.

    Lines after the first that lack one of ``needles`` are skipped without being parsed, and so
    is an unparsable last line without a newline (the exporter is still writing it).
    """
    with _open(path) as handle:
        first = True
        for number, line in _lines(path, handle):
            if not first and needles and not all(needle in line for needle in needles):
                continue
            try:
                document = loads(line)
            except WebhookRejected as exc:
                if first and not line.rstrip().endswith(b"}"):
                    yield 1, _whole(path)
                    return
                if not line.endswith(b"\n"):
                    return  # The last line, still being written by the exporter.
                raise _malformed(path, number, exc.message) from None
            first = False
            yield number, document


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
