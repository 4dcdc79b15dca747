"""The route chart, drawn for real by matplotlib: its PNG, its labels and its stability."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from feedbot.digest import chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def side(
    version: str, median_ms: float, n: int = 800, errors: int = 0, seed: int = 1
) -> chart.Side:
    rng = np.random.default_rng(seed)
    return chart.Side(version, rng.lognormal(np.log(median_ms), 0.4, n), n, errors)


def png_chunks(data: bytes) -> dict[bytes, list[bytes]]:
    """The PNG's chunks by type, each checked against its CRC."""
    assert data[:8] == PNG_SIGNATURE
    chunks: dict[bytes, list[bytes]] = {}
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.setdefault(kind, []).append(body)
        at += 12 + length
    return chunks


def size_of(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png_chunks(data)[b"IHDR"][0][:8])
    return width, height


def texts(figure: Figure) -> list[str]:
    """Every piece of text drawn on the figure (titles, legend, ticks, bar labels)."""
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def test_a_chart_is_a_phone_sized_png_without_a_software_stamp() -> None:
    picture = chart.render("POST /vaults/{id}/items", side("1.0.0", 20), side("2.0.0", 56))
    assert size_of(picture.png) == (chart.WIDTH_PX, chart.HEIGHT_PX) == (800, 450)
    chunks = png_chunks(picture.png)
    assert b"IEND" in chunks
    metadata = b"".join(chunks.get(b"tEXt", []))
    assert b"Software" not in metadata and b"matplotlib" not in metadata
    assert 5_000 < len(picture.png) < 200_000


def test_the_legend_names_each_versions_median() -> None:
    base, new = side("1.0.0", 20), side("2.0.0", 56)
    drawn = texts(chart.figure("POST /vaults/{id}/items", base, new))
    medians = [float(np.median(s.durations_ms)) for s in (base, new)]
    expected = [f"1.0.0: {medians[0]:.0f} ms", f"2.0.0: {medians[1]:.0f} ms"]
    assert all(e in drawn for e in expected), drawn
    assert "POST /vaults/{id}/items" in drawn


def test_the_error_panel_appears_only_when_errors_rose() -> None:
    base, new = side("1.0.0", 20, errors=4), side("2.0.0", 20, errors=40)
    without = texts(chart.figure("GET /x", base, new))
    with_errors = chart.figure("GET /x", base, new, errors=True)
    assert len(with_errors.axes) == 2
    drawn = texts(with_errors)
    assert "0.5%" in drawn and "5.0%" in drawn  # 4/800 and 40/800
    assert "5.0%" not in without
    picture = chart.render("GET /x", base, new, errors=True)
    assert "errors 0.5% before, 5.0% after" in picture.alt


def test_the_same_data_gives_the_same_bytes_and_other_data_other_bytes() -> None:
    route = "GET /vaults/{id}"
    first = chart.render(route, side("1.0.0", 20), side("2.0.0", 56)).png
    again = chart.render(route, side("1.0.0", 20), side("2.0.0", 56)).png
    slower = chart.render(route, side("1.0.0", 20), side("2.0.0", 90)).png
    assert first == again
    assert slower != first


def test_drawing_leaves_matplotlibs_process_settings_alone() -> None:
    import matplotlib

    before = dict(matplotlib.rcParams)
    chart.render("GET /x", side("1.0.0", 20), side("2.0.0", 30))
    assert dict(matplotlib.rcParams) == before


def test_a_version_without_request_times_still_draws() -> None:
    empty = chart.Side("2.0.0", np.empty(0), 0, 0)
    figure = chart.figure("GET /x", side("1.0.0", 20), empty, errors=True)
    drawn = texts(figure)
    assert "2.0.0: –" in drawn
    assert size_of(chart.png(figure)) == (800, 450)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.42, "0.42 ms"), (4.24, "4.2 ms"), (20.4, "20 ms"), (1340.0, "1.3 s")],
)
def test_durations_read_as_a_person_would_say_them(value: float, shown: str) -> None:
    assert chart.format_ms(value) == shown


def test_error_rate_interval_holds_the_rate() -> None:
    rate, low, high = chart.error_rate(chart.Side("v", np.empty(0), 200, 10))
    assert rate == pytest.approx(0.05)
    assert 0.02 < low < rate < high < 0.1
    assert chart.error_rate(chart.Side("v", np.empty(0), 0, 0)) == (0.0, 0.0, 0.0)


def test_zero_and_infinite_durations_are_left_off_the_log_axis() -> None:
    odd = np.array([0.0, np.inf, 5.0, 6.0, 7.0])
    figure = chart.figure("GET /x", chart.Side("1.0.0", odd, 5), side("2.0.0", 20))
    low, high = figure.axes[0].get_xlim()
    assert 0 < low <= 5.0 and np.isfinite(high)
    assert size_of(chart.png(figure)) == (800, 450)


def test_errors_over_the_window_show_when_the_new_version_started_failing() -> None:
    # 600 requests over 30 minutes; errors begin 20 minutes in (a cache expiring, a quota).
    n, minute = 600, 60 * 10**9
    starts = np.sort(np.random.default_rng(3).integers(0, 30 * minute, n)).astype(np.int64)
    errored = (starts >= 20 * minute) & (np.arange(n) % 5 == 0)
    new = chart.Side("2.0.0", np.full(n, 20.0), n, int(errored.sum()), starts + 10**18, errored)
    timeline = chart.error_timeline(new)
    assert timeline is not None
    middles, rates = timeline
    assert 2 <= len(middles) <= chart.MAX_BINS and np.all(np.diff(middles) > 0)
    assert np.all(rates[middles < 19] == 0) and np.all(rates[middles > 21] > 0.1)

    fig = chart.figure("GET /x", side("1.0.0", 20, errors=2), new, errors=True)
    drawn = texts(fig)
    assert {"errors", "minutes since deploy", "1.0.0: 0.2%"} <= set(drawn)
    (line,) = [ln for ln in fig.axes[1].get_lines() if ln.get_marker() == "o"]
    assert np.allclose(line.get_ydata(), 100 * rates)


def test_without_start_times_errors_are_one_bar_per_version() -> None:
    base, new = side("1.0.0", 20, errors=4), side("2.0.0", 20, errors=40)
    assert chart.error_timeline(new) is None
    few = chart.Side("2.0.0", np.full(30, 5.0), 30, 3, np.arange(30), np.arange(30) < 3)
    assert chart.error_timeline(few) is None  # one bin of 25 spans is no timeline
    assert "errors" in texts(chart.figure("GET /x", base, new, errors=True))
