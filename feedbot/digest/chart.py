"""A picture of one route's change: both versions' latency distributions, and errors (pure).

One figure per route, sized for a phone (800 × 450 px, large type): the share of requests per
duration on a log axis, the baseline behind the new version, each median marked by a dashed line
and named in the legend (``1.0.0: 20 ms``). When the route's errors rose, a second panel shows
the new version's error rate over its window (minutes since its first span) against the
baseline's rate as a dashed line; without start times, each version's rate as a bar with its 95%
interval.

The figure is drawn with matplotlib's object API on the Agg canvas (no display, no pyplot state)
and saved to PNG bytes in memory, with fixed fonts and no ``Software`` stamp, so the same data
always gives the same bytes. Nothing here writes a file or sends anything.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

#: Pixels of the PNG: wide enough to read in Slack's thread on a phone, small to upload.
WIDTH_PX, HEIGHT_PX = 800, 450
DPI = 100
_BASE_COLOUR = "#7a8ca3"
_NEW_COLOUR = "#e8590c"
_FONT = "DejaVu Sans"  # shipped with matplotlib, so every machine draws the same glyphs
_MIN_BINS, _MAX_BINS = 10, 36
_Z95 = 1.959963984540054
_RC: dict[str, Any] = {
    "font.family": _FONT,
    "font.size": 16,
    "axes.labelsize": 16,
    "xtick.labelsize": 15,
    "ytick.labelsize": 15,
    "legend.fontsize": 17,
    "legend.title_fontsize": 15,
}
_LOCK = threading.RLock()
#: The error timeline: at most this many bins, each of about this many spans at least.
MAX_BINS = 12
MIN_BIN_SPANS = 25


@dataclass(frozen=True)
class Side:
    """One version's spans of the route.

    Attributes:
        version: The version's name, shown in the legend.
        durations_ms: The spans' durations in milliseconds.
        count: Spans in all (errors are a share of these).
        errors: Spans with error status.
        starts_ns: Per duration, its span's start (ns); empty when unknown.
        errored: Per duration, whether its span failed; empty when unknown.
    """

    version: str
    durations_ms: npt.NDArray[np.float64]
    count: int
    errors: int = 0
    starts_ns: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    errored: npt.NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, np.bool_))


@dataclass(frozen=True)
class Picture:
    """A rendered chart: the PNG and what to call it.

    Attributes:
        png: The image bytes.
        title: One line for the file's title in Slack.
        alt: What the image shows, for screen readers (Slack's ``alt_txt``).
    """

    png: bytes
    title: str
    alt: str


def format_ms(value: float) -> str:
    """A duration as a person reads it: ``0.42 ms``, ``4.2 ms``, ``20 ms``, ``1.3 s``."""
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def median_label(side: Side) -> str:
    """The legend entry of a version: ``"1.0.0: 20 ms"`` (its median), or ``"1.0.0: –"``."""
    version = _shorten(side.version, 20)
    if side.durations_ms.size == 0:
        return f"{version}: –"
    return f"{version}: {format_ms(float(np.median(side.durations_ms)))}"


def error_rate(side: Side) -> tuple[float, float, float]:
    """A version's error rate with its 95% Wilson interval, ``(rate, low, high)``."""
    if side.count <= 0:
        return 0.0, 0.0, 0.0
    n, p = side.count, side.errors / side.count
    centre = (p + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    # Clamped to hold the rate itself: at 0 or n errors, rounding can put an end past it.
    return p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def figure(route: str, baseline: Side, candidate: Side, *, errors: bool = False) -> Figure:
    """Draw the chart of ``route``: latency distributions, and error rates when ``errors``.

    Args:
        route: The route (span group) the chart is about; its title.
        baseline: The version before the deploy.
        candidate: The new version.
        errors: Add the error-rate panel (the route's errors rose).

    Returns:
        A figure on an Agg canvas; :func:`png` saves it.
    """
    with _style():
        fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        if errors:
            grid = fig.add_gridspec(1, 2, width_ratios=(2.2, 1), wspace=0.32)
            latency, rates = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
            _error_panel(rates, baseline, candidate)
        else:
            latency = fig.add_subplot(1, 1, 1)
        _latency_panel(latency, baseline, candidate)
        fig.suptitle(_shorten(route, 48), x=0.02, y=0.98, ha="left", fontsize=19,
                     fontweight="bold")  # fmt: skip
        # The medians under the title, clear of the bars whatever their shape.
        fig.legend(loc="upper left", bbox_to_anchor=(0.01, 0.9), ncol=2, frameon=False,
                   title="median", alignment="left", handlelength=1.0)  # fmt: skip
        fig.subplots_adjust(left=0.1, right=0.97, top=0.72, bottom=0.15)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, the same bytes for the same figure (no ``Software`` stamp)."""
    out = io.BytesIO()
    with _style():
        fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def render(route: str, baseline: Side, candidate: Side, *, errors: bool = False) -> Picture:
    """Draw and save the chart of ``route`` (see :func:`figure`) with its title and alt text."""
    data = png(figure(route, baseline, candidate, errors=errors))
    alt = (
        f"Request times of {route}: {median_label(baseline)} median before, "
        f"{median_label(candidate)} median after the deploy"
    )
    if errors:
        before, after = error_rate(baseline)[0], error_rate(candidate)[0]
        alt += f"; errors {_percent(before)} before, {_percent(after)} after"
    return Picture(png=data, title=f"{route}: {baseline.version} → {candidate.version}", alt=alt)


def _latency_panel(ax: Axes, baseline: Side, candidate: Side) -> None:
    """Overlaid histograms of both versions on log-spaced bins, as shares of their requests."""
    both = np.concatenate([baseline.durations_ms, candidate.durations_ms])
    both = both[np.isfinite(both) & (both > 0)]  # a log axis shows neither 0 nor inf
    if both.size == 0:
        ax.text(0.5, 0.5, "no request times", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    low, high = float(both.min()), float(both.max())
    if high <= low * 1.05:
        low, high = low / 1.5, high * 1.5
    # Rice's rule on the smaller sample: few spans get few, wide bins instead of a comb.
    smaller = min(s.durations_ms.size or both.size for s in (baseline, candidate))
    bins = int(np.clip(round(2 * smaller ** (1 / 3)), _MIN_BINS, _MAX_BINS))
    edges = np.geomspace(low, high, bins + 1)
    for side, colour, alpha in ((baseline, _BASE_COLOUR, 0.45), (candidate, _NEW_COLOUR, 0.55)):
        ax.plot([], [], color=colour, linewidth=10, alpha=0.8, label=median_label(side))
        values = side.durations_ms[np.isfinite(side.durations_ms) & (side.durations_ms > 0)]
        if values.size == 0:
            continue
        counts, _ = np.histogram(values, bins=edges)
        # One filled outline per version (not a bar per bin): the same picture, drawn faster.
        ax.stairs(100.0 * counts / values.size, edges, fill=True, color=colour, alpha=alpha)
        ax.axvline(float(np.median(values)), color=colour, linestyle="--", linewidth=2.5)
    ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    # Ticks at 1-2-5 when the times span less than two decades, else at powers of ten only.
    subs = (1.0, 2.0, 5.0) if edges[-1] / edges[0] < 100 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _tick(value)))
    ax.xaxis.set_minor_locator(NullLocator())  # no room for them on a phone
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}%"))
    ax.set_xlabel("request time in ms (log scale)")
    _tidy(ax)


def error_timeline(
    side: Side, *, max_bins: int = MAX_BINS, min_spans: int = MIN_BIN_SPANS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """A version's error rate over its window: (bin middles in minutes from its first span, rates).

    Equal-width bins over the first to the last span, as many as keep about ``min_spans`` spans
    each (at most ``max_bins``); None without start times and error flags, or with under two bins.
    """
    starts, errored = side.starts_ns, side.errored
    if starts.size == 0 or starts.size != errored.size:
        return None
    bins = min(max_bins, starts.size // min_spans)
    if bins < 2:
        return None
    minutes = (starts - starts.min()) / 60e9
    edges = np.linspace(0.0, float(minutes.max()) or 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, minutes, side="right") - 1, 0, bins - 1)
    spans = np.bincount(which, minlength=bins)
    failed = np.bincount(which, weights=errored.astype(np.float64), minlength=bins)
    seen = spans > 0
    middles = (edges[:-1] + edges[1:]) / 2
    return middles[seen], failed[seen] / spans[seen]


def _error_panel(ax: Axes, baseline: Side, candidate: Side) -> None:
    """The new version's error rate over its window against the baseline's; bars without times."""
    timeline = error_timeline(candidate)
    if timeline is not None:
        middles, over_time = timeline
        before = 100 * error_rate(baseline)[0]
        ax.axhline(before, color=_BASE_COLOUR, linestyle="--", linewidth=2.5)
        ax.plot(middles, 100 * over_time, color=_NEW_COLOUR, marker="o", linewidth=2.5)
        top = max(1.0, float(np.max(100 * over_time)) * 1.3, before * 1.3)
        ax.text(middles[0], before + top * 0.03, f"{_shorten(baseline.version, 10)}: "
                f"{before:.1f}%", color="#555555", fontsize=13)  # fmt: skip
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}%"))
        ax.set_title("errors", loc="left", fontsize=15)
        ax.set_xlabel("minutes since deploy")
        _tidy(ax)
        return
    rates = [error_rate(baseline), error_rate(candidate)]
    values = [100 * r for r, _, _ in rates]
    below = [100 * (r - lo) for r, lo, _ in rates]
    above = [100 * (hi - r) for r, _, hi in rates]
    ax.bar([0, 1], values, color=[_BASE_COLOUR, _NEW_COLOUR], width=0.6,
           yerr=[below, above], capsize=8, error_kw={"linewidth": 2})  # fmt: skip
    top = max(1.0, max(v + a for v, a in zip(values, above, strict=True)) * 1.3)
    for x, value, up in zip((0, 1), values, above, strict=True):
        ax.text(x, value + up + top * 0.03, f"{value:.1f}%", ha="center", va="bottom")
    ax.set_xticks([0, 1], [_shorten(baseline.version, 10), _shorten(candidate.version, 10)])
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}%"))
    ax.set_xlabel("errors")
    _tidy(ax)


def _tidy(ax: Axes) -> None:
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _percent(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _style() -> Iterator[None]:
    """Large type and a fixed font, only while drawing; one drawing at a time.

    matplotlib's settings are process-wide, so the lock keeps two threads drawing at once from
    seeing each other's (and the process's defaults stay as they were).
    """
    with _LOCK, matplotlib.rc_context(_RC):  # type: ignore[arg-type]
        yield


def _tick(value: float) -> str:
    """A tick of the ms axis: ``0.5``, ``20``, ``200``, then ``1s``, ``20s`` (no room for ms)."""
    return f"{value / 1000:g}s" if value >= 1000 else f"{value:g}"
