"""Signed page links: bound to their path, refused when changed or expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feedbot.config import settings_from_mapping
from feedbot.digest.links import PageLinks, sign, signed_path, verify

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SECRET = "sixteen-chars-or-more"


def test_a_token_opens_its_path_until_it_expires() -> None:
    token = sign(SECRET, "/releases/7", int((NOW + timedelta(hours=1)).timestamp()))
    assert verify(SECRET, "/releases/7", token, NOW) is None
    assert verify(SECRET, "/releases/7", token, NOW + timedelta(hours=1)) is None
    later = verify(SECRET, "/releases/7", token, NOW + timedelta(hours=1, seconds=1))
    assert later is not None and "expired" in later
    assert "does not match" in str(verify(SECRET, "/releases/8", token, NOW))
    assert "does not match" in str(verify("another-secret-entirely", "/releases/7", token, NOW))
    assert "needs a link" in str(verify(SECRET, "/releases/7", None, NOW))
    assert "malformed" in str(verify(SECRET, "/releases/7", "x.y", NOW))
    assert "malformed" in str(verify(SECRET, "/releases/7", "9" * 40 + ".y", NOW))


def test_links_from_the_config() -> None:
    raw = {"public_url": "https://fb.example/", "web": {"page_secret": SECRET}}
    links = PageLinks.from_settings(settings_from_mapping(raw, {}))
    url = links.release(3, NOW)
    assert url is not None and url.startswith("https://fb.example/releases/3?t=")
    token = url.split("?t=")[1]
    assert verify(SECRET, "/releases/3", token, NOW + timedelta(days=29)) is None
    assert verify(SECRET, "/releases/3", token, NOW + timedelta(days=31)) is not None
    meeting = links.meeting(NOW, until=NOW)
    assert meeting is not None and "until=2026-12-07T09%3A00Z" in meeting
    assert signed_path("/meeting", {"until": "2026-12-07T09:00Z", "t": "x"}) == (
        "/meeting?until=2026-12-07T09%3A00Z"
    )
    service = links.service("billing api", NOW)
    assert service is not None and service.startswith("https://fb.example/services/billing%20api?")
    # No public_url, or signed links without a secret: no links at all.
    assert PageLinks.from_settings(settings_from_mapping({}, {})).release(1, NOW) is None
    no_secret = settings_from_mapping({"public_url": "https://fb.example"}, {})
    assert PageLinks.from_settings(no_secret).release(1, NOW) is None
