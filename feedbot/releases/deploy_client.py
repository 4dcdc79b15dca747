"""The client side of ``POST /webhooks/deploy``: a deploy described from a git checkout, signed.

:func:`gather` reads ``since..HEAD`` with :mod:`feedbot.releases.gitdiff`,
:func:`build_document` makes the generic deploy document (see
:mod:`feedbot.releases.sources.generic`), and :func:`post_with_retries` signs the exact body bytes
with HMAC-SHA256 and POSTs them. ``feedbot notify-deploy`` (:mod:`feedbot.commands.notify_deploy`)
and the demo use it.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

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


def endpoint(url: str) -> str:
    """The deploy webhook of the feedbot at ``url``."""
    return url.rstrip("/") + PATH


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
            why = f"{response.status_code} {error_text(response)}"
        if attempt < TRIES:
            delay = backoff(BACKOFF, attempt)
            stderr.write(f"try {attempt}/{TRIES} failed ({why}); again in {delay:g}s\n")
            sleep(delay)
    return response


def error_text(response: httpx.Response) -> str:
    """What a refusal says: its ``error`` field, else its text."""
    try:
        answer = response.json()
    except ValueError:
        return response.text.strip()[:2000] or response.reason_phrase
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    return json.dumps(answer)[:2000]
