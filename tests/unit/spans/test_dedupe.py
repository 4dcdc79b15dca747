"""The block keys of spans (:func:`span_keys`) are the row keys (:func:`span_key`)."""

from __future__ import annotations

import pyarrow as pa
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from feedbot.spans.dedupe import span_key, span_keys


def _ids(count: int) -> tuple[list[str], list[str]]:
    ids = RandomIdGenerator()
    traces = [f"{ids.generate_trace_id():032x}" for _ in range(count)]
    return traces, [f"{ids.generate_span_id():016x}" for _ in range(count)]


def test_block_keys_equal_row_keys_for_sdk_ids() -> None:
    traces, spans = _ids(300)
    keys = span_keys(pa.array(traces), pa.array(spans)).tolist()
    assert keys == [span_key(t, s) for t, s in zip(traces, spans, strict=True)]


def test_block_keys_of_a_slice_and_of_upper_case_and_mixed_widths() -> None:
    traces, spans = _ids(50)
    traces[7] = traces[7].upper()
    spans[3] = "00" + spans[3]  # 18 digits: the widths differ, the last 16 are read
    trace_array, span_array = pa.array(traces), pa.array(spans)
    keys = span_keys(trace_array[5:40], span_array[5:40]).tolist()
    assert keys == [span_key(t, s) for t, s in zip(traces[5:40], spans[5:40], strict=True)]
    large = span_keys(trace_array.cast(pa.large_string()), span_array.cast(pa.large_string()))
    assert large.tolist() == [span_key(t, s) for t, s in zip(traces, spans, strict=True)]
