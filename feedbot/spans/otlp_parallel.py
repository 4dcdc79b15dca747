"""Reading large OTLP/JSON lines files on several processes, the answer unchanged.

Parsing the JSON is most of the work of ``feedbot report --traces``, and one Python process
parses on one core. :func:`read_in_parts` cuts the plain files into as many byte ranges as
there are workers (on line boundaries), forks one process per range, lets each fill a
:class:`~feedbot.spans.otlp_survey.Survey` of its range, and joins them in input order.

The joined answer is the single-process one: counts, durations (in input order), exceptions
and code tables add up; a trace cut by a range boundary is joined whole, because each range
after the first holds the traces of its first ``max_open_spans`` spans open and hands them
back with its still-open traces (:meth:`~feedbot.spans.aggregate.Aggregator.absorb`). Where
a single pass would itself have closed a trace early (more than ``max_open_spans`` spans
between its first and last span), the parts may link more of it; nothing else differs.
A worker that meets a problem (a malformed line, an unreadable file) gives up, and the caller
reads in one process, so errors name the same line.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Sequence
from multiprocessing.connection import Connection

from feedbot.errors import FeedbotError
from feedbot.spans.otlp_lines import Part, is_gzip, read_part
from feedbot.spans.otlp_survey import Survey

#: Below this many bytes in all, forking costs more than it saves.
MIN_BYTES = 8 << 20


def read_in_parts(
    files: Sequence[str], survey: Survey, needles: tuple[bytes, ...], workers: int
) -> bool:
    """Read ``files`` into ``survey`` on ``workers`` processes (this one included).

    This process reads the first range itself and forks a worker for each other one; a
    range whose worker failed it reads itself afterwards (raising the error it meets).

    Returns:
        False, having read nothing, when the files are better read in one process: small,
        compressed, or on a platform that cannot fork.

    Raises:
        BackendUnavailable: a file cannot be opened.
        BackendResponseError: a line is not an OTLP/JSON export (naming file and line).
    """
    parts = plan_parts(files, workers)
    if len(parts) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return False
    context = multiprocessing.get_context("fork")
    started = []
    for ranges in parts[1:]:
        later = survey.later()
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_work, args=(ranges, later, needles, send), daemon=True)
        process.start()
        send.close()
        started.append((ranges, later, receive, process))
    for part in parts[0]:
        read_part(part, survey, needles)
    for ranges, later, receive, process in started:
        found = _receive(receive)
        process.join()
        if found is None:  # Read it here, to raise what the worker met.
            found = later
            for part in ranges:
                read_part(part, found, needles)
        survey.absorb(found)
    return True


def plan_parts(files: Sequence[str], workers: int) -> list[list[Part]]:
    """The parts of each worker: contiguous byte ranges of about equal size, in input order.

    Empty when the files should be read in one process (small, or a compressed file).
    """
    sizes = [os.path.getsize(path) for path in files]
    total = sum(sizes)
    if workers < 2 or total < MIN_BYTES or any(is_gzip(path) for path in files):
        return []
    share = -(-total // workers)
    parts: list[list[Part]] = [[] for _ in range(workers)]
    offset = 0
    for path, size in zip(files, sizes, strict=True):
        start = 0
        while start < size:
            worker = min(offset // share, workers - 1)
            end = min(size, start + (worker + 1) * share - offset)
            parts[worker].append(Part(path, start, end if end < size else None))
            offset += end - start
            start = end
    return [p for p in parts if p]


def _work(parts: list[Part], survey: Survey, needles: tuple[bytes, ...], out: Connection) -> None:
    """In a forked worker: read ``parts`` and send the survey back (None on any problem)."""
    try:
        for part in parts:
            read_part(part, survey, needles)
        payload = pickle.dumps(survey, protocol=pickle.HIGHEST_PROTOCOL)
    except (FeedbotError, OSError, ValueError):
        payload = pickle.dumps(None)
    out.send_bytes(payload)
    out.close()


def _receive(pipe: Connection) -> Survey | None:
    try:
        found: Survey | None = pickle.loads(pipe.recv_bytes())
    except EOFError:  # the worker died without answering
        return None
    finally:
        pipe.close()
    return found
