"""The release page in a real browser: headless Chromium at a phone's and a desktop's width.

The page is served by feedbot over HTTP (a real release, checked by the runtime, its chart in
the thread) and opened by Chromium with the signed link feedbot would put in Slack. What the
browser built (``--dump-dom``) must hold the story, the evidence, the chart and the timeline,
without a script. Its HTML is then laid out by Chromium in a frame 390 px wide (a phone; a
headless window is never narrower than 500 px) and 1280 px wide: nothing may be wider than the
screen, and both are photographed.
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Iterator
from html import escape
from pathlib import Path

import httpx
import pytest

from feedbot.digest.links import PageLinks
from feedbot.runtime import Runtime
from feedbot.web.app import create_app
from tests.fakes.slack_api import FakeSlackAPI
from tests.functional.test_pages_http import PAGE_SECRET, build, checked_release, local
from tests.functional.test_story_screenshot import chromium
from tests.servers import AppServer

PHONE, DESKTOP = 390, 1280


@pytest.fixture
def runtime(fresh_database_url: str, slack_api: FakeSlackAPI) -> Iterator[Runtime]:
    rt = build(fresh_database_url, slack_api, {"page_secret": PAGE_SECRET})
    yield rt
    rt.engine.dispose()


def browse(url: str, tmp: Path, width: int, *extra: str, height: int = 1000) -> str:
    """Run headless Chromium on ``url``; returns its stdout (the DOM with ``--dump-dom``)."""
    profile = tmp / f"profile-{width}-{len(extra)}"
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            *extra,
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
        text=True,
    )
    return done.stdout


def png_size(png: Path) -> tuple[int, int]:
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


def framed(html: str, tmp: Path, width: int, height: int, probe: bool) -> str:
    """A host page showing ``html`` in an iframe exactly ``width`` px wide: headless Chromium
    lays a window out at least 500 px wide, narrower than a phone's screen would never be seen.
    With ``probe``, a script writes the framed page's scrollWidth, scrollHeight and the widest
    image's right edge into the host's DOM (the page itself has no script)."""
    script = (
        "<script>const f = document.getElementById('f'); f.addEventListener('load', () => {"
        " const d = f.contentDocument.documentElement; const right = Math.max(0,"
        " ...[...f.contentDocument.images].map(i => i.getBoundingClientRect().right));"
        " const main = f.contentDocument.querySelector('main').getBoundingClientRect().width;"
        " document.body.dataset.layout = [d.scrollWidth, d.scrollHeight, Math.round(right),"
        " Math.round(main)]"
        ".join(','); });</script>"
    )
    host = tmp / f"host-{width}-{int(probe)}.html"
    host.write_text(
        '<!doctype html><html><body style="margin:0">'
        f'<iframe id="f" style="border:0;display:block;width:{width}px;height:{height}px" '
        f'srcdoc="{escape(html, quote=True)}"></iframe>{script if probe else ""}</body></html>',
        encoding="utf-8",
    )
    return host.as_uri()


def laid_out(html: str, tmp: Path, width: int) -> tuple[int, int, int, int]:
    """The page laid out by Chromium at ``width``: scrollWidth, scrollHeight, the images'
    right edge, the text column's width."""
    dom = browse(framed(html, tmp, width, 800, probe=True), tmp, max(width, 500), "--dump-dom")
    found = re.search(r'data-layout="(\d+),(\d+),(\d+),(\d+)"', dom)
    assert found, "Chromium did not lay the page out"
    return int(found[1]), int(found[2]), int(found[3]), int(found[4])


# One database is enough: what is tested is the page in the browser, not the store.
@pytest.mark.parametrize("fresh_database_url", ["sqlite"], indirect=True)
def test_the_release_page_reads_on_a_phone_and_a_desktop(
    runtime: Runtime, slack_api: FakeSlackAPI, tmp_path: Path
) -> None:
    with AppServer(create_app(runtime)) as server, httpx.Client(base_url=server.url) as client:
        checked_release(runtime, client)
        link = local(PageLinks.from_settings(runtime.settings).release(2, runtime.clock.now()))
        url = server.url + link

        # What the browser built from feedbot's answer.
        dom = browse(url, tmp_path, PHONE, "--dump-dom")
        assert '<h1 id="title">vault-service 1.4.2 → production</h1>' in dom
        assert re.search(r'id="verdict">\s*regressed', dom)
        story = dom.split('id="story"', 1)[1].split('id="charts"', 1)[0]
        assert "slower" in story and "<code>GET /vaults/{id}</code>" in story
        assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="GET /vaults/\{id\}', dom)
        evidence = dom.split('id="evidence"', 1)[1].split('id="groups"', 1)[0]
        assert "Mann-Whitney" in evidence and "(95%)" in evidence
        assert len(re.findall(r'<td class="name">', dom)) == 2  # both span groups
        assert re.search(r'<li class="done"><strong>\+15m</strong>', dom)
        assert "<script" not in dom

        # Without the token the browser sees the refusal, not the release.
        refused = browse(server.url + link.split("?")[0], tmp_path, PHONE, "--dump-dom")
        assert "Link not valid" in refused and "vault-service 1.4.2" not in refused

        html = client.get(link).text
        columns = {}
        for width in (PHONE, DESKTOP):
            scroll_width, height, image_right, columns[width] = laid_out(html, tmp_path, width)
            assert scroll_width <= width, f"the page is wider than {width} px: {scroll_width}"
            assert image_right <= width
            png = tmp_path / f"release-{width}.png"
            host = framed(html, tmp_path, width, height, probe=False)
            browse(host, tmp_path, width, f"--screenshot={png}", height=height)
            assert png_size(png) == (width, height)
            assert png.stat().st_size > 30_000  # drawn, not blank
    # On a phone the text column is the screen; on a desktop it stops at a readable measure.
    assert columns[PHONE] == PHONE
    assert 600 < columns[DESKTOP] < 900


def test_the_readme_shows_a_release_page_and_an_app_home() -> None:
    root = Path(__file__).parent.parent.parent
    readme = (root / "README.md").read_text()
    for picture in ("docs/release-page.png", "docs/app-home.png"):
        assert (root / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({picture})" in readme
