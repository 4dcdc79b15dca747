"""Who gets the feedback on a release.

Order: the author's Slack id from the deploy, then ``people[]`` matched by e-mail, GitHub or GitLab
login, then Slack's ``users.lookupByEmail`` (done lazily when the message is sent, so a Slack
outage never blocks a webhook), then the service's ``owners``/``channel``, then the weekly-digest
channel. The plan is stored as a recipient spec: a plain id or channel, or
``email:ADDRESS|FALLBACK`` for the lazy lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from feedbot.config import Settings
from feedbot.releases.event import Author

EMAIL_PREFIX = "email:"
#: The recipient of a release nobody owns: no Slack id, no ``people[]`` match, no service owner
#: or channel, no digest channel. The console prints it; Slack refuses it, naming what to set.
NOBODY = ""
#: A Slack user id: only people have a Home tab (``owners`` may also name channels).
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")


@dataclass(frozen=True)
class OwnerPlan:
    """Where messages about a release go, and why."""

    recipient: str
    reason: str


def plan_owner(author: Author, service: str, settings: Settings) -> OwnerPlan:
    """Decide the recipient of a release's messages from the deploy and the config."""
    if author.slack:
        return OwnerPlan(author.slack, "author.slack")
    for person in settings.people:
        if person.slack and _same_person(author, person.email, person.github, person.gitlab):
            return OwnerPlan(person.slack, "people[]")
    fallback, reason = _fallback(service, settings)
    if author.email:
        return OwnerPlan(f"{EMAIL_PREFIX}{author.email}|{fallback}", "users.lookupByEmail")
    return OwnerPlan(fallback, reason)


def split_lazy(recipient: str) -> tuple[str, str] | None:
    """``email:ADDRESS|FALLBACK`` → (address, fallback); None for a plain recipient."""
    if not recipient.startswith(EMAIL_PREFIX):
        return None
    address, _, fallback = recipient[len(EMAIL_PREFIX) :].partition("|")
    return address, fallback


def _same_person(author: Author, email: str | None, github: str | None, gitlab: str | None) -> bool:
    return bool(
        (author.email and email and author.email.lower() == email.lower())
        or (author.github and github and author.github.lower() == github.lower())
        or (author.gitlab and gitlab and author.gitlab.lower() == gitlab.lower())
    )


def _fallback(service: str, settings: Settings) -> tuple[str, str]:
    conf = settings.services.get(service)
    if conf and conf.owners:
        return conf.owners[0], f"services.{service}.owners"
    if conf and conf.channel:
        return conf.channel, f"services.{service}.channel"
    if settings.slack.weekly_digest.channel:
        return settings.slack.weekly_digest.channel, "slack.weekly_digest.channel"
    return NOBODY, "no owner configured"


def home_viewers(service: str, people: Iterable[str | None], settings: Settings) -> list[str]:
    """Whose Home tab shows a release of ``service``: ``people`` (its author's Slack id and its
    resolved recipient) and the service's ``owners``, the Slack user ids among them."""
    config = settings.services.get(service)
    owners = config.owners if config is not None else ()
    return sorted({c for c in (*people, *owners) if c and USER_ID.match(c)})
