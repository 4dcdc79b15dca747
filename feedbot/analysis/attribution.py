"""Why a span group changed: causes found by comparing the two versions trace by trace.

A :class:`~feedbot.analysis.findings.Cause` names where a regression (or an improvement, or an
error increase) of one span group lives: a child operation on the group's critical path
(:mod:`feedbot.analysis.critical_path`), the group's own code, a child that is new in this
version, a repeated statement, or an attribute value that the slow or failing spans share and the
rest do not (:mod:`feedbot.analysis.contrast`). ``share`` is the part of the change the cause
explains, between 0 and 1; a cause that explains little is not returned. The story
(:mod:`feedbot.digest.story`) tells it once, at the route the developer knows. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection

from feedbot.analysis import contrast, critical_path
from feedbot.analysis.findings import Cause
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData

#: A cause must explain at least this share of the change to be named.
MIN_SHARE = 0.2


def explain(
    candidate: ReleaseData,
    baseline: ReleaseData,
    *,
    slower: Collection[str],
    faster: Collection[str] = (),
    erroring: Collection[str] = (),
    policy: DetectionPolicy,
) -> tuple[Cause, ...]:
    """The causes of each changed group, strongest first within a group.

    Args:
        candidate: The new version's spans.
        baseline: The baseline's spans.
        slower: Groups with a latency regression (tested, not necessarily confirmed).
        faster: Groups with a latency improvement.
        erroring: Groups whose error rate rose or that raised a new exception type.
        policy: Thresholds.
    """
    found = [
        *critical_path.causes(candidate, baseline, [*slower, *faster], policy),
        *contrast.causes(candidate, baseline, slower=slower, erroring=erroring, policy=policy),
    ]
    kept = [c for c in found if c.share >= MIN_SHARE]
    return tuple(sorted(kept, key=lambda c: (c.span, -c.share)))
