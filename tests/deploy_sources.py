"""Helpers shared by the unit tests of the deploy sources (GitHub, GitLab)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from feedbot.errors import WebhookRejected
from feedbot.releases.event import ReleaseEvent
from feedbot.releases.sources.base import DeploySource


def changed(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with ``changes`` made to it.

    Args:
        doc: the document, left as it is.
        changes: the new value by path, its keys joined by ``__`` (``deployment__sha``); the
            value ``...`` removes the key instead.
    """
    doc = copy.deepcopy(doc)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = doc
        for key in parents:
            target = target[key]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return doc


def deliver(source: DeploySource, headers: dict[str, str], body: bytes) -> ReleaseEvent | None:
    """Verify then parse one request, as the webhook route does."""
    source.verify(headers, body)
    return source.parse(headers, body)


def refusal(call: Callable[..., object], *args: Any, **kwargs: Any) -> tuple[int, str]:
    """The status and message of the :class:`WebhookRejected` that ``call`` raises."""
    with pytest.raises(WebhookRejected) as info:
        call(*args, **kwargs)
    return info.value.status, info.value.message
