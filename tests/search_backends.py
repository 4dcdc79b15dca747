"""Helpers shared by the unit tests of the search backends (Jaeger, Zipkin) over their fakes."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from feedbot.backends.http import RetryPolicy, SearchBackend
from feedbot.errors import BackendResponseError
from feedbot.spans.model import SpanQuery
from tests.fakes.trace_servers import FakeTraceServer

B = TypeVar("B", bound=SearchBackend)


def search_backend(
    cls: type[B], fake: FakeTraceServer, sleeps: list[float] | None = None, **options: Any
) -> B:
    """A ``cls`` backend talking to ``fake``, whose retries never wait.

    Args:
        cls: the backend class.
        fake: the server it talks to.
        sleeps: where the waits it would have slept are appended (dropped when None).
        options: ``timeout`` of the HTTP client (2s by default), the rest go to ``cls``.
    """
    retry = RetryPolicy(sleep=(sleeps if sleeps is not None else []).append, jitter=lambda: 0.0)
    http = fake.client(timeout=float(options.pop("timeout", 2.0)))
    return cls(http, retry=retry, **options)


def wrong_shape_error(
    backend: SearchBackend, fake: FakeTraceServer, path: str, body: bytes, query: SpanQuery
) -> str:
    """The message of the :class:`BackendResponseError` raised when ``path`` answers ``body``.

    The server answers 200, so only the body's shape is wrong.
    """
    fake.fail_next(path, status=200, body=body)
    with pytest.raises(BackendResponseError) as raised:
        backend.collect(query)
    return str(raised.value)


def trace_links(
    cls: type[SearchBackend], fake: FakeTraceServer, *, ui_url: str, trace_id: str
) -> tuple[str | None, str | None]:
    """The link to ``trace_id`` of a ``cls`` backend without a UI, then of one at ``ui_url``."""
    with fake.client() as http:
        return cls(http).trace_url(trace_id), cls(http, ui_url=ui_url).trace_url(trace_id)
