"""Reading the documents of an OTLP/JSON file, or of a byte range of one, into a survey.

A file holds one ``ExportTraceServiceRequest`` per line (the Collector's file exporter), or one
whole document (pretty-printed, like the OTLP repository's example); either may be
gzip-compressed. A whole file of lines is read in blocks of ``BLOCK_BYTES``, each parsed and
decoded into columns by :mod:`feedbot.spans.otlp_arrow` on one of ``READ_THREADS`` threads
while the blocks before are counted, in file order; a block it cannot take is read a line at
a time (:mod:`feedbot.spans.otlp_scan`, else the validating decoder). Memory does not grow
with the file; a whole-document file is the exception and is read at once. A :class:`Part`
names a byte range of a plain lines file, so that several processes can read one file
(:mod:`feedbot.spans.otlp_parallel`), a line at a time.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, cast

from feedbot.errors import BackendResponseError, BackendUnavailable, WebhookRejected
from feedbot.spans.otlp_arrow import BlockReader, Found, parse_block
from feedbot.spans.otlp_json import decode_document, loads
from feedbot.spans.otlp_scan import Unusual
from feedbot.spans.otlp_survey import Survey
from feedbot.spans.rows import SpanRow

GZIP_MAGIC = b"\x1f\x8b"
#: Bytes of whole lines parsed at once by the columnar reader.
BLOCK_BYTES = 8 << 20
#: Threads parsing and decoding blocks ahead of the one being folded (each parses on one
#: core: on two cores, two of them and the folding thread keep both busy; Arrow's own
#: threads on top only added CPU time).
READ_THREADS = 2
#: A decoded block: the columns for each aggregator, and spans counted per version.
Decoded = tuple[list[Found], Counter[str]]


@dataclass(frozen=True)
class Part:
    """The lines of ``path`` that start in ``[start, end)`` (None: to the end of the file).

    A part that does not start at 0 begins at the first line starting at or after ``start``;
    such parts are only made of plain (not compressed) files of lines.
    """

    path: str
    start: int = 0
    end: int | None = None


def read_part(part: Part, survey: Survey, needles: tuple[bytes, ...]) -> None:
    """Read the documents of ``part`` into ``survey``.

    Documents in the Collector's usual shape go through the fast reader
    (:mod:`feedbot.spans.otlp_scan`); any other through the validating decoder.

    Raises:
        BackendUnavailable: the file cannot be opened.
        BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
    """
    if part.start == 0 and part.end is None and survey.columnar:
        if _read_blocks(part, survey, needles):
            return
    for number, text in _texts(part, needles):
        _read_line(part, survey, number, text)


def _read_line(part: Part, survey: Survey, number: int, text: bytes) -> None:
    try:
        survey.scanner.scan(text)
    except Unusual:
        document = _parse(part, number, text)
        if document is _PARTIAL:
            survey.unfinished.append((part.path, _line_base(part) + number, len(text)))
        else:
            survey.add_rows(_decode(part, number, document))


def _read_blocks(part: Part, survey: Survey, needles: tuple[bytes, ...]) -> bool:
    """Read a whole file of lines a block at a time (:mod:`feedbot.spans.otlp_arrow`).

    ``READ_THREADS`` threads parse and decode the next blocks into columns while this one is
    folded into the aggregators, in file order (decoding touches no aggregator: it only picks
    them). A block Arrow cannot take, and an unfinished last line, are read a line at a time,
    as :func:`read_part` reads any other file. Returns False, having counted nothing, when the
    file is one pretty-printed document.
    """
    reader = BlockReader(survey.scanner)
    offset = 0  # bytes before the block
    with _open(part) as handle, ThreadPoolExecutor(READ_THREADS, "otlp-block") as pool:
        blocks = _blocks(part, handle)
        first = next(blocks, None)
        if first is None or _one_document(bytes(first)):
            return first is None
        ahead: deque[tuple[memoryview, Future[Decoded | None]]] = deque()
        for block in itertools.chain((first,), blocks):
            ahead.append((block, pool.submit(_decoded, block, reader)))
            if len(ahead) > READ_THREADS:
                offset = _fold_block(part, survey, needles, offset, *ahead.popleft())
        while ahead:
            offset = _fold_block(part, survey, needles, offset, *ahead.popleft())
    return True


def _fold_block(
    part: Part,
    survey: Survey,
    needles: tuple[bytes, ...],
    offset: int,
    block: memoryview,
    decoded: Future[Decoded | None],
) -> int:
    """Count one block, decoded or else line by line; returns the bytes read after it."""
    columns = decoded.result()
    if columns is None:
        before = _newlines(part, offset) if offset else 0
        _read_lines(part, survey, needles, before, bytes(block))
    else:
        survey.add_columns(*columns)
    return offset + len(block)


def _decoded(block: memoryview, reader: BlockReader) -> Decoded | None:
    """A block's columns per aggregator and spans per version (None: Arrow cannot read it)."""
    if bytes(block[-1:]) != b"\n":
        return None  # an unfinished last line
    try:
        return reader.decode(parse_block(block))
    except Unusual:
        return None


