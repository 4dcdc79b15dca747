"""Critical-path attribution: which child accounts for a group's added time, trace by trace.

Filled in by the critical-path work of issue 15 (see :mod:`feedbot.analysis.attribution`).
"""

from __future__ import annotations

from collections.abc import Sequence

from feedbot.analysis.findings import Cause
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData


def causes(
    candidate: ReleaseData, baseline: ReleaseData, spans: Sequence[str], policy: DetectionPolicy
) -> list[Cause]:
    """Causes of each group in ``spans`` on its critical path (none yet)."""
    return []
