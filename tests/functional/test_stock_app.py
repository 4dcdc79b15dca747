"""``feedbot report`` as a CI gate on an app with stock auto-instrumentation, end to end.

The bookshop of :mod:`tests.stock_app` (FastAPI, a plain ASGI mount, SQLAlchemy on PostgreSQL,
httpx) runs as two real processes, one per version, exporting with the SDK's OTLP/HTTP exporter
to a receiver that writes the file as the Collector's file exporter does. Both pods take the
same traffic throughout (the new one its smoke test before the deploy), so the machine's load is
the same before and after the deploy time. Nothing in
the spans was shaped for feedbot: statements are ``SELECT <db>`` spans, raw paths have no
``http.route``, real timestamps, real noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from feedbot.commands import report as report_cli
from tests.stock_app import REVIEWS, Collector, Pricing, create_database, drive, drop_database

REPO = Path(__file__).resolve().parents[2]
ALONE_S = 2.0  # before the deploy: 1.0.0 serves, the new pods take smoke traffic
BOTH_S = 6.0  # after it: both versions serve


@pytest.fixture(scope="module")
def shop_database(postgres_url: str) -> Iterator[str]:
    admin = make_url(postgres_url).set(database="postgres")
    admin_url = admin.render_as_string(hide_password=False)
    name = f"bookshop_{uuid.uuid4().hex[:8]}"
    url = create_database(admin_url, name)
    yield url
    drop_database(admin_url, name)


class Pod:
    """One version of the shop in its own process (its own instrumentation, like a pod)."""

    def __init__(
        self, version: str, changed: bool, database: str, pricing: str, export: str, name: str
    ) -> None:
        command = [sys.executable, "-m", "tests.stock_app", "--version", version]
        command += ["--changed", "yes" if changed else "no", "--database-url", database]
        command += ["--pricing-url", pricing, "--export", export, "--instance", name]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )

    @property
    def url(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("http://"), f"the shop did not start: {line!r}"
        return line

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: the SDK flushes its last batch
        code = self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        assert code == 0


def rolling_deploy(
    tmp_path: Path, database: str, *, changed: bool, seed: int, pods_per_version: int = 1
) -> int:
    """Run 1.0.0, deploy 2.0.0 (``changed``: with 2.0's code) beside it; the gate's exit code.

    The report's JSON is left in ``tmp_path / "report.json"``.
    """
    spans = tmp_path / "spans.jsonl"
    with Pricing() as pricing, Collector(spans) as collector:
        pods = [
            Pod(version, changed and version != "1.0.0", database, pricing.url, collector.url, n)
            for version in ("1.0.0", "2.0.0")
            for n in ("a", "b")[:pods_per_version]
        ]
        try:
            urls = [pod.url for pod in pods]

            def everywhere(seconds: float, seed: int) -> None:
                """One client on each pod: the same load on the machine before and after."""
                clients = [
                    threading.Thread(
                        target=drive,
                        args=(url,),
                        kwargs={
                            "seconds": seconds,
                            "seed": seed + i,
                            "concurrency": 4 // len(urls),
                            "unknown_quotes": changed and i >= len(urls) // 2,
                        },
                    )
                    for i, url in enumerate(urls)
                ]
                for client in clients:
                    client.start()
                for client in clients:
                    client.join()

            # The new pods take their smoke traffic while the old ones serve: their spans
            # before the deploy are outside the new version's window.
            everywhere(ALONE_S, seed)
            deployed_at = datetime.now(UTC)
            everywhere(BOTH_S, seed + 10)
        finally:
            for pod in pods:
                pod.stop()
        time.sleep(0.2)
    deploy = tmp_path / "deploy.json"
    deploy.write_text(
        json.dumps(
            {
                "service": "bookshop",
                "version": "2.0.0",
                "environment": "production",
                "deployed_at": deployed_at.isoformat(),
            }
        )
    )
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    argv = ["--deploy", str(deploy), "--traces", str(spans), "--fail-on", "regressed"]
    out = tmp_path / "report.json"
    with out.open("w") as stream:
        saved, sys.stdout = sys.stdout, stream
        try:
            return report_cli.run(parser.parse_args([*argv, "--format", "json"]))
        finally:
            sys.stdout = saved


def findings(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["kind"] == kind]


def test_the_gate_fails_on_the_regressed_route_its_n_plus_one_and_new_exception(
    tmp_path: Path, shop_database: str
) -> None:
    code = rolling_deploy(tmp_path, shop_database, changed=True, seed=1)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert (code, doc["verdict"], doc["baseline_version"]) == (1, "regressed", "1.0.0")
    (slower,) = findings(doc, "latency_regression")
    assert (slower["span"], slower["state"]) == ("GET /books/{book_id}", "confirmed")
    # The N+1: a statement new in 2.0.0, run once per review, under the route that slowed.
    statement = "SELECT stars FROM reviews WHERE id = %(id)s"
    # It is called an N+1 only past n_plus_one.min_total_ms (50 ms a request): on a quiet
    # machine twelve indexed reads take less, so the finding depends on the machine's speed;
    # the statement's shape (REVIEWS runs per request of the route) does not.
    for repeat in findings(doc, "n_plus_one"):
        assert repeat["span"] == "GET /books/{book_id}" and statement in json.dumps(repeat)
    counts = {g["span"]: (g.get("candidate") or {}).get("count", 0) for g in doc["groups"]}
    per_request = sum(n for span, n in counts.items() if span.endswith(statement))
    assert per_request >= 0.9 * REVIEWS * counts["GET /books/{book_id}"] > 0, counts
    new = [f["span"] for f in findings(doc, "new_operation")]
    assert any(span.endswith(statement) for span in new), new
    # The new exception type is new; BookNotFound, raised on another route of the baseline,
    # is not new to the service.
    (raised,) = findings(doc, "new_error_type")
    assert raised["span"] == "POST /orders" and raised["state"] == "confirmed"
    assert raised["exception_type"].endswith("PaymentDeclined")
    assert any("BookNotFound on GET /quote/{book_id}" in note for note in doc["notes"])
    # Raw paths without http.route, and the ASGI event spans named after them: templated.
    names = {g["span"] for g in doc["groups"]}
    assert {"GET /covers/{id}", "GET /covers/{id} http send"} <= names
    assert not [name for name in names if "/covers/0" in name]
    assert len(names) < 30


def test_the_gate_passes_an_a_a_deploy(tmp_path: Path, shop_database: str) -> None:
    code = rolling_deploy(tmp_path, shop_database, changed=False, seed=2, pods_per_version=2)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["baseline_version"] == "1.0.0" and doc["verdict"] != "regressed", [
        (f["kind"], f["span"], f["state"]) for f in doc["findings"]
    ]
    assert code == 0
    assert not findings(doc, "new_error_type") and not findings(doc, "n_plus_one")
    # Both versions served for BOTH_S after the deploy: that overlap is compared, so the pods'
    # pace in the seconds before the deploy is not counted against the new version; unless the
    # old version's spans there show it ran as before the deploy (then its past is the larger
    # baseline, and the reason says how steady it was).
    comparison = doc["comparison"]
    assert comparison["kind"] in ("overlap", "before_after"), comparison
    if comparison["kind"] == "before_after":
        assert "the time of the deploy moved nothing" in comparison["reason"], comparison
        assert "steady means within ±5%" in comparison["reason"], comparison
