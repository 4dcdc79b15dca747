"""``GET /releases/<id>``, ``/services/<name>``, ``/meeting``: the pages Slack links to.

Each request's token (``?t=``, see :mod:`feedbot.digest.links`) is checked against the path
before anything is read: 403 with a sentence saying why (no token, tampered, expired, or no
``web.page_secret`` configured). With ``web.page_links: open`` no token is asked: the team's
proxy logs people in. The pages are HTML rendered on the server (:mod:`feedbot.digest.pages`).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, Path, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from feedbot.digest import links
from feedbot.runtime import Runtime
from feedbot.slack.pages import PageData

#: Headers every page answer carries: never cached by a proxy, never framed, no referrer
#: (the token would leak to a trace UI's logs).
_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
}


def mount_pages(app: FastAPI, runtime: Runtime) -> None:
    """Serve the release, service and meeting pages on ``app``."""
    data = PageData(sessions=runtime.sessions, settings=runtime.settings, clock=runtime.clock)
    web = runtime.settings.web

    def refused(path: str, token: str | None, query: dict[str, str]) -> HTMLResponse | None:
        if web.page_links == "open":
            return None
        if not web.page_secret:
            why = "pages are off: web.page_secret is not configured on this feedbot"
        else:
            signed = links.signed_path(path, query)
            why = links.verify(web.page_secret, signed, token, runtime.clock.now()) or ""
            if not why:
                return None
        return _page("Link not valid", why, 403)

    @app.get("/releases/{release_id}", response_class=HTMLResponse, include_in_schema=False)
    async def release_page(
        release_id: Annotated[int, Path(ge=1, le=2**62)],
        t: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HTMLResponse:
        if (answer := refused(f"/releases/{release_id}", t, {})) is not None:
            return answer
        body = await run_in_threadpool(data.release, release_id)
        if body is None:
            return _page("Not found", f"feedbot knows no release {release_id}.", 404)
        return HTMLResponse(body, headers=_HEADERS)

    @app.get("/services/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def service_page(
        name: Annotated[str, Path(min_length=1, max_length=200)],
        t: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HTMLResponse:
        if (answer := refused(f"/services/{quote(name, safe='')}", t, {})) is not None:
            return answer
        body = await run_in_threadpool(data.service, name)
        if body is None:
            return _page("Not found", f"feedbot knows no release of {name}.", 404)
        return HTMLResponse(body, headers=_HEADERS)

    @app.get("/meeting", response_class=HTMLResponse, include_in_schema=False)
    async def meeting_page(
        until: Annotated[str | None, Query(max_length=40)] = None,
        t: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HTMLResponse:
        query = {"until": until} if until is not None else {}
        if (answer := refused("/meeting", t, query)) is not None:
            return answer
        end = None
        if until is not None:
            try:
                end = datetime.strptime(until, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
            except ValueError:
                return _page("Bad request", "until: expected a time like 2026-12-07T09:00Z", 400)
        body = await run_in_threadpool(data.meeting, end)
        return HTMLResponse(body, headers=_HEADERS)


def _page(title: str, message: str, status: int) -> HTMLResponse:
    """A short HTML answer that says what went wrong, readable on a phone."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · feedbot</title></head>"
        '<body style="font:16px/1.5 sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem">'
        f'<h1>{html.escape(title)}</h1><p id="why">{html.escape(message)}</p></body></html>'
    )
    return HTMLResponse(body, status_code=status, headers=_HEADERS)
