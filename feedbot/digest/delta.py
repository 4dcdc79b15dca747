"""What changed between two looks at a release: the findings that are new, changed or gone.

A later check's reply says what changed since the reply before it, not everything again.
Findings are matched by :func:`feedbot.digest.blocks.finding_key` (kind + span/function/file/
exception type/statement), which is the same from one look to the next. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Finding = Mapping[str, Any]
#: How a finding that went away is said, by kind; the default is "<kind> on <where> went away".
_GONE = {
    "low_traffic": "enough traffic now on {where}",
    "code_not_reached": "{where} ran after all",
}


def key_of(finding: Finding) -> str:
    """:func:`feedbot.digest.blocks.finding_key`, here so the delta needs no Block Kit."""
    parts = ("span", "function", "file", "exception_type", "statement")
    return "|".join([str(finding["kind"]), *(str(finding.get(p) or "") for p in parts)])


@dataclass(frozen=True)
class Delta:
    """The findings of this look against the previous one.

    Attributes:
        new: Not in the previous look.
        changed: In it with another state (``suspected`` then, ``confirmed`` now): ``was`` says.
        same: In it with the same state.
        gone: In the previous look, not in this one.
        was: The previous state of each changed finding, by key.
        fresh: The findings worth a full line (and a button): new or changed, in report order.
    """

    new: tuple[Finding, ...]
    changed: tuple[Finding, ...]
    same: tuple[Finding, ...]
    gone: tuple[Finding, ...]
    was: Mapping[str, str]
    fresh: tuple[Finding, ...] = ()


def compare(
    previous: Sequence[Finding], current: Sequence[Finding], acknowledged: Collection[str] = ()
) -> Delta:
    """Sort ``current`` into new, changed and unchanged findings, and find those that went away.

    Args:
        previous: The previous look's findings.
        current: This look's findings (acknowledged ones already left out).
        acknowledged: Keys marked expected: not reported as gone either.

    Returns:
        The delta, each part in report order.
    """
    before = {key_of(f): f for f in previous}
    now = {key_of(f) for f in current}
    new, changed, same, was = [], [], [], {}
    for finding in current:
        old = before.get(key_of(finding))
        if old is None:
            new.append(finding)
        elif old.get("state") != finding.get("state"):
            changed.append(finding)
            was[key_of(finding)] = str(old.get("state"))
        else:
            same.append(finding)
    gone = [f for k, f in before.items() if k not in now and k not in acknowledged]
    fresh = tuple(f for f in current if key_of(f) not in before or key_of(f) in was)
    return Delta(tuple(new), tuple(changed), tuple(same), tuple(gone), was, fresh)


def where(finding: Finding) -> str:
    """What a finding is about: its span, function, file or exception type."""
    for part in ("span", "function", "file", "exception_type"):
        if finding.get(part):
            return str(finding[part])
    return "the service"


def kind_words(finding: Finding) -> str:
    """``latency regression``."""
    return str(finding.get("kind") or "finding").replace("_", " ")


def gone_text(finding: Finding) -> str:
    """``latency regression on GET /vaults went away``, or the kind's own words."""
    template = _GONE.get(str(finding.get("kind")))
    if template:
        return template.format(where=where(finding))
    return f"{kind_words(finding)} on {where(finding)} went away"


def gone_alone(delta: Delta) -> tuple[Finding, ...]:
    """The gone findings worth a line: not the ones a new finding about the same thing replaces.

    ``recount_galleons has not run yet`` (low traffic) gives way to ``recount_galleons has not
    run in 450 requests`` (not reached): the new line says it all.
    """
    replaced = {where(f) for f in delta.new}
    return tuple(f for f in delta.gone if where(f) not in replaced)


def gone_lines(delta: Delta) -> list[str]:
    """One line per finding that went away; groups that now have enough traffic share one."""
    gone = gone_alone(delta)
    busy = [where(f) for f in gone if f.get("kind") == "low_traffic"]
    lines = [gone_text(f) for f in gone if f.get("kind") != "low_traffic"]
    if busy:
        lines.insert(0, "enough traffic now on " + ", ".join(busy))
    return lines


def summary(delta: Delta) -> str:
    """``2 new, 3 changed, 1 went away, 12 still there`` (parts that are zero left out)."""
    parts = [
        (len(delta.new), "new"),
        (len(delta.changed), "changed"),
        (len(gone_alone(delta)), "went away"),
        (len(delta.same), "still there"),
    ]
    return ", ".join(f"{n} {word}" for n, word in parts if n) or "no findings"
