"""Realistic mixed traffic for the vault API: customers open vaults, deposit, appraise, browse.

:func:`drive` plans ``requests`` calls from ``seed`` (the same plan every time), sends them from
``concurrency`` threads, and returns how many went to each endpoint. A few deposits are dragon
goods. ``python -m examples.vault.traffic http://127.0.0.1:8000 --requests 200`` runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

logger = logging.getLogger(__name__)

OPEN = "POST /vaults"
LIST = "GET /vaults"
DEPOSIT = "POST /vaults/{vault_id}/items"
APPRAISE = "GET /vaults/{vault_id}/appraisal"
QUEUE_JOB = "POST /vaults/{vault_id}/appraisals"
#: After the first vaults are opened, how often each call is made.
MIX = ((DEPOSIT, 0.52), (APPRAISE, 0.24), (LIST, 0.08), (QUEUE_JOB, 0.10), (OPEN, 0.06))
DRAGON_SHARE = 0.06
OWNERS = ("Harry Potter", "Bellatrix Lestrange", "Griphook", "Hermione Granger", "Lucius Malfoy")
GOODS = (
    ("Galleons", "gold", 40.0),
    ("Sickles", "silver", 120.0),
    ("Goblin-made tiara", "jewel", 1.0),
    ("Cup of Hufflepuff", "artifact", 1.0),
    ("Sword of Gryffindor", "artifact", 1.0),
    ("Ruby", "jewel", 2.0),
)
DRAGON_GOODS = (("Dragon egg", "artifact", 1.0), ("Ukrainian Ironbelly dragon scale", "jewel", 3.0))


@dataclass(frozen=True)
class Call:
    endpoint: str
    vault: int = 0  # an index into the vaults opened so far
    body: dict[str, object] | None = None


@dataclass
class _Run:
    client: httpx.Client
    vaults: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)

    def vault_id(self, index: int) -> int:
        with self.lock:
            return self.vaults[index % len(self.vaults)]


def plan(requests: int, seed: int) -> tuple[list[Call], list[Call]]:
    """The calls to make, the same for the same seed.

    First a look at the vaults that exist (customers come back to them) and a few new vaults,
    then the mix.
    """
    rng = random.Random(seed)
    first = max(2, min(requests // 10, 12))
    opening = [Call(LIST)]
    opening += [Call(OPEN, body={"owner": rng.choice(OWNERS)}) for _ in range(first)]
    opening = opening[: max(requests, 2)]
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    mixed = [
        _call(rng, rng.choices(names, weights)[0]) for _ in range(max(requests - len(opening), 0))
    ]
    return opening, mixed


def _call(rng: random.Random, endpoint: str) -> Call:
    vault = rng.randrange(1_000_000)
    if endpoint == OPEN:
        return Call(OPEN, body={"owner": rng.choice(OWNERS)})
    if endpoint == DEPOSIT:
        goods = DRAGON_GOODS if rng.random() < DRAGON_SHARE else GOODS
        name, kind, weight = rng.choice(goods)
        body = {"name": name, "kind": kind, "weight": round(weight * rng.uniform(0.5, 2), 2)}
        return Call(DEPOSIT, vault, body)
    return Call(endpoint, vault)


def drive(base_url: str, *, requests: int, seed: int, concurrency: int) -> dict[str, int]:
    """Send ``requests`` calls to the vault API at ``base_url``.

    Args:
        base_url: the API, e.g. ``http://127.0.0.1:8000``.
        requests: how many calls in all, vault openings included.
        seed: fixes the plan (which calls, which goods); the order across threads may vary.
        concurrency: how many calls are in flight at once.

    Returns:
        Calls sent per endpoint (``"POST /vaults/{vault_id}/items"``: 52, ...), whatever their
        status; a call that could not connect is not counted.
    """
    opening, mixed = plan(requests, seed)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        run = _Run(client)
        with ThreadPoolExecutor(max_workers=max(concurrency, 1)) as pool:
            list(pool.map(lambda call: _send(run, call), opening))
            if not run.vaults:
                raise RuntimeError(f"{base_url}: no vault could be opened")
            list(pool.map(lambda call: _send(run, call), mixed))
    return dict(run.counts)


def _send(run: _Run, call: Call) -> None:
    method, template = call.endpoint.split(" ", 1)
    path = template.format(vault_id=run.vault_id(call.vault)) if "{" in template else template
    try:
        response = run.client.request(method, path, json=call.body)
    except httpx.TransportError as exc:
        logger.warning("%s %s: %s", method, path, exc)
        return
    with run.lock:
        run.counts[call.endpoint] += 1
        if response.status_code in (200, 201):
            _learn_vaults(run, call.endpoint, response)
    if response.status_code >= 500:
        logger.warning("%s %s: %d %s", method, path, response.status_code, response.text[:200])


def _learn_vaults(run: _Run, endpoint: str, response: httpx.Response) -> None:
    """Remember vaults opened, or listed, so later calls can use them (the lock is held)."""
    if endpoint == OPEN:
        run.vaults.append(int(response.json()["id"]))
    elif endpoint == LIST:
        known = set(run.vaults)
        run.vaults.extend(v["id"] for v in response.json() if v["id"] not in known)


def main(argv: Sequence[str] | None = None) -> None:
    """Drive traffic at a running vault API and print the counts as JSON."""
    parser = argparse.ArgumentParser(prog="python -m examples.vault.traffic")
    parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    counts = drive(
        args.base_url, requests=args.requests, seed=args.seed, concurrency=args.concurrency
    )
    sys.stdout.write(json.dumps(counts, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
