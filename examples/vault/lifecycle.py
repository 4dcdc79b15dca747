"""How a vault process starts and ends: readiness, shutdown hooks, and not outliving its runner.

:mod:`examples.vault.run` starts each process with ``VAULT_PARENT_PID`` (the runner) and, for the
goblin, ``VAULT_READY_FILE``. A process whose runner dies without stopping it (``kill -9``, a
crashed test) sends itself SIGTERM, so it still shuts down cleanly and flushes its spans.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

PARENT_ENV = "VAULT_PARENT_PID"
READY_ENV = "VAULT_READY_FILE"
POLL_S = 0.5


def watch_parent() -> None:
    """Terminate this process once the runner named by ``VAULT_PARENT_PID`` has gone."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    expected = int(parent)
    thread = threading.Thread(target=_watch, args=(expected,), name="watch-parent", daemon=True)
    thread.start()


def _watch(expected: int) -> None:
    while os.getppid() == expected:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


def mark_ready() -> None:
    """Create the file named by ``VAULT_READY_FILE``, if any: this process is serving."""
    path = os.environ.get(READY_ENV)
    if path:
        Path(path).write_text(str(os.getpid()))


def closing_lifespan(
    *closers: Callable[[], Any],
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that calls ``closers`` in order when the server shuts down.

    uvicorn runs it on SIGTERM and Ctrl-C, which is how the last batch of spans gets sent.
    """

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        for close in closers:
            close()

    return lifespan
