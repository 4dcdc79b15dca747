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
import hashlib
import hmac
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from feedbot import __version__
from feedbot.clock import Clock, SystemClock
from feedbot.errors import GitError
from feedbot.releases import gitdiff
from feedbot.releases.event import Change
from feedbot.releases.sources._common import CHANGES_MAX, LIST_MAX, TITLE_MAX
from feedbot.retry import backoff

SECRET_ENV = "FEEDBOT_WEBHOOK_SECRET"
URL_ENV = "FEEDBOT_URL"
PATH = "/webhooks/deploy"
TRIES = 3
BACKOFF = 1.0  # seconds before the second try; doubled before each later one

# A commit that does not exist: what GitHub sends as "before" for a branch's first push.
_NULL_SHA = re.compile(r"0{40}|0{64}")
_GITHUB_NOREPLY = re.compile(r"(?:\d+\+)?([A-Za-z0-9-]+)@users\.noreply\.github\.com", re.I)

Document = dict[str, Any]


@dataclass(frozen=True)
class GitFacts:
    """What the checkout says about the deployed range."""

    commit: gitdiff.CommitInfo
    previous_commit: str | None
    repository: str | None
    changes: tuple[Change, ...]


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
        return _send(client, _endpoint(url), body, secret or "", (stdout, stderr), sleep)


def _setup_problems(url: str, secret: str | None) -> list[str]:
    problems = []
    if not url:
        problems.append(f"no feedbot URL: pass --url or set {URL_ENV}")
    elif not url.lower().startswith(("https://", "http://")):
        problems.append(f"--url: expected an http(s) URL, not {url!r}")
    if not secret:
        problems.append(f"{SECRET_ENV} is not set: it must hold feedbot's webhooks.secret")
    return problems


def gather(repo: Path, since: str | None, *, stderr: TextIO) -> GitFacts:
    """Read the deployed range from the checkout.

    Args:
        repo: the git checkout.
        since: the previous deploy's revision; None (or the all-zero SHA) means ``HEAD~1``.
        stderr: where to say which range was used when it was guessed.

    Raises:
        GitError: ``since`` names no commit here, or git failed.
    """
    head = gitdiff.commit_info(repo, "HEAD")
    if since is None or _NULL_SHA.fullmatch(since):
        since = _parent(repo, stderr)
    changes = gitdiff.changes_between(repo, since, head.sha) if since else []
    previous = gitdiff.resolve_commit(repo, since) if since else None
    return GitFacts(head, previous, gitdiff.remote_repository(repo), tuple(changes))


def _parent(repo: Path, stderr: TextIO) -> str | None:
    try:
        parent = gitdiff.resolve_commit(repo, "HEAD~1")
    except GitError:
        stderr.write("note: no --since and HEAD has no parent here; sending no changes\n")
        return None
    stderr.write(f"note: no --since given; describing HEAD~1..HEAD ({parent[:12]}..HEAD)\n")
    return parent


def build_document(
    args: argparse.Namespace, facts: GitFacts, *, now: datetime, stderr: TextIO
) -> Document:
    """The generic deploy document, leaving out what is unknown and capping list lengths.

    Args:
        args: the parsed options (service, version, environment, title, pr_url, feature,
            author_slack).
        facts: what the checkout said.
        now: the deploy time, an aware datetime.
        stderr: where to say when the changes had to be cut to the server's limits.
    """
    head = facts.commit
    doc: Document = {
        "service": args.service,
        "version": args.version,
        "environment": args.environment,
        "commit": head.sha,
        "previous_commit": facts.previous_commit,
        "repository": facts.repository,
        "author": _author(head, args.author_slack),
        "title": (args.title or head.subject or "")[:TITLE_MAX] or None,
        "url": args.pr_url,
        "features": list(dict.fromkeys(args.feature)) or None,
        "changes": _changes_json(facts.changes, stderr) or None,
        "deployed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return {key: value for key, value in doc.items() if value is not None}


def _author(head: gitdiff.CommitInfo, slack: str | None) -> dict[str, str]:
    github = _GITHUB_NOREPLY.fullmatch(head.author_email or "")
    author = {
        "email": head.author_email,
        "name": head.author_name,
        "github": github[1] if github else None,
        "slack": slack,
    }
    return {key: value for key, value in author.items() if value}


def _changes_json(changes: tuple[Change, ...], stderr: TextIO) -> list[dict[str, Any]]:
    # The server refuses (422) more than CHANGES_MAX changes or LIST_MAX items in one list;
    # a huge merge is better registered with its first changes than not at all.
    cut = len(changes) > CHANGES_MAX
    found: list[dict[str, Any]] = []
    for change in changes[:CHANGES_MAX]:
        cut = cut or len(change.functions) > LIST_MAX or len(change.lines) > LIST_MAX
        found.append(change_json(change))
    if cut:
        stderr.write(f"note: changes cut to {CHANGES_MAX} files and {LIST_MAX} items each\n")
    return found


def change_json(change: Change) -> dict[str, Any]:
    """One change as the generic document writes it, each list cut to the server's limit.

    ``traced`` keeps only the functions that survived the cut: the server refuses a traced
    name that is not among the change's functions.
    """
    item: dict[str, Any] = {"file": change.file}
    functions = list(change.functions[:LIST_MAX])
    if functions:
        item["functions"] = functions
    if change.lines:
        item["lines"] = [list(pair) for pair in change.lines[:LIST_MAX]]
    traced = [name for name in change.traced if name in functions]
    if traced:
        item["traced"] = traced
    return item


def sign(body: bytes, secret: str) -> str:
    """The ``X-Feedbot-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _endpoint(url: str) -> str:
    return url.rstrip("/") + PATH


def _dry_run(doc: Document, url: str, body: bytes, problems: list[str], stdout: TextIO) -> int:
    stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    target = _endpoint(url) if url else f"<no URL: pass --url or set {URL_ENV}>"
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
    stderr.write(_error_text(response) + "\n")
    if response.status_code == 401:
        stderr.write(f"hint: {SECRET_ENV} must equal feedbot's webhooks.secret\n")
    return 1


def post_with_retries(
    client: httpx.Client,
    url: str,
    body: bytes,
    secret: str,
    *,
    stderr: TextIO,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response | None:
    """POST the signed body, trying again on connection errors and 5xx answers.

    Every try carries the same ``X-Feedbot-Delivery`` id, so a try whose answer was lost
    cannot register the deploy twice.

    Args:
        client: the HTTP client.
        url: the full webhook URL.
        body: the exact bytes to send and sign.
        secret: the HMAC secret.
        stderr: where each failed try is reported.
        sleep: how to wait between tries.

    Returns:
        The last answer (2xx, 4xx, or the last 5xx), or None when no try got one.
    """
    headers = {
        "Content-Type": "application/json",
        "X-Feedbot-Signature": sign(body, secret),
        "X-Feedbot-Delivery": uuid.uuid4().hex,
    }
    response: httpx.Response | None = None
    for attempt in range(1, TRIES + 1):
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            response, why = None, f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 500:
                return response
            why = f"{response.status_code} {_error_text(response)}"
        if attempt < TRIES:
            delay = backoff(BACKOFF, attempt)
            stderr.write(f"try {attempt}/{TRIES} failed ({why}); again in {delay:g}s\n")
            sleep(delay)
    return response


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


def _error_text(response: httpx.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return response.text.strip()[:2000] or response.reason_phrase
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    return json.dumps(answer)[:2000]
