"""``feedbot notify-deploy``: describe a deploy from the CI checkout and register it, signed.

CI runs it in the checkout it deployed from::

    FEEDBOT_WEBHOOK_SECRET=… feedbot notify-deploy --service vault-service --version 1.4.2 \\
        --since "$PREVIOUS_SHA" --url https://feedbot.example

It reads ``since..HEAD`` with :mod:`feedbot.releases.gitdiff`, builds the generic deploy document
(see :mod:`feedbot.releases.sources.generic`), signs the exact body bytes with HMAC-SHA256 and
POSTs them to ``<url>/webhooks/deploy``. The secret is read only from the environment so that it
never shows in a CI log. Exit status: 0 registered (or dry run), 1 the server refused or could not
be reached, 2 a usage problem (no secret, no URL, unknown revision).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import httpx

from feedbot import __version__
from feedbot.clock import Clock, SystemClock
from feedbot.errors import GitError
from feedbot.releases.deploy_client import (
    SECRET_ENV,
    TRIES,
    URL_ENV,
    Document,
    build_document,
    endpoint,
    error_text,
    gather,
    post_with_retries,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``notify-deploy`` options on ``parser``."""
    add = parser.add_argument
    add("--service", required=True, help="the service deployed (as in the feedbot config)")
    add("--version", required=True, help="the version deployed")
    add("--since", help="the previously deployed commit (default: HEAD~1)")
    add("--environment", default="production", help="default: production")
    add("--url", help=f"feedbot's base URL (default: ${URL_ENV})")
    add("--title", help="what the deploy is about (default: the HEAD commit's subject)")
    add("--pr-url", help="link to the pull request or merge request")
    add("--feature", action="append", default=[], help="a feature this deploy touches; repeat")
    add("--author-slack", help="the author's Slack user id (U…), to DM them directly")
    add("--repo", type=Path, default=Path("."), help="the git checkout (default: .)")
    add("--timeout", type=float, default=10.0, help="seconds per HTTP attempt (default: 10)")
    add("--dry-run", action="store_true", help="print the document and the URL; send nothing")


def run(
    args: argparse.Namespace,
    *,
    http: httpx.Client | None = None,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Describe the deploy and register it with feedbot.

    Args:
        args: the parsed ``notify-deploy`` options.
        http: the client to post with; by default one is built and closed here.
        stdout: where the result (or the dry-run document) goes.
        stderr: where notes and errors go.
        clock: where ``deployed_at`` comes from; the system clock by default.
        sleep: how to wait between tries.

    Returns:
        0 registered or dry run, 1 refused or unreachable, 2 a usage problem.
    """
    url, secret = (args.url or os.environ.get(URL_ENV) or "").strip(), os.environ.get(SECRET_ENV)
    problems = _setup_problems(url, secret)
    if problems and not args.dry_run:
        stderr.write("".join(f"feedbot notify-deploy: {p}\n" for p in problems))
        return 2
    try:
        facts = gather(args.repo, args.since, stderr=stderr)
    except GitError as exc:
        stderr.write(f"feedbot notify-deploy: --since/--repo: {exc}\n")
        return 2
    doc = build_document(args, facts, now=(clock or SystemClock()).now(), stderr=stderr)
    body = json.dumps(doc, separators=(",", ":")).encode()
    if args.dry_run:
        return _dry_run(doc, url, body, problems, stdout)
    with contextlib.ExitStack() as stack:
        client = http or stack.enter_context(
            httpx.Client(timeout=args.timeout, headers={"User-Agent": f"feedbot/{__version__}"})
        )
        return _send(client, endpoint(url), body, secret or "", (stdout, stderr), sleep)


def _setup_problems(url: str, secret: str | None) -> list[str]:
    problems = []
    if not url:
        problems.append(f"no feedbot URL: pass --url or set {URL_ENV}")
    elif not url.lower().startswith(("https://", "http://")):
        problems.append(f"--url: expected an http(s) URL, not {url!r}")
    if not secret:
        problems.append(f"{SECRET_ENV} is not set: it must hold feedbot's webhooks.secret")
    return problems


def _dry_run(doc: Document, url: str, body: bytes, problems: list[str], stdout: TextIO) -> int:
    stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    target = endpoint(url) if url else f"<no URL: pass --url or set {URL_ENV}>"
    stdout.write(f"dry run: would POST {len(body)} bytes to {target}; nothing sent\n")
    for problem in problems:
        stdout.write(f"dry run: a real run would stop here: {problem}\n")
    return 0


def _send(
    client: httpx.Client,
    url: str,
    body: bytes,
    secret: str,
    out: tuple[TextIO, TextIO],
    sleep: Callable[[float], None],
) -> int:
    stdout, stderr = out
    response = post_with_retries(client, url, body, secret, stderr=stderr, sleep=sleep)
    if response is None:
        stderr.write(f"feedbot notify-deploy: {url}: no answer after {TRIES} tries\n")
        return 1
    if response.is_success:
        stdout.write(_registered(response) + "\n")
        return 0
    stderr.write(f"feedbot notify-deploy: {url} answered {response.status_code}: ")
    stderr.write(error_text(response) + "\n")
    if response.status_code == 401:
        stderr.write(f"hint: {SECRET_ENV} must equal feedbot's webhooks.secret\n")
    return 1


def _registered(response: httpx.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return f"registered ({response.status_code}): {response.text.strip()}"
    if not isinstance(answer, dict) or "release_id" not in answer:
        return f"registered ({response.status_code}): {json.dumps(answer)}"
    how = "registered" if answer.get("created", True) else "already registered"
    checks = answer.get("checks")
    planned = f"; {checks} checks planned" if isinstance(checks, int) else ""
    return f"{how} as release {answer['release_id']}{planned}"
