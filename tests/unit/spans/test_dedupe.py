"""The block keys of spans (:func:`span_keys`) are the row keys (:func:`span_key`); seen keys
answer as one set would."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from feedbot.spans.dedupe import SeenSpans, span_key, span_keys


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


class _Reference:
    """What SeenSpans answers, with one Python set (as it was kept before runs)."""

    def __init__(self) -> None:
        self.keys: set[int] = set()
        self.duplicates = 0

    def fresh_rows(self, keys: list[int]) -> list[bool]:
        mask = []
        for key in keys:
            mask.append(key not in self.keys)
            self.keys.add(key)
        self.duplicates += mask.count(False)
        return mask


_STEP = st.one_of(
    st.lists(st.integers(0, 40), max_size=30),  # a block of keys, repeats likely
    st.tuples(st.integers(0, 40)),  # one span at a time
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_STEP, max_size=25), later=st.lists(_STEP, max_size=8))
def test_seen_spans_answer_as_one_set_over_blocks_single_spans_and_absorb(
    steps: list[list[int] | tuple[int]], later: list[list[int] | tuple[int]]
) -> None:
    """Block keys kept as sorted runs answer what one set would, in any mix with single spans
    (whose keys are the same as a block's) and after absorbing a later reader's keys."""
    ids = {k: (f"{k:032x}", f"{k * 7 + 1:016x}") for k in range(41)}
    key_of = {k: span_key(*pair) for k, pair in ids.items()}

    def feed(seen: SeenSpans, reference: _Reference, at: list[list[int] | tuple[int]]) -> None:
        for step in at:
            keys = [key_of[k] for k in step]
            if isinstance(step, tuple):
                assert seen.fresh(*ids[step[0]]) == reference.fresh_rows(keys)[0]
            else:
                got = seen.fresh_rows(np.array(keys, np.uint64))
                assert got.tolist() == reference.fresh_rows(keys)
            assert seen.duplicates == reference.duplicates

    seen, reference = SeenSpans(), _Reference()
    feed(seen, reference, steps)
    after, after_reference = SeenSpans(), _Reference()
    feed(after, after_reference, later)
    seen.absorb(after)
    reference.keys |= after_reference.keys
    reference.duplicates += after_reference.duplicates
    feed(seen, reference, steps + later)  # everything again: all repeats now
    assert seen.duplicates == reference.duplicates
