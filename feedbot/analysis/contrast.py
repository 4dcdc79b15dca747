"""Attribute contrast: which attribute values the slow or failing spans share (as BubbleUp does).

Filled in by the contrast work of issue 15 (see :mod:`feedbot.analysis.attribution`).
"""

from __future__ import annotations

from collections.abc import Collection

from feedbot.analysis.findings import Cause
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData


def causes(
    candidate: ReleaseData,
    baseline: ReleaseData,
    *,
    slower: Collection[str],
    erroring: Collection[str],
    policy: DetectionPolicy,
) -> list[Cause]:
    """Attribute values behind the change of each group (none yet)."""
    return []
