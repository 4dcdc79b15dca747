"""Small vectorised steps of columns.py: distinct label-code rows, the NUL check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from feedbot.spans.columns import _has_nul, _unique_rows


def test_unique_rows_equal_numpys_row_unique() -> None:
    rng = np.random.default_rng(3)
    for width, high in ((1, 2), (4, 7), (9, 300)):
        codes = rng.integers(-1, high, (5_000, width)).astype(np.int64)
        unique, inverse = _unique_rows(codes)
        expected, expected_inverse = np.unique(codes, axis=0, return_inverse=True)
        assert unique.tolist() == expected.tolist()
        assert inverse.tolist() == expected_inverse.reshape(-1).tolist()
        assert (unique[inverse] == codes).all()


def test_unique_rows_too_wide_for_one_number_still_agree() -> None:
    codes = np.random.default_rng(4).integers(-1, 2**20, (2_000, 4)).astype(np.int64)
    unique, inverse = _unique_rows(codes)
    assert (unique[inverse] == codes).all()
    assert unique.tolist() == np.unique(codes, axis=0).tolist()


def test_a_nul_is_found_in_any_string_and_only_within_the_arrays_slice() -> None:
    values = pa.array(["route", "/a\x00b", None, "é" * 3, "SELECT 1"])
    assert _has_nul(values) and _has_nul(values[1:2])
    assert not _has_nul(values[2:]) and not _has_nul(values[:1])
    assert not _has_nul(pa.array([], pa.string()))
