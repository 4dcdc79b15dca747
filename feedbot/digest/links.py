"""Links to feedbot's own pages, signed so that only who was sent one can open it. Pure.

A page link is ``<public_url><path>?t=<expires>.<signature>``: ``expires`` is a Unix time, the
signature an HMAC-SHA256 (:mod:`hmac`) of ``<path>\\n<expires>`` under ``web.page_secret``,
base64url without padding. It is bound to its path (a release's link opens that release, not
the next id), and :func:`verify` refuses it after ``expires`` or when one character differs.
With ``web.page_links: open`` (a proxy in front already logs people in) links carry no token
and pages ask for none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from feedbot.config import Settings

#: The query parameter that carries the token.
TOKEN = "t"


def sign(secret: str, path: str, expires: int) -> str:
    """The token of ``path`` valid until the Unix time ``expires``: ``<expires>.<signature>``."""
    mac = hmac.new(secret.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return f"{expires}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def verify(secret: str, path: str, token: str | None, now: datetime) -> str | None:
    """Why ``token`` does not open ``path`` at ``now``, or None when it does.

    Returns:
        A sentence for the person who followed the link (missing, malformed, tampered, expired).
    """
    if not token:
        return "this page needs a link from feedbot in Slack: the link carries a signed token"
    expires_text, _, _ = token.partition(".")
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
        return "the link's token is malformed: open the page from feedbot's message again"
    expected = sign(secret, path, int(expires_text))
    if not hmac.compare_digest(expected.encode(), token.encode()):
        return "the link's token does not match this page: open it from feedbot's message again"
    if int(expires_text) < now.timestamp():
        return "the link has expired: ask feedbot again (for example /feedback meeting)"
    return None


@dataclass(frozen=True)
class PageLinks:
    """Builds the links to feedbot's pages from the config.

    Attributes:
        base: ``public_url`` without its trailing slash; None: feedbot has no address to link.
        secret: ``web.page_secret``.
        signed: Whether links carry a token (``web.page_links: signed``).
        ttl: How long a link opens its page.
    """

    base: str | None
    secret: str | None = None
    signed: bool = True
    ttl: timedelta = timedelta(days=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> PageLinks:
        base = settings.public_url.rstrip("/") if settings.public_url else None
        return cls(
            base=base,
            secret=settings.web.page_secret,
            signed=settings.web.page_links == "signed",
            ttl=settings.web.link_ttl,
        )

    @property
    def enabled(self) -> bool:
        """Whether links can be made: an address, and a secret unless links are open."""
        return self.base is not None and (not self.signed or bool(self.secret))

    def url(self, path: str, now: datetime, **query: str) -> str | None:
        """The link to ``path`` (``/releases/12``), or None when links cannot be made."""
        if not self.enabled:
            return None
        params = dict(query)
        if self.signed:
            expires = int((now + self.ttl).timestamp())
            params[TOKEN] = sign(str(self.secret), signed_path(path, query), expires)
        tail = f"?{urlencode(params)}" if params else ""
        return f"{self.base}{path}{tail}"

    def release(self, release_id: int, now: datetime) -> str | None:
        return self.url(f"/releases/{release_id}", now)

    def service(self, name: str, now: datetime) -> str | None:
        return self.url(f"/services/{quote(name, safe='')}", now)

    def meeting(self, now: datetime, *, until: datetime | None = None) -> str | None:
        query = {"until": until.strftime("%Y-%m-%dT%H:%MZ")} if until is not None else {}
        return self.url("/meeting", now, **query)


def signed_path(path: str, query: dict[str, str]) -> str:
    """What a token signs: the path and the query parameters other than the token, sorted."""
    rest = sorted((k, v) for k, v in query.items() if k != TOKEN)
    return f"{path}?{urlencode(rest)}" if rest else path
