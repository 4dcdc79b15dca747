"""Span groups per file of recorded traces: how many, and the largest, as feedbot names them.

    python -m benchmarks.grouping FILE...   (Zipkin v2 JSON, OTLP/JSON, Jaeger api/v3 answers)

Run it from another checkout's directory (``cd ../main && python <this file> ...``) to compare
with that checkout's grouping: it uses only the span decoders and :func:`aggregate`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from feedbot.backends.zipkin import zipkin_row
from feedbot.spans.aggregate import aggregate
from feedbot.spans.otlp_http import decode_request
from feedbot.spans.rows import SpanRow


def _zipkin(document: Any) -> Iterator[SpanRow]:
    spans = document if isinstance(document, list) else [document]
    for item in spans:
        for span in item if isinstance(item, list) else [item]:
            yield zipkin_row(span)


def rows_of(path: Path) -> list[SpanRow]:
    """The span rows of one file; OTLP/JSON lines files are read line by line."""
    text = path.read_text()
    try:
        documents = [json.loads(text)]
    except ValueError:
        documents = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows: list[SpanRow] = []
    for document in documents:
        if isinstance(document, dict) and isinstance(document.get("result"), dict):
            document = document["result"]
        if isinstance(document, dict) and "resourceSpans" in document:
            data = json.dumps(document).encode()
            rows += decode_request(
                data, content_type="application/json", content_encoding=None, max_bytes=len(data)
            )
        else:
            rows += _zipkin(document)
    return rows


def main(paths: list[str]) -> None:
    """Print one line per file: spans, groups, the largest group."""
    print(f"{'file':<60} {'spans':>6} {'groups':>6}  largest group")
    for name in paths:
        try:
            rows = rows_of(Path(name))
        except (ValueError, KeyError, TypeError) as exc:
            print(f"{name[-60:]:<60} skipped: {exc}")
            continue
        data = aggregate(rows)
        top = data.groups[0] if data.groups else None
        largest = f"{top.name[:70]} ({top.count})" if top else "-"
        print(f"{name[-60:]:<60} {len(rows):>6} {len(data.groups):>6}  {largest}")


if __name__ == "__main__":
    main(sys.argv[1:])
