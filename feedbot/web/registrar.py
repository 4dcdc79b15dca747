"""Group commit for deploy webhooks: the registrations waiting together share one transaction.

One thread registers deploys, one batch after another, off the event loop. Every request that
arrives while a batch is being registered waits for the next one, and that batch takes all of
them (up to :data:`MAX_BATCH`): at concurrency 50 a commit, a connection checkout and a thread
hand-off serve tens of deploys instead of one. Each request still gets its own answer, and only
once the transaction holding its release is committed
(:func:`feedbot.checks.register.register_releases`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from anyio import CapacityLimiter, to_thread

from feedbot.checks.register import Registration
from feedbot.releases.event import ReleaseEvent

log = logging.getLogger(__name__)

#: Deploys registered in one transaction at most: bounds how long the first of them waits.
MAX_BATCH = 64

#: Registers a batch of events in one transaction: each event's registration or its error.
RegisterBatch = Callable[[Sequence[ReleaseEvent]], Sequence[Registration | Exception]]


class GroupRegistrar:
    """Registers deploys in batches, in one worker thread at a time, answering each request.

    Args:
        register: registers a batch (called in a worker thread).
        max_batch: deploys per transaction at most.
    """

    def __init__(
        self,
        register: RegisterBatch,
        *,
        warm: Callable[[], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._register = register
        self._warm = warm
        self._max_batch = max_batch
        self._waiting: list[tuple[ReleaseEvent, asyncio.Future[Registration]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._limiter = CapacityLimiter(1)

    def start_warming(self) -> None:
        """Run ``warm`` in the registering thread, in the background (the app's startup):
        a batch that arrives meanwhile waits for it."""
        if self._warm is not None and self._warming is None:
            self._warming = asyncio.ensure_future(self._warm_up(self._warm))

    async def _warm_up(self, warm: Callable[[], None]) -> None:
        try:
            await to_thread.run_sync(warm, limiter=self._limiter)
        except Exception as exc:  # a cold start is slower, not broken
            log.info("registrar warm-up failed: %r", exc)

    async def register(self, event: ReleaseEvent) -> Registration:
        """Register ``event`` with the others waiting; its registration once committed.

        Raises:
            Exception: what registering this event raised (a database error, for one).
        """
        future: asyncio.Future[Registration] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._drain())
        # A request whose client goes away leaves its deploy to be registered all the same.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._run(batch)
        finally:
            self._worker = None
            for _, future in self._waiting:  # only when this task itself was cancelled
                if not future.done():
                    future.set_exception(RuntimeError("the registrar stopped"))
            self._waiting.clear()

    async def _run(self, batch: list[tuple[ReleaseEvent, asyncio.Future[Registration]]]) -> None:
        events = [event for event, _ in batch]
        try:
            outcomes = await to_thread.run_sync(self._register, events, limiter=self._limiter)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
