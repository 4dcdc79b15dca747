"""Draw the README's pictures of a release page and an App Home: ``python docs/pictures.py``.

Both come from the vault demo's recorded 2.0.0 report (``tests/data``), rendered by the same
code feedbot serves and publishes, and photographed by headless Chromium; the release page is
cut after its first piece of evidence. Needs Pillow and /usr/bin/chromium (with an emoji font,
``fonts-noto-color-emoji``, for the App Home's verdicts).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

from feedbot.demo.preview import page
from feedbot.demo.recorder import Delivered
from feedbot.digest import pages
from feedbot.digest.home import HomeRelease, OwnedService, home_view
from feedbot.notify.base import Message, Receipt

ROOT = Path(__file__).parent.parent
SITE = "https://feedbot.example.com"
HEADLINE = "`POST /vaults/{vault_id}/items` is 3.1× slower: 19 → 58 ms at the median."


def release_html(report: dict[str, object], deployed: datetime) -> str:
    facts = pages.ReleaseFacts(
        2,
        "vault-service",
        "2.0.0",
        "production",
        deployed,
        commit="9f4c2e1a7b3d5f60",
        title="Seal every deposit with a goblin seal",
        url="https://github.com/acme/vault/pull/142",
        author="Bill Weasley",
        features=("sealed-deposits",),
        thread="https://slack.com/archives/D1/p1",
    )
    offsets = (("+30s", 0.5), ("+15m", 15), ("+1h", 60), ("+4h", 240), ("+24h", 1440))
    checks = [
        pages.CheckRow(
            label,
            deployed + timedelta(minutes=minutes),
            "done" if minutes < 1440 else "pending",
            headline=HEADLINE if minutes < 1440 else None,
        )
        for label, minutes in offsets
    ]
    return pages.release_page(
        facts,
        report,
        checks=checks,
        ui_url="https://jaeger.example.com",
        service_link=f"{SITE}/services/vault-service",
        now=deployed + timedelta(hours=4, minutes=2),
    )


def home_html(report: dict[str, object], deployed: datetime) -> str:
    quiet = {
        "verdict": "neutral",
        "version": "1.0.0",
        "baseline_version": "0.9.0",
        "groups": [{"span": "GET /vaults", "kind": "SERVER", "candidate": {"count": 1}}],
        "findings": [],
    }
    releases = [
        HomeRelease(
            2,
            "vault-service",
            "2.0.0",
            "production",
            deployed,
            report=report,
            link="https://slack.com/archives/D1/p1",
            page=f"{SITE}/releases/2?t=…",
        ),
        HomeRelease(
            1,
            "vault-service",
            "1.0.0",
            "production",
            deployed - timedelta(days=1),
            report=quiet,
            link="https://slack.com/archives/D1/p0",
            page=f"{SITE}/releases/1?t=…",
        ),
    ]
    owned = [OwnedService("vault-service", "#vault", "2.0.0 · 🔴 regressed")]
    view = home_view("U0BILL", releases, owned, meeting=f"{SITE}/meeting?t=…")
    message = Message("home", "U0BILL", "Home", view["blocks"])
    html = page(
        [Delivered(Receipt("D1", "1.0"), message)], title="feedbot · Home tab", recipient="Bill"
    )
    return html.replace(
        "<p>Direct messages to <b>Bill</b>, as delivered.</p>",
        "<p>The App Home of <b>Bill</b>, as <code>views.publish</code> sends it.</p>",
    )


def photograph(html: str, out: Path, width: int, cut: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, png = Path(tmp) / "page.html", Path(tmp) / "page.png"
        source.write_text(html, encoding="utf-8")
        subprocess.run(
            [
                "/usr/bin/chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile",
                f"--screenshot={png}",
                f"--window-size={width},3200",
                source.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        image = Image.open(png).convert("RGB")
        image.crop((0, 0, width, cut or _content_bottom(image))).save(out, optimize=True)


def _content_bottom(image: Image.Image) -> int:
    """The last row that is not the page's background, and a margin."""
    width, height = image.size
    background = image.getpixel((width - 1, height - 1))
    for y in range(height - 1, 0, -1):
        if any(image.getpixel((x, y)) != background for x in range(0, width, 3)):
            return min(height, y + 24)
    return height


def main() -> None:
    report = json.loads((ROOT / "tests/data/vault-2.0.0-report.json").read_text())
    start = datetime.fromisoformat(report["window"]["candidate"]["start"])
    deployed = start.replace(second=0, microsecond=0)
    photograph(release_html(report, deployed), ROOT / "docs/release-page.png", 900, cut=1230)
    photograph(home_html(report, deployed), ROOT / "docs/app-home.png", 760)


if __name__ == "__main__":
    main()
