"""The story as a developer sees it: the demo's HTML preview of a check reply, screenshotted.

A real report (the vault demo's 2.0.0 check, as ``feedbot report --format json`` writes it) is
rendered as the Slack reply, drawn by the demo's preview, and photographed by headless Chromium.
The layout facts checked are the ones a person notices first: the headline comes first, the
message is short, no statistics outside the details, and every button Slack would show is there.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from feedbot.demo.preview import page
from feedbot.demo.recorder import Delivered
from feedbot.digest.blocks import ReplyOptions, check_reply, details
from feedbot.notify.base import Message, Receipt

REPORT = Path(__file__).parent.parent / "data" / "vault-2.0.0-report.json"
CHROMIUM = "/usr/bin/chromium"
WIDTH = 900


def chromium() -> str:
    """Headless Chromium is required, not optional: without it the test fails and says so."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail(
            "headless Chromium is needed for the screenshot tests: install it "
            "(apt-get install chromium) so that /usr/bin/chromium exists"
        )
    return found


def screenshot(html_file: Path, png: Path, height: int) -> tuple[int, int]:
    """Photograph ``html_file`` at WIDTH × ``height``; returns the PNG's width and height."""
    subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
            f"--screenshot={png}",
            f"--window-size={WIDTH},{height}",
            html_file.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


def content_height(html_file: Path) -> int:
    """How tall Chromium lays the page out at WIDTH, in CSS pixels (its ``scrollHeight``)."""
    probe = html_file.with_suffix(".probe.html")
    script = (
        "<script>window.addEventListener('load', () => "
        "{document.body.dataset.height = document.documentElement.scrollHeight;});</script>"
    )
    probe.write_text(html_file.read_text(encoding="utf-8") + script, encoding="utf-8")
    out = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--window-size={WIDTH},600",
            "--dump-dom",
            probe.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        text=True,
    ).stdout
    found = re.search(r'data-height="(\d+)"', out)
    assert found, "Chromium did not lay the page out"
    return int(found[1])


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return json.loads(REPORT.read_text())


def thread_page(report: dict[str, Any]) -> tuple[str, Any]:
    """The preview of a DM thread: the release's head and the +30s check's reply."""
    head = Receipt("D1", "1.0")
    options = ReplyOptions(
        heading="+30s check of vault-service 2.0.0 → production",
        ui_url="https://jaeger.example",
        release_id=2,
        check_id=4,
    )
    reply = check_reply(report, options)
    delivered = [
        Delivered(head, Message("release:2:parent", "U1", "🚀 vault-service 2.0.0 → production")),
        Delivered(
            Receipt("D1", "2.0"),
            Message("release:2:check:4", "U1", reply.text, reply.blocks, thread=head),
        ),
    ]
    return page(delivered, title="feedbot: vault-service 2.0.0", recipient="you"), reply


def test_a_check_reply_reads_headline_first_and_fits_a_screen(
    report: dict[str, Any], tmp_path: Path
) -> None:
    html, reply = thread_page(report)
    html_file = tmp_path / "reply.html"
    html_file.write_text(html, encoding="utf-8")
    height = content_height(html_file)
    # The thread is short: about a phone screen, not a wall (the reply was ~2,400 px before).
    assert 300 < height < 1000, height
    png = tmp_path / "reply.png"
    assert screenshot(html_file, png, height) == (WIDTH, height)
    assert png.stat().st_size > 20_000  # something was drawn

    text = re.sub(r"<[^>]+>", "", html)
    after_head = text.split("🚀 vault-service 2.0.0 → production", 1)[1]
    # First the verdict and which check, then the headline: what changed for whom.
    headline = "POST /vaults/{vault_id}/items is 3.1× slower: 19 → 58 ms at the median."
    assert after_head.index("regressed") < after_head.index(headline)
    assert after_head.index(headline) < after_head.index("goblin_seal adds 26 ms")
    for statistics in ("Mann-Whitney", "p=", "q=", "95% CI", "Hodges-Lehmann"):
        assert statistics not in html  # the evidence is one click away, not here
    # Told once: the handler's slowdown is folded into the route's story.
    assert "vault.deposits.deposit got slower" not in text
    assert text.count("is 3.1× slower") == 1
    # Every button Slack would show.
    labels = [b["text"]["text"] for b in _buttons(reply.blocks)]
    assert labels == ["Expected", "Details", "Open traces", "Mute vault-service for 24h"]
    assert all(f">{label}<" in html for label in labels)


def test_the_details_carry_the_statistics(report: dict[str, Any], tmp_path: Path) -> None:
    out = details(report, "+30s check of vault-service 2.0.0 → production")
    delivered = [Delivered(Receipt("D1", "3.0"), Message("details", "U1", out.text, out.blocks))]
    html = page(delivered, title="details", recipient="you")
    html_file = tmp_path / "details.html"
    html_file.write_text(html, encoding="utf-8")
    png = tmp_path / "details.png"
    assert screenshot(html_file, png, 1600) == (WIDTH, 1600)
    assert content_height(html_file) > 500  # the evidence is long: that is why it is apart
    assert "Mann-Whitney" in html and "q=" in html and "95% CI" in html
    assert "Samples and windows: baseline 1.0.0" in html


def _buttons(blocks: Any) -> list[dict[str, Any]]:
    out = []
    for block in blocks:
        for element in [block.get("accessory") or {}, *block.get("elements", [])]:
            if element.get("type") == "button":
                out.append(element)
    return out


def test_the_readme_picture_is_the_story_of_the_demo() -> None:
    """docs/story.png is there for the README, and the README shows it."""
    root = Path(__file__).parent.parent.parent
    png = root / "docs" / "story.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "docs/story.png" in (root / "README.md").read_text()
