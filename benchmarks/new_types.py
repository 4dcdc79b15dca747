"""How often a no-change deploy raises an alarm, and whether a new exception type is still seen.

The deploys are drawn as in :mod:`benchmarks.detection_sdk` (real OpenTelemetry SDK spans, OTLP
protobuf, the embedded store, the check's queries, four looks), with what teams really send:
3 instances per version, 0.2% of requests failing with four exception types spread over the
routes (each route raises three of them, the rarest at 15% of its errors), so a type the service
raises all along is often absent from one route's baseline window by chance.

An *alarm* is what ``feedbot.digest.blocks.is_alarm`` broadcasts to the service's channel (a
confirmed latency or error-rate regression, or a new exception type whose test passed), read
from the report JSON at any of the four looks. Beside it, in the same run on the same spans,
the rule before issue 14 ("old"): every exception type absent from one operation's baseline
window was a medium ``new_error_type`` finding and broadcast. The recall scenario adds a type
the service never raised (``KeyError``) on 2% of one route's new requests: a new-type alarm on
that route counts, at look 1 and by the last look.

    python -m benchmarks.new_types [--deploys N] [--workers N] [--only TEXT] [--seed N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.detection import CHANGE, POLICY, TARGET
from benchmarks.detection_sdk import (
    BASELINE_WINDOW,
    DEPLOY,
    LOOKS,
    Scenario,
    _export,
    _requests,
)
from feedbot.analysis.compare import Analysis, analyse
from feedbot.analysis.report import finding_json
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.digest.blocks import is_alarm
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.store.db import make_engine, make_sessions, migrate


def _mixed(name: str, spread: float, new_type_rate: float = 0.0) -> Scenario:
    """3 instances a version, 0.2% errors of four types on every route."""
    return Scenario(
        name,
        "new_error_type" if new_type_rate else None,
        spread=spread,
        new_type_rate=new_type_rate,
        base_error_rate=0.002,
        error_rate=0.002,
        error_types=4,
        instances=3,
    )


SCENARIOS = (
    _mixed("no change, 2% host spread", 0.02),
    _mixed("no change, 5% host spread", 0.05),
    _mixed("new type on 2% of one route, 2% host spread", 0.02, new_type_rate=0.02),
)


@dataclass
class Outcome:
    """One deploy over its four looks: alarms now and under the old rule, recall at look 1."""

    alarm: bool = False  # any broadcast alarm at any look
    type_alarm: bool = False  # ... that is a new exception type
    old_alarm: bool = False  # any alarm under the old new-type rule
    old_type_alarm: bool = False
    first: bool = False  # recall: the injected type alarmed on its route at look 1
    found: bool = False  # ... at any look
    old_first: bool = False


def old_rule_types(candidate: ReleaseData, baseline: ReleaseData) -> set[tuple[str, str]]:
    """(group, type) pairs the old rule reported: absent from that group's baseline window."""
    base = {g.name: {e.type for e in g.exceptions} for g in baseline.groups}
    return {
        (g.name, e.type)
        for g in candidate.groups
        for e in g.exceptions
        if e.count > 0 and e.type not in base.get(g.name, set())
    }


def _alarms(a: Analysis) -> list[tuple[str, str, str]]:
    """(kind, span, exception type) of each finding the digest would broadcast."""
    return [
        (f.kind, f.span or "", f.exception_type or "")
        for f in a.findings
        if is_alarm(finding_json(f))
    ]


def _deploy(
    backend: EmbeddedBackend, service: str, s: Scenario, rng: np.random.Generator
) -> Outcome:
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), 5))
    for version, new in (("1.0", False), ("1.1", True)):
        _export(backend, service, version, _requests(rng, s, medians, new), s, new)
    base = backend.collect(
        SpanQuery(service, "1.0", DEPLOY - BASELINE_WINDOW, DEPLOY, environment="production")
    )
    out, previous, target = Outcome(), None, f"GET /r{TARGET}"
    for look, after in enumerate(LOOKS, start=1):
        query = SpanQuery(
            service, "1.1", DEPLOY, DEPLOY + after, environment="production",
            warmup=POLICY.latency.warmup,
        )  # fmt: skip
        cand = backend.collect(query)
        a = analyse(
            cand, base, changes=[CHANGE], policy=POLICY, look=look, looks=len(LOOKS),
            previous=previous,
        )  # fmt: skip
        previous = a
        alarms = _alarms(a)
        others = any(kind != "new_error_type" for kind, _, _ in alarms)
        types = [(span, t) for kind, span, t in alarms if kind == "new_error_type"]
        old = old_rule_types(cand, base)
        out.alarm |= bool(alarms)
        out.type_alarm |= bool(types)
        out.old_alarm |= others or bool(old)
        out.old_type_alarm |= bool(old)
        hit = (target, "KeyError") in types
        out.first |= look == 1 and hit
        out.found |= hit
        out.old_first |= look == 1 and (target, "KeyError") in old
    return out


def _scenario(job: tuple[int, int, int]) -> tuple[Scenario, list[Outcome]]:
    number, deploys, seed = job
    s = SCENARIOS[number]
    rng = np.random.default_rng(seed + number)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'types.db'}")
        migrate(engine)
        backend = EmbeddedBackend(make_sessions(engine))
        results = [_deploy(backend, f"types-{number}-{d}", s, rng) for d in range(deploys)]
        engine.dispose()
    return s, results


def _share(flags: list[bool]) -> str:
    """A share with its exact 95% upper bound when nothing happened (rule of three)."""
    n, hits = len(flags), sum(flags)
    if hits == 0:
        return f"0/{n} (≤{100 * (1 - 0.05 ** (1 / n)):.1f}%)"
    return f"{hits}/{n} ({100 * hits / n:.1f}%)"


def table(results: list[tuple[Scenario, list[Outcome]]]) -> list[str]:
    """The printed table: one row per scenario, the old rule beside the current one."""
    head = ("scenario", "alarm old", "alarm now", "new-type old", "new-type now", "recall")
    rows = [head]
    for s, out in results:
        recall = "-"
        if s.expect:
            recall = (
                f"look 1 {_share([o.first for o in out])}, any look "
                f"{_share([o.found for o in out])}; old look 1 {_share([o.old_first for o in out])}"
            )
        rows.append(
            (
                s.name,
                _share([o.old_alarm for o in out]),
                _share([o.alarm for o in out]),
                _share([o.old_type_alarm for o in out]),
                _share([o.type_alarm for o in out]),
                recall,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    ]


def main() -> None:
    """``python -m benchmarks.new_types [--deploys N] [--workers N] [--only TEXT] [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=40, help="deploys per scenario")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--only", help="scenarios whose name contains this text")
    parser.add_argument("--seed", type=int, default=1400, help="another seed, other deploys")
    args = parser.parse_args()
    jobs = [
        (n, args.deploys, args.seed)
        for n, s in enumerate(SCENARIOS)
        if not args.only or args.only in s.name
    ]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = list(pool.imap(_scenario, jobs))
    print("\n".join(table(results)))
    print(f"(share of deploys over {len(LOOKS)} looks; ≤x% is the 95% upper bound at 0 hits)")


if __name__ == "__main__":
    main()