def _newlines(part: Part, offset: int) -> int:
    """How many lines end in the first ``offset`` bytes of the (decompressed) file."""
    count = 0
    with _open(part) as handle:
        while offset > 0:
            data = handle.read(min(offset, BLOCK_BYTES))
            count += data.count(b"\n")
            offset -= len(data)
    return count


def _one_document(block: bytes) -> bool:
    """Whether a file starting with ``block`` is one pretty-printed document (as _texts).

    Its first non-blank line decides, however long: the Collector's file exporter writes a
    batch a line, and 500 SDK spans make a line of about 250 KB.
    """
    start = 0
    while start < len(block):
        end = block.find(b"\n", start)
        end = len(block) if end < 0 else end
        line = block[start:end]
        if line.strip():
            return _starts_document(line)
        start = end + 1
    return False


def _starts_document(first_line: bytes) -> bool:
    """A first line that is not JSON and does not end an object starts a pretty-printed one."""
    return not first_line.rstrip().endswith(b"}") and _unparsable(first_line)


def _wanted(line: bytes, needles: tuple[bytes, ...]) -> bool:
    """Whether ``line`` holds every needle (a line without one has no wanted span)."""
    return all(needle in line for needle in needles)


def _read_lines(
    part: Part, survey: Survey, needles: tuple[bytes, ...], before: int, block: bytes
) -> None:
    """Read a block's lines one at a time, as :func:`_texts` gives them; ``before`` precede it."""
    first = before == 0
    for number, line in enumerate(block.splitlines(keepends=True), before + 1):
        if line.strip() and (first or _wanted(line, needles)):
            first = False
            _read_line(part, survey, number, line)


def _blocks(part: Part, handle: IO[bytes]) -> Iterator[memoryview]:
    """The file in blocks of about ``BLOCK_BYTES`` of whole lines (the last may be unfinished).

    Each block is read into a buffer of its own, after the unfinished line carried over from
    the one before: nothing else is copied (slicing and joining bytes copied every block twice).
    """
    rest = b""
    try:
        while True:
            buffer = bytearray(len(rest) + BLOCK_BYTES)
            buffer[: len(rest)] = rest
            read = handle.readinto(memoryview(buffer)[len(rest) :])  # type: ignore[attr-defined]
            if not read:
                break
            size = len(rest) + read
            end = buffer.rfind(b"\n", 0, size) + 1
            rest = bytes(memoryview(buffer)[end:size])
            if end:
                yield memoryview(buffer)[:end]
    except (OSError, EOFError, zlib.error) as exc:
        raise BackendResponseError(f"otlp-file: {part.path}: cannot be read: {exc}") from None
    if rest:
        yield memoryview(rest)


def read_rows(path: str, needles: tuple[bytes, ...] = ()) -> Iterator[SpanRow]:
    """Every span row of one OTLP/JSON file, streamed line by line, fully validated.

    Args:
        path: a file of OTLP/JSON lines or one OTLP/JSON document, gzip-compressed or not.
        needles: byte strings a line must contain to be decoded (a fast pre-filter).

    Raises:
        BackendUnavailable: the file cannot be opened.
        BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
    """
    part = Part(path)
    for number, text in _texts(part, needles):
        document = _parse(part, number, text)
        if document is not _PARTIAL:
            yield from _decode(part, number, document)


