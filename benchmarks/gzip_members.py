"""A gzip body of many small members: decoding time before and after, side by side.

``python -m benchmarks.gzip_members`` prints, for bodies of 25k to 200k members (each one small
OTLP/JSON-sized piece of text), the median time of :func:`feedbot.spans.otlp.decompress` and of
the loop it replaced, which handed each member the rest of the body (so each member copied it:
time grew with the square of the member count). Medians of 3 runs, measured in one process.
"""

from __future__ import annotations

import gzip
import statistics
import time
import zlib
from collections.abc import Callable

from feedbot.spans.otlp import decompress

MEMBERS = (25_000, 50_000, 100_000, 200_000)
LIMIT = 64 * 1024 * 1024


def body(members: int) -> bytes:
    """``members`` gzip members of about 40 bytes of text each, concatenated."""
    one = gzip.compress(b'{"resourceSpans":[]}', mtime=0)
    return one * members


def before(data: bytes, max_bytes: int) -> bytes:
    """The loop ``decompress`` had: each member's ``unused_data`` is the rest of the body."""
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += inflater.decompress(rest, max_bytes + 1 - len(out))
        rest = inflater.unused_data
    return bytes(out)


def median_seconds(call: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    print(f"{'members':>8}  {'body KiB':>8}  {'before s':>9}  {'after s':>8}  {'ratio':>6}")
    for members in MEMBERS:
        data = body(members)
        assert before(data, LIMIT) == decompress(data, "gzip", LIMIT, max_members=None)
        old = median_seconds(lambda d=data: before(d, LIMIT))
        new = median_seconds(lambda d=data: decompress(d, "gzip", LIMIT, max_members=None))
        print(f"{members:>8}  {len(data) // 1024:>8}  {old:>9.3f}  {new:>8.3f}  {old / new:>6.1f}")


if __name__ == "__main__":
    main()
