"""The demo's story: feedbot up, vault 1.0.0 in production, the 2.0.0 deploy, its checks.

Every step goes through the same doors as in production: spans arrive as OTLP/HTTP on
``/v1/traces``, both deploys are signed generic webhooks, and the checks and messages run on
feedbot's own ticker and outbox. The ``ExitStack`` stops everything in reverse order, also on
Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from feedbot.demo import changes as release_diff
from feedbot.demo.host import HostPlan, LocalFeedbot
from feedbot.demo.load import Pace, Sent, send
from feedbot.demo.progress import Progress
from feedbot.demo.recorder import Delivered, RecordingNotifier
from feedbot.durations import format_duration
from feedbot.releases.deploy_client import PATH as WEBHOOK_PATH
from feedbot.releases.deploy_client import post_with_retries
from feedbot.store import queries

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "vault-service"
OLD, NEW = "1.0.0", "2.0.0"
TITLES = {
    OLD: "Vault 1.0.0",
    NEW: "Per-item appraisal, insured and sealed deposits, rationed dragon goods",
}
#: Seconds after the last check is due before the demo gives up on it.
CHECK_GRACE_S = 90.0
#: Spans reach feedbot in batches (OpenTelemetry's default is every 5 s): the traffic of the
#: new version ends this long before its last check, so that check sees all of it.
EXPORT_LAG_S = 7.0


class DemoError(RuntimeError):
    """The demo could not go on; the message says why and where the logs are."""


@dataclass(frozen=True)
class Scale:
    """How big the demo is: requests per version, batch size and the check schedule."""

    requests: int
    batch: int
    after: tuple[timedelta, ...]
    concurrency: int = 4


FULL = Scale(1500, 150, (timedelta(seconds=25), timedelta(seconds=50)))
QUICK = Scale(450, 75, (timedelta(seconds=15), timedelta(seconds=30)))


@dataclass(frozen=True)
class Options:
    """What the command line chose."""

    scale: Scale
    workdir: Path
    slack_env: Mapping[str, str]
    slack_to: str | None = None
    slack_api_url: str | None = None
    seed: int = 7


@dataclass(frozen=True)
class Outcome:
    """What the demo leaves for rendering: the messages, the reports, the feedbot it ran."""

    release_id: int
    delivered: list[Delivered]
    reports: list[dict[str, Any]]
    database_url: str
    recipient: str


def vault_modules() -> tuple[ModuleType, ModuleType]:
    """``examples.vault.run`` and ``examples.vault.traffic`` from the source checkout."""
    if not (ROOT / "examples" / "vault" / "run.py").is_file():
        raise DemoError(
            f"the vault example is not beside this feedbot ({ROOT / 'examples'} is missing): "
            "run the demo from a source checkout, installed with pip install -e '.[demo]'"
        )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return (
            importlib.import_module("examples.vault.run"),
            importlib.import_module("examples.vault.traffic"),
        )
    except ImportError as exc:
        raise DemoError(f"{exc}: install the demo extra: pip install -e '.[demo]'") from None


class Demo:
    """One run of the demo.

    Args:
        options: scale, directory and Slack settings.
        progress: where the commentary goes.
    """

    def __init__(self, options: Options, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self._run, self._traffic_module = vault_modules()
        self._vault_db = f"sqlite:///{options.workdir / 'vault.db'}"

    def run(self) -> Outcome:
        """Run the whole story; every process and thread is stopped when this returns."""
        with contextlib.ExitStack() as stack:
            feedbot = stack.enter_context(self._feedbot())
            self._announce(feedbot)
            v1 = stack.enter_context(self._start_vault(OLD, feedbot))
            self._deploy(feedbot, OLD, [])
            self._traffic(OLD, v1.api_url, range(self._batches))
            v2 = stack.enter_context(self._start_vault(NEW, feedbot))
            changes = release_diff.release_changes(ROOT, "examples/vault/v1", "examples/vault/v2")
            release_id = self._deploy(feedbot, NEW, release_diff.changes_json(changes))
            self.progress.info(f"traffic switches to {NEW}; stopping {OLD} (it flushes its spans)")
            v1.stop()
            self._checks_with_traffic(feedbot, release_id, v2.api_url)
            self._wait_for_outbox(feedbot, release_id)
            self.progress.step("stopping the vault and feedbot")
        return self._outcome(feedbot, release_id)

    def _feedbot(self) -> LocalFeedbot:
        options = self.options
        plan = HostPlan(
            options.workdir,
            options.scale.after,
            options.slack_env,
            owner=options.slack_to,
            slack_api_url=options.slack_api_url,
        )
        console = (options.workdir / "console-notifier.txt").open("w")
        return LocalFeedbot(
            plan, wrap=lambda inner: RecordingNotifier(inner, self._on_delivered), console=console
        )

    def _announce(self, feedbot: LocalFeedbot) -> None:
        after = ", ".join(f"+{format_duration(a)}" for a in self.options.scale.after)
        out = "Slack" if feedbot.settings.slack.bot_token else "the console notifier"
        self.progress.step(f"feedbot is up on {feedbot.url}")
        self.progress.info(
            f"SQLite + embedded trace store in {self.options.workdir}; messages go to {out}"
        )
        self.progress.info(f"checks after each deploy at {after} (in production: +15m … +24h)")
        self.progress.info(
            "N+1 threshold lowered from 50 ms to 1 ms in total: the vault's SQLite answers in "
            "~0.1 ms per query, a networked database in ~1 ms"
        )
        self.progress.info(
            "warm-up exclusion off: in production the first 5 min of a new instance are left out "
            "of latency when slower than its later spans; here the checks run within the first "
            "minute"
        )

    def _start_vault(self, version: str, feedbot: LocalFeedbot) -> Any:
        self.progress.step(f"starting the vault {version} (rates service + API, OTLP → feedbot)")
        logs = self.options.workdir / f"vault-{version}"
        logs.mkdir(exist_ok=True)
        try:
            stack = self._run.start_stack(
                version,
                otlp_endpoint=feedbot.url + "/v1/traces",
                database_url=self._vault_db,
                workdir=logs,
            )
        except self._run.StackError as exc:
            raise DemoError(f"the vault {version} did not start: {exc}") from None
        self.progress.info(f"vault {version} API on {stack.api_url} (logs in {logs})")
        return stack

    def _deploy(self, feedbot: LocalFeedbot, version: str, changes: list[dict[str, Any]]) -> int:
        doc = deploy_document(version, changes, self.options.slack_to)
        body = json.dumps(doc).encode()
        url = feedbot.url + WEBHOOK_PATH
        with httpx.Client(timeout=10) as client:
            response = post_with_retries(
                client, url, body, feedbot.secret, stderr=self.progress.stream
            )
        if response is None or response.status_code != 202:
            answer = "no answer" if response is None else f"{response.status_code} {response.text}"
            raise DemoError(f"POST {url}: {answer}")
        release_id = int(response.json()["release_id"])
        named = sum(len(c.get("functions", [])) for c in changes)
        what = f", {len(changes)} files / {named} functions changed" if changes else ""
        self.progress.step(f"deploy {version} registered via signed webhook{what}")
        self.progress.info(f"POST {WEBHOOK_PATH} (X-Feedbot-Signature) → release {release_id}")
        for change in changes:
            for function in change.get("functions", []):
                self.progress.info(f"changed: {function}", "dim")
        return release_id

    @property
    def _batches(self) -> int:
        return -(-self.options.scale.requests // self.options.scale.batch)

    def _traffic(
        self, version: str, api_url: str, batches: range, until: float | None = None
    ) -> None:
        scale = self.options.scale
        requests = min(len(batches) * scale.batch, scale.requests - batches.start * scale.batch)
        pace = Pace(requests, scale.batch, self.options.seed + batches.start, scale.concurrency)
        self.progress.step(f"production traffic on {version}: {requests} requests")

        def report(sent: Sent) -> None:
            self.progress.info(f"{version}: {sent.total}/{requests} requests sent")

        sent = send(self._traffic_module, api_url, pace, until=until, on_batch=report)
        self.progress.info(_mix(sent), "dim")

    def _checks_with_traffic(self, feedbot: LocalFeedbot, release_id: int, api_url: str) -> None:
        """Before each check, a share of the traffic; then wait for the check to finish.

        The traffic stops ``EXPORT_LAG_S`` before the check is due, so the check sees its spans
        and does not run while spans are still being written.
        """
        looks = len(self.options.scale.after)
        for look in range(looks):
            batches = range(self._batches * look // looks, self._batches * (look + 1) // looks)
            due = self._due(feedbot, release_id)[look]
            until = time.monotonic() + due - EXPORT_LAG_S
            self._traffic(NEW, api_url, batches, until)
            self._wait_for_check(feedbot, release_id, look)

    def _due(self, feedbot: LocalFeedbot, release_id: int) -> list[float]:
        """Seconds until each check of the release is due, in due order."""
        now = feedbot.runtime.clock.now()
        with feedbot.runtime.sessions() as session:
            checks = queries.release_checks(session, release_id)
            return [(c.due_at - now).total_seconds() for c in checks]

    def _wait_for_check(self, feedbot: LocalFeedbot, release_id: int, look: int) -> None:
        offset = format_duration(self.options.scale.after[look])
        deadline = time.monotonic() + self.options.scale.after[-1].total_seconds() + CHECK_GRACE_S
        state, last_note = "", 0.0
        while True:
            with feedbot.runtime.sessions() as session:
                check = list(queries.release_checks(session, release_id))[look]
                now_state, due = check.state, check.due_at
            if now_state != state:
                state = now_state
                self.progress.info(f"check +{offset}: {state}", "yellow")
            if state in ("done", "failed"):
                return
            wait = (due - feedbot.runtime.clock.now()).total_seconds()
            if state == "pending" and wait > 0 and time.monotonic() - last_note >= 4:
                self.progress.info(f"check +{offset} is due in {wait:.0f}s")
                last_note = time.monotonic()
            if time.monotonic() > deadline:
                raise DemoError(f"the +{offset} check of release {release_id} did not finish")
            time.sleep(0.25)

    def _wait_for_outbox(self, feedbot: LocalFeedbot, release_id: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with feedbot.runtime.sessions() as session:
                ids = [c.id for c in queries.release_checks(session, release_id)]
                keys = [
                    f"release:{release_id}:{kind}:{i}" for i in ids for kind in ("check", "status")
                ]
                rows = [queries.delivery_by_key(session, key) for key in keys]
                if all(r is not None and r.state in ("sent", "failed") for r in rows):
                    return
            time.sleep(0.3)
        raise DemoError(f"the messages of release {release_id} were not all sent within 30s")

    def _on_delivered(self, delivered: Delivered) -> None:
        first = delivered.message.text.splitlines()[0] if delivered.message.text else ""
        what = "status updated" if delivered.updated else "message sent"
        self.progress.info(f"✉ {what} to {delivered.receipt.channel}: {first}", "magenta")

    def _outcome(self, feedbot: LocalFeedbot, release_id: int) -> Outcome:
        with feedbot.runtime.sessions() as session:
            checks = queries.release_checks(session, release_id)
            reports = [dict(c.result["report"]) for c in checks if c.result]
        return Outcome(
            release_id,
            feedbot.notifier.delivered,
            reports,
            feedbot.settings.database_url,
            self.options.slack_to or "console",
        )


def deploy_document(
    version: str, changes: list[dict[str, Any]], slack: str | None
) -> dict[str, Any]:
    """The generic deploy document for ``version`` of the vault."""
    author: dict[str, str] = {"name": "Griphook", "github": "griphook"}
    doc: dict[str, Any] = {
        "service": SERVICE,
        "version": version,
        "environment": "production",
        "author": author,
        "title": TITLES[version],
    }
    if changes:
        doc["changes"] = changes
    return doc


def _mix(sent: Sent) -> str:
    return ", ".join(f"{endpoint}: {n}" for endpoint, n in sent.by_endpoint.most_common())