def is_gzip(path: str) -> bool:
    """Whether ``path`` starts like a gzip file.

    Raises:
        BackendUnavailable: the file cannot be opened.
    """
    try:
        with open(path, "rb") as probe:
            return probe.read(2) == GZIP_MAGIC
    except OSError as exc:
        raise BackendUnavailable(f"otlp-file: cannot open {path}: {exc.strerror}") from None


def _decode(part: Part, number: int, document: object) -> list[SpanRow]:
    try:
        return decode_document(document)
    except WebhookRejected as exc:
        raise _malformed(part.path, _line_base(part) + number, exc.message) from None


def _texts(part: Part, needles: tuple[bytes, ...]) -> Iterator[tuple[int, bytes]]:
    """(line number, text) per non-blank line, or (1, the whole file) for one document.

    Lines after the file's first that lack one of ``needles`` are skipped unread. A first line
    that is not JSON and does not end an object starts a pretty-printed document: the whole
    file is then one text. Line numbers count from the part's first line (:func:`_line_base`
    makes them the file's).
    """
    with _open(part) as handle:
        first = part.start == 0
        for number, line in _lines(part, handle):
            if first and _starts_document(line):
                yield 1, _whole(part.path)
                return
            if first or _wanted(line, needles):
                first = False
                yield number, line


def _unparsable(line: bytes) -> bool:
    try:
        loads(line)
    except WebhookRejected:
        return True
    return False


#: What :func:`_parse` answers for the unfinished last line of a file still being written.
_PARTIAL = object()


def _parse(part: Part, number: int, text: bytes) -> object:
    """The JSON of one line (or whole document), for the validating decoder.

    An unparsable last line without a newline is the exporter still writing it: ``_PARTIAL``.

    Raises:
        BackendResponseError: the text is not JSON (naming file and line).
    """
    try:
        return loads(text)
    except WebhookRejected as exc:
        if not text.endswith(b"\n"):
            return _PARTIAL
        raise _malformed(part.path, _line_base(part) + number, exc.message) from None


def _line_base(part: Part) -> int:
    """How many lines come before the part's first line (counted only when needed)."""
    if part.start == 0:
        return 0
    with open(part.path, "rb") as handle:
        before = handle.read(part.start - 1)
    return before.count(b"\n") + 1


def _lines(part: Part, handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    left = None if part.end is None else part.end - part.start
    try:
        if part.start > 0:
            # Begin at the first line starting at or after `start`: the byte before it ends
            # the line that the part before reads.
            handle.seek(part.start - 1)
            skipped = len(handle.readline())
            left = None if left is None else left + 1 - skipped
        for number, line in enumerate(handle, 1):
            if left is not None:
                if left <= 0:
                    return
                left -= len(line)
            if line.strip():
                yield number, line
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated member raises EOFError.
        raise BackendResponseError(f"otlp-file: {part.path}: cannot be read: {exc}") from None


def _open(part: Part) -> IO[bytes]:
    try:
        if part.start == 0 and is_gzip(part.path):
            return cast("IO[bytes]", gzip.open(part.path, "rb"))
        return open(part.path, "rb")
    except OSError as exc:
        raise BackendUnavailable(f"otlp-file: cannot open {part.path}: {exc.strerror}") from None


def _whole(path: str) -> bytes:
    """The text of a file holding one pretty-printed document.

    Raises:
        BackendResponseError: it cannot be read, or is not JSON.
    """
    with _open(Part(path)) as handle:
        try:
            data = handle.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise BackendResponseError(f"otlp-file: {path}: cannot be read: {exc}") from None
    try:
        loads(data)
    except WebhookRejected as exc:
        raise BackendResponseError(
            f"otlp-file: {path}: neither OTLP/JSON lines nor one JSON document: "
            + exc.message.removeprefix("body: ")
        ) from None
    return data


def _malformed(path: str, number: int, problem: str) -> BackendResponseError:
    problem = problem.removeprefix("body: ")
    return BackendResponseError(f"otlp-file: {path}, line {number}: {problem}")
