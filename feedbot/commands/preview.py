"""``feedbot preview``: before a deploy, what the changed functions do in production now.

CI runs it in the pull request's checkout::

    feedbot preview --since "$BASE_SHA" [--service vault-service] [--pr 17 --notify]

It reads ``since..HEAD`` with :mod:`feedbot.releases.gitdiff` (every language
:mod:`feedbot.releases.code` reads), queries the configured trace backend for the service's
recent window (``github.preview_window``, 7 days by default) and prints each changed function's
footprint and what to watch for. The service is ``--service``, else each service
``github.services`` maps the repository's changed files to (a section each), else the
repository's name. With ``--pr N`` and a GitHub token (``github.token`` or
``GITHUB_TOKEN``), it also keeps the pull request's one feedbot comment current; with
``--notify``, it sends the preview to the author's Slack DM through the outbox. Exit status: 0
printed (also when the comment failed: stderr says why), 1 the trace backend did not answer, 2 a
usage or configuration problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from feedbot.checks import preview
from feedbot.checks.preview_text import text_all
from feedbot.commands.options import add_config, settings_of
from feedbot.errors import BackendError, GitError
from feedbot.releases.event import Author
from feedbot.releases.gitdiff import (
    changes_between,
    commit_info,
    merge_base,
    remote_repository,
    resolve_commit,
)
from feedbot.releases.github_api import REPOSITORY
from feedbot.runtime import build_runtime
from feedbot.store import db


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``preview`` options on ``parser``."""
    add = parser.add_argument
    add(
        "--service",
        help="the service whose production spans to read, for every changed file (default: "
        "github.services' entries for the repository, else the repository's name)",
    )
    add(
        "--since",
        required=True,
        help="the base (branch or commit); the diff starts where the change forked from it",
    )
    add("--until", default="HEAD", help="the revision previewed (default: HEAD)")
    add("--environment", help="the spans' environment (default: the service's, else production)")
    add("--repo", type=Path, default=Path("."), help="the git checkout (default: .)")
    add("--repository", help="owner/name on GitHub (default: from the origin remote)")
    add("--pr", type=int, help="the pull request's number: keep its feedbot comment current")
    add("--author-github", help="the author's GitHub login (whose DM it is)")
    add("--author-slack", help="the author's Slack user id (U…)")
    add("--notify", action="store_true", help="send the preview to the author's Slack DM")
    add_config(parser)


def run(
    args: argparse.Namespace, *, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr
) -> int:
    """Preview ``since..until`` and print it; comment and DM as asked."""
    if args.pr is not None and args.pr <= 0:
        stderr.write("feedbot preview: --pr: expected a positive pull-request number\n")
        return 2
    settings = settings_of(args)
    try:
        head = resolve_commit(args.repo, args.until)
        # As GitHub diffs a pull request: from where it forked, so commits the base branch got
        # since then are not taken for this change's (reverted) functions.
        changes = changes_between(args.repo, merge_base(args.repo, args.since, head), head)
        info = commit_info(args.repo, head)
        repository = args.repository or remote_repository(args.repo)
    except GitError as exc:
        stderr.write(f"feedbot preview: --since/--until/--repo: {exc}\n")
        return 2
    if args.pr is not None and not repository:
        stderr.write("feedbot preview: --repository: needed with --pr (no origin remote)\n")
        return 2
    if args.repository and not REPOSITORY.match(args.repository):
        stderr.write(
            f"feedbot preview: --repository: expected owner/name, not {args.repository!r}\n"
        )
        return 2
    if not args.service and not repository:
        stderr.write("feedbot preview: --service: needed when the repository is unknown\n")
        return 2
    unmapped: tuple[str, ...] = ()
    if args.service:
        shares = [(args.service, tuple(changes))]
    else:
        shares, unmapped = preview.by_service(repository or "", changes, settings)
    requests = [
        preview.PreviewRequest(
            service=service,
            changes=share,
            commit=head,
            environment=args.environment,
            repository=repository,
            pull_request=args.pr,
            url=f"https://github.com/{repository}/pull/{args.pr}"
            if args.pr and repository
            else None,
            author=Author(
                github=args.author_github, slack=args.author_slack, email=info.author_email
            ),
        )
        for service, share in shares
    ]
    runtime = build_runtime(settings)
    try:
        db.migrate(runtime.engine)
        github = preview.github_client(settings) if args.pr is not None else None
        if args.pr is not None and github is None:
            stderr.write("feedbot preview: no github.token (or GITHUB_TOKEN): no PR comment\n")
        try:
            outcome = preview.run_all(
                sessions=runtime.sessions,
                backend=runtime.backend,
                settings=settings,
                requests=requests,
                now=runtime.clock.now(),
                github=github,
                notify=args.notify,
                unmapped=unmapped,
                where=(repository, args.pr) if repository and args.pr is not None else None,
            )
        except BackendError as exc:
            stderr.write(f"feedbot preview: the trace backend did not answer: {exc}\n")
            return 1
        stdout.write(text_all(outcome.previews, outcome.unmapped) + "\n")
        if outcome.comment is not None:
            stdout.write(f"pull-request comment {outcome.comment.action}: {outcome.comment.url}\n")
        if outcome.comment_error:
            stderr.write(
                f"feedbot preview: the pull-request comment failed: {outcome.comment_error}\n"
            )
        if args.notify:
            runtime.sender.send_due()
        return 0
    finally:
        runtime.close()
