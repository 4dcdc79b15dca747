"""``feedbot demo --quick --slack`` against the loopback fake Slack Web API.

The demo's feedbot posts through slack_sdk's ``WebClient`` with ``base_url`` pointed at the fake
(``--slack-api-url``): the developer's DM gets each release's parent message, the 2.0.0 thread
gets one reply per check, the parent's status is updated in place, and nothing is posted twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.fakes.slack_api import FakeSlackAPI

ROOT = Path(__file__).resolve().parents[2]
DEVELOPER = "U0DEVELOPER"


def test_the_demo_sends_the_dm_thread_to_slack(tmp_path: Path, slack_api: FakeSlackAPI) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FEEDBOT_"))}
    env["SLACK_BOT_TOKEN"] = "xoxb-demo"
    command = [sys.executable, "-m", "feedbot", "demo", "--quick", "--out", str(tmp_path)]
    command += ["--slack", "--slack-to", DEVELOPER, "--slack-api-url", slack_api.base_url]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"── DM from feedbot to {DEVELOPER}" in done.stdout
    assert "messages go to Slack" in done.stdout

    dm = slack_api.messages_in(DEVELOPER)
    parents = [m for m in dm if m.get("thread_ts", m["ts"]) == m["ts"]]
    (parent,) = [m for m in parents if "vault-service 2.0.0 → production" in m["text"]]
    assert len(parents) == 2  # 1.0.0's and 2.0.0's
    status = "Status: 🔴 regressed (all 2 checks ran)"
    assert status in json.dumps(parent, ensure_ascii=False)  # updated in place
    thread = slack_api.thread(DEVELOPER, parent["ts"])[1:]
    replies = [
        m["files"][0]["title"] if m.get("files") else m["text"].splitlines()[0] for m in thread
    ]
    # Each check's reply, then the charts of its changed routes (at most two); the deposit
    # route's chart follows the first reply.
    first, second = (
        "🔎 +15s check of vault-service 2.0.0 → production",
        "🔎 +30s check of vault-service 2.0.0 → production",
    )
    assert replies[0] == first and second in replies
    after_first = replies[1 : replies.index(second)]
    assert "POST /vaults/{vault_id}/items: 1.0.0 → 2.0.0" in after_first
    assert 1 <= len(after_first) <= 2 and len(replies) - replies.index(second) - 1 <= 2
    uploads = slack_api.uploads
    assert len(uploads) == len(replies) - 2
    assert len({u["name"] for u in uploads}) == len(uploads)  # none uploaded twice
    assert all(u["thread_ts"] == parent["ts"] and u["data"][:4] == b"\x89PNG" for u in uploads)

    posts = slack_api.calls_to("chat.postMessage")
    assert {p["channel"] for p in posts} <= {DEVELOPER, slack_api.dm_channel(DEVELOPER)}
    sent = Counter((p.get("thread_ts"), p["text"]) for p in posts)
    assert [key for key, n in sent.items() if n > 1] == []  # nothing posted twice
    updates = slack_api.calls_to("chat.update")
    assert updates and {u["ts"] for u in updates} <= {p["ts"] for p in parents}
