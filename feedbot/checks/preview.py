"""The pull-request preview: a change's functions in production now, sent before the deploy.

:func:`gather` reads the service's spans of the recent window from the configured trace backend
(every version that served in it, through :class:`~feedbot.backends.base.VersionLister`), and
:func:`~feedbot.analysis.footprint.footprints` says per changed function how often it ran, how
fast, with what errors, under which routes, and what to watch for. :func:`record` keeps the
previewed functions (``previews``, for the deploy's check to link back: "previewed in PR #N")
and queues the author's Slack DM in the outbox, in one transaction, so it leaves exactly once
however often GitHub redelivers the webhook. :func:`comment` keeps the pull request's one
comment current through GitHub's REST API.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from feedbot.analysis.footprint import Footprint, footprints
from feedbot.analysis.reach import CodeReach, change_targets
from feedbot.backends.base import TraceBackend, VersionLister
from feedbot.checks import preview_text as render
from feedbot.config import Settings, repo_services
from feedbot.errors import BackendError, GitHubError
from feedbot.notify.outbox import enqueue
from feedbot.releases.event import Author, Change
from feedbot.releases.gitdiff import changes_from_diff
from feedbot.releases.github_api import Comment, GitHubClient
from feedbot.releases.owners import EMAIL_PREFIX, NOBODY, plan_owner
from feedbot.releases.sources.github import PullRequestEvent
from feedbot.spans.footprint import Footprint as SeenFootprint
from feedbot.spans.footprint import same_function
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.store import history, previews
from feedbot.store.models import Delivery

log = logging.getLogger(__name__)

#: The versions read for a preview, busiest first: enough for a rolling deploy's two.
MAX_VERSIONS = 3


@dataclass(frozen=True)
class PreviewRequest:
    """What to preview.

    Attributes:
        service: the service whose production spans are read.
        changes: the change's files and functions.
        commit: the previewed head commit.
        environment: the spans' environment (None: the service's configured one, else any).
        repository: ``owner/name``, for the comment and the link.
        pull_request: the pull request's number, when there is one.
        url: a link to it.
        author: who made the change (their DM).
    """

    service: str
    changes: tuple[Change, ...]
    commit: str
    environment: str | None = None
    repository: str | None = None
    pull_request: int | None = None
    url: str | None = None
    author: Author = field(default_factory=Author)

    @property
    def subject(self) -> str:
        if self.repository and self.pull_request is not None:
            return f"{self.repository}#{self.pull_request}"
        return f"{self.service} at {self.commit[:12]}"


def environment_of(request: PreviewRequest, settings: Settings) -> str | None:
    """The request's environment, else the service's configured one, else ``production``."""
    if request.environment:
        return request.environment
    conf = settings.services.get(request.service)
    return (conf.environment if conf is not None else None) or "production"


def gather(
    backend: TraceBackend,
    service: str,
    environment: str | None,
    *,
    end: datetime,
    window: timedelta,
) -> ReleaseData:
    """The service's spans in ``[end - window, end)``: the busiest versions' groups, together.

    A backend that cannot list versions (``otlp-file`` reading one version) gives nothing: the
    preview then says each function's footprint is unknown rather than guessing a version.
    """
    start = end - window
    if not isinstance(backend, VersionLister):
        log.info("preview: backend %s cannot list versions; no footprint", backend.name)
        return ReleaseData(groups=[], notes=(f"{backend.name} cannot list versions",))
    versions = backend.versions(service, start, end, environment)
    busiest = sorted(versions.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_VERSIONS]
    groups, traces = [], 0
    for version, _ in busiest:
        data = backend.collect(SpanQuery(service, version, start, end, environment))
        groups += data.groups
        traces += data.traces
    return ReleaseData(groups=groups, traces=traces)


def build(
    backend: TraceBackend,
    request: PreviewRequest,
    settings: Settings,
    *,
    now: datetime,
    sessions: sessionmaker[Session] | None = None,
) -> render.Preview:
    """The preview of ``request``: every changed function's footprint in the recent window.

    A function the code history (in ``sessions``) holds checks of in the window is described
    from them, as ``/feedback`` would; the trace store is read only for the others, and not
    at all when the history holds every changed function.
    """
    window = settings.github.preview_window
    environment = environment_of(request, settings)
    held = _held(sessions, request, environment or "production", since=now - window)
    targets = [t for change in request.changes for t in change_targets(change)]
    if targets and all(t.function in held for t in targets):
        data = ReleaseData(groups=[], notes=("from the code history",))
    else:
        data = gather(backend, request.service, environment, end=now, window=window)
    return render.Preview(
        service=request.service,
        environment=environment,
        window=window,
        footprints=tuple(footprints(request.changes, data, window=window, held=held)),
        subject=request.subject,
        url=request.url,
    )


def _held(
    sessions: sessionmaker[Session] | None,
    request: PreviewRequest,
    environment: str,
    *,
    since: datetime,
) -> dict[str, tuple[SeenFootprint, float]]:
    """Per changed function, the footprint the history's checks saw since ``since`` and its
    calls a day (functions it holds no calls of are left out)."""
    names = {f for change in request.changes for f in change.functions}
    if sessions is None or not names:
        return {}
    with sessions() as session:
        found = history.footprint_of(
            session, request.service, names, since=since, environment=environment
        )
    return {name: (h.footprint, h.per_day) for name, h in found.items() if h.footprint.calls}


def record(
    session: Session,
    request: PreviewRequest,
    preview: render.Preview,
    settings: Settings,
    *,
    now: datetime,
    notify: bool = True,
) -> Delivery | None:
    """Keep the previewed functions and queue the author's DM; the caller commits.

    Returns:
        The outbox row of the DM (an earlier one when this head was previewed before), or None
        when nobody could be found to send it to.
    """
    return record_all(session, [(request, preview)], settings, now=now, notify=notify)


def record_all(
    session: Session,
    built: Sequence[tuple[PreviewRequest, render.Preview]],
    settings: Settings,
    *,
    now: datetime,
    notify: bool = True,
    unmapped: Sequence[str] = (),
) -> Delivery | None:
    """:func:`record` for a change touching several services: a row each, one DM with a
    section per service."""
    for request, preview in built:
        _save(session, request, preview, now=now)
    if not notify or not built:
        return None
    first = built[0][0]
    recipient = author_dm(first.author, first.service, settings)
    if recipient is None:
        log.info("preview of %s: no Slack user known for its author", first.subject)
        return None
    shown = [preview for _, preview in built]
    return enqueue(
        session,
        key=_key(first, [request.service for request, _ in built]),
        kind="preview",
        recipient=recipient,
        text=render.text_all(shown, unmapped),
        blocks=render.blocks_all(shown, unmapped),
        now=now,
    )


def _save(
    session: Session, request: PreviewRequest, preview: render.Preview, *, now: datetime
) -> Any:
    return previews.save_preview(
        session,
        service=request.service,
        commit=request.commit,
        environment=preview.environment,
        repository=request.repository,
        pull_request=request.pull_request,
        url=request.url,
        functions=[stored(f) for f in preview.footprints],
        now=now,
    )


def author_dm(author: Author, service: str, settings: Settings) -> str | None:
    """The author's own Slack DM: their id, a ``people[]`` match, or a lookup by e-mail.

    Unlike a release's messages, a preview never falls back to the service's owners or channel:
    it is about a change nobody has shipped yet, for the person making it.
    """
    plan = plan_owner(author, service, settings)
    if plan.reason in ("author.slack", "people[]"):
        return plan.recipient
    if author.email:
        return f"{EMAIL_PREFIX}{author.email}|{NOBODY}"
    return None


def comment(
    session: Session,
    client: GitHubClient,
    request: PreviewRequest,
    preview: render.Preview,
    *,
    now: datetime,
) -> Comment | None:
    """Create or update the pull request's one feedbot comment; the caller commits.

    Raises:
        GitHubError: GitHub refused, or its rate limit asks for a longer wait than allowed.
    """
    return comment_all(session, client, [(request, preview)], now=now)


def comment_all(
    session: Session,
    client: GitHubClient,
    built: Sequence[tuple[PreviewRequest, render.Preview]],
    *,
    now: datetime,
    unmapped: Sequence[str] = (),
    where: tuple[str, int] | None = None,
) -> Comment | None:
    """:func:`comment` with a section per service, still the pull request's one comment.

    ``where`` (``owner/name``, number) names the pull request when no service was touched.
    """
    first = built[0][0] if built else None
    if first is not None and first.repository and first.pull_request is not None:
        where = (first.repository, first.pull_request)
    if where is None:
        return None
    body = render.markdown_all([preview for _, preview in built], unmapped)
    result = client.upsert_comment(where[0], where[1], body, render.MARKER)
    for request, preview in built:
        _save(session, request, preview, now=now).comment_id = result.id
    return result


def stored(f: Footprint) -> dict[str, Any]:
    """What a preview keeps of one function (JSON)."""
    return {
        "function": f.function,
        "file": f.file,
        "usage": f.usage,
        "calls": f.calls,
        "per_day": round(f.per_day, 3),
        "p50_ms": f.p50_ms,
        "p95_ms": f.p95_ms,
        "error_rate": f.error_rate,
        "exceptions": [list(e) for e in f.exceptions[:5]],
    }


def _key(request: PreviewRequest, services: Sequence[str] = ()) -> str:
    where = (
        f"{request.repository}#{request.pull_request}"
        if request.repository and request.pull_request is not None
        else "+".join(services or [request.service])
    )
    key = f"preview:{where}:{request.commit}"
    if len(key) <= 200:
        return key
    return "preview:" + hashlib.sha256(key.encode()).hexdigest()


#: How long before a deploy a preview still speaks for the functions it shipped.
PREVIEW_MAX_AGE = timedelta(days=30)


def previewed_in(rows: Sequence[Any], functions: Sequence[str]) -> list[tuple[Any, dict[str, Any]]]:
    """(preview row, stored function) for each of ``functions`` a row previewed; rows come newest
    first and each function is taken from the newest row that has it."""
    out: list[tuple[Any, dict[str, Any]]] = []
    taken: set[str] = set()
    for row in rows:
        for f in row.functions or ():
            name = f.get("function")
            if not name or name in taken:
                continue
            if any(same_function(name, fn) for fn in functions):
                taken.add(name)
                out.append((row, f))
    return out


def after_deploy(
    session: Session, release: Any, reach: Sequence[CodeReach], elapsed: timedelta
) -> str | None:
    """The check reply's paragraph on the release's previewed functions: then and now.

    Args:
        session: the store.
        release: the release being checked (its service, deploy time and changes).
        reach: the check's reach results for the changed functions.
        elapsed: how long the new version has been serving (the check's offset).

    Returns:
        The paragraph, or None when no preview made before the deploy named its functions.
    """
    functions = [f for change in release.changes for f in (change.functions or ())]
    if not functions:
        return None
    rows = previews.recent_previews(
        session,
        release.service,
        since=release.deployed_at - PREVIEW_MAX_AGE,
        until=release.deployed_at,
    )
    pairs = previewed_in(rows, functions)
    if not pairs:
        return None
    items = []
    for row, stored in pairs:
        subject = (
            f"PR #{row.pull_request}" if row.pull_request is not None else f"{row.commit[:12]}"
        )
        now = next(
            (r for r in reach if r.function and same_function(stored["function"], r.function)),
            None,
        )
        items.append(render.Then(subject, row.url, stored, now))
    return render.after_deploy(items, elapsed)


@dataclass(frozen=True)
class Outcome:
    """What one preview run did.

    Attributes:
        previews: one per service the change touches (none when it touches no mapped service).
        unmapped: changed files ``github.services`` gives to no service, left out.
    """

    previews: tuple[render.Preview, ...]
    delivery_id: int | None
    comment: Comment | None = None
    comment_error: str | None = None
    unmapped: tuple[str, ...] = ()

    @property
    def preview(self) -> render.Preview:
        """The first service's preview (the only one of a single-service repository)."""
        return self.previews[0]


def github_client(settings: Settings, *, http: Any = None) -> GitHubClient | None:
    """The GitHub client of ``github.token`` (or ``GITHUB_TOKEN``); None when none is set."""
    if not settings.github.token:
        return None
    return GitHubClient(settings.github.token, base_url=settings.github.api_url, http=http)


def run(
    *,
    sessions: sessionmaker[Session],
    backend: TraceBackend,
    settings: Settings,
    request: PreviewRequest,
    now: datetime,
    github: GitHubClient | None = None,
    notify: bool = True,
) -> Outcome:
    """Build the preview, keep it and queue the DM (committed), then update the PR comment.

    A GitHub failure (refused, rate-limited past the allowed wait) does not undo the DM: the
    outcome says what went wrong, and the next push updates the comment. A change without a
    function to preview (documentation, configuration) stays quiet, as Codecov's
    ``require_changes`` does: no DM, and no comment unless an earlier push made one, which is
    then brought up to date rather than left describing code the pull request no longer has.
    """
    return run_all(
        sessions=sessions,
        backend=backend,
        settings=settings,
        requests=[request],
        now=now,
        github=github,
        notify=notify,
    )


def run_all(
    *,
    sessions: sessionmaker[Session],
    backend: TraceBackend,
    settings: Settings,
    requests: Sequence[PreviewRequest],
    now: datetime,
    github: GitHubClient | None = None,
    notify: bool = True,
    unmapped: Sequence[str] = (),
    where: tuple[str, int] | None = None,
) -> Outcome:
    """:func:`run` for the services one change touches: one DM and one comment, a section each.

    Args:
        requests: one per service, all of the same change (commit, pull request, author).
        unmapped: the changed files no service claims (a note says how many).
        where: (``owner/name``, number) of the pull request when ``requests`` is empty.
    """
    built = [(r, build(backend, r, settings, now=now, sessions=sessions)) for r in requests]
    shown = tuple(preview for _, preview in built)
    left_out = tuple(unmapped)
    quiet = not any(preview.footprints for preview in shown)
    first = requests[0] if requests else None
    if first is not None and first.repository and first.pull_request is not None:
        where = (first.repository, first.pull_request)
    with sessions() as session:
        delivery = record_all(
            session, built, settings, now=now, notify=notify and not quiet, unmapped=left_out
        )
        delivery_id = delivery.id if delivery is not None else None
        earlier = previews.comment_of(session, *where) if where is not None else None
        session.commit()
    if github is None or where is None or (quiet and earlier is None):
        return Outcome(shown, delivery_id, unmapped=left_out)
    try:
        with sessions() as session:
            result = comment_all(session, github, built, now=now, unmapped=left_out, where=where)
            session.commit()
    except GitHubError as exc:
        subject = f"{where[0]}#{where[1]}"
        log.warning("preview of %s: the pull-request comment failed: %s", subject, exc)
        return Outcome(shown, delivery_id, comment_error=str(exc), unmapped=left_out)
    return Outcome(shown, delivery_id, result, unmapped=left_out)


def service_of(repository: str, settings: Settings) -> str:
    """The service a repository deploys: its first ``github.services`` entry, else its name
    (``acme/vault-service`` → ``vault-service``)."""
    return repo_services(repository, settings.github.services)[0].service


def by_service(
    repository: str, changes: Sequence[Change], settings: Settings
) -> tuple[list[tuple[str, tuple[Change, ...]]], tuple[str, ...]]:
    """Each service's share of ``changes`` (in ``github.services`` order, touched ones only),
    and the changed files no entry's paths match. A file goes to the first entry matching it."""
    entries = repo_services(repository, settings.github.services)
    shares: dict[str, list[Change]] = {}
    unmapped: list[str] = []
    for change in changes:
        owner = next(
            (e for e in entries if not e.paths or (change.file and e.owns(change.file))), None
        )
        if owner is None:
            unmapped.append(change.file or "(unknown file)")
        else:
            shares.setdefault(owner.service, []).append(change)
    ordered = [(e.service, tuple(shares[e.service])) for e in entries if e.service in shares]
    return ordered, tuple(unmapped)


def pull_request_requests(
    client: GitHubClient, event: PullRequestEvent, settings: Settings
) -> tuple[list[PreviewRequest], tuple[str, ...]]:
    """What a ``pull_request`` event asks to preview: one request per service its diff touches
    (``github.services``), and the changed files no service claims.

    Each changed file is read at the pull request's head and where its diff starts, the merge
    base of its base and head (for the functions it deletes and to tell comment-only hunks);
    the base itself when GitHub cannot compare them.
    """
    diff = client.pull_diff(event.repository, event.number)
    start = client.merge_base(event.repository, event.base, event.head) or event.base
    cache: dict[tuple[str, str], bytes | None] = {}

    def read(side: str, path: str) -> bytes | None:
        ref = start if side == "old" else event.head
        if (ref, path) not in cache:
            cache[(ref, path)] = client.file_at(event.repository, path, ref)
        return cache[(ref, path)]

    shares, unmapped = by_service(event.repository, changes_from_diff(diff, read), settings)
    requests = [
        PreviewRequest(
            service=service,
            changes=changes,
            commit=event.head,
            repository=event.repository,
            pull_request=event.number,
            url=event.url,
            author=Author(github=event.author),
        )
        for service, changes in shares
    ]
    return requests, unmapped


def run_pull_request(
    *,
    sessions: sessionmaker[Session],
    backend: TraceBackend,
    settings: Settings,
    event: PullRequestEvent,
    now: datetime,
    http: Any = None,
) -> Outcome | None:
    """The whole preview of a ``pull_request`` event (the webhook's background work).

    Returns None (and logs why) when GitHub or the trace backend did not answer; the next push
    to the pull request tries again.
    """
    client = github_client(settings, http=http)
    if client is None:
        return None
    try:
        requests, unmapped = pull_request_requests(client, event, settings)
        return run_all(
            sessions=sessions,
            backend=backend,
            settings=settings,
            requests=requests,
            now=now,
            github=client,
            unmapped=unmapped,
            where=(event.repository, event.number),
        )
    except (GitHubError, BackendError) as exc:
        log.warning(
            "preview of %s#%d failed: %s", event.repository, event.number, exc,
            extra={"delivery_id": event.delivery_id},
        )  # fmt: skip
        return None
    finally:
        if http is None:
            client.close()
