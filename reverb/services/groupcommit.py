"""Group commit: callers hand in work and await its answer; one task runs the work in batches.

When idle, the first request starts a batch at once (no timer, so light load adds no wait).
Requests arriving while a batch runs queue up and form the next one. The task lives only
while there is work, so an idle process holds none and nothing can outlive its event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class Pending(Generic[T, R]):
    """One request of a batch and the future its caller awaits."""

    request: T
    future: asyncio.Future[R]

    @property
    def waiting(self) -> bool:
        """False once answered, or once the caller stopped waiting (cancelled)."""
        return not self.future.done()

    def settle(self, result: R) -> None:
        if self.waiting:
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if self.waiting:
            self.future.set_exception(error)


# Runs one batch and settles or fails each of its requests.
RunBatch = Callable[[list[Pending[T, R]]], Awaitable[None]]


class GroupCommitter(Generic[T, R]):
    def __init__(self, run: RunBatch[T, R], *, max_batch: int, name: str) -> None:
        self._run = run
        self._max_batch = max_batch
        self._name = name
        self._queue: deque[Pending[T, R]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        """Requests handed in and not yet taken into a batch."""
        return len(self._queue)

    async def submit(self, request: T) -> R:
        """The answer the batch gives this request. Cancelling the caller only withdraws it:
        a request already in a running batch may still take effect."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(request, future))
        if self._task is None:
            # A context of its own: the task serves every caller, not the one that woke it
            # (its request id must not label the batch's log lines).
            self._task = asyncio.create_task(
                self._drain(), name=self._name, context=contextvars.Context()
            )
        return await future

    async def close(self) -> None:
        """Refuse new requests and wait until those already handed in are answered."""
        self._closed = True
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        batch: list[Pending[T, R]] = []
        try:
            while self._queue:
                batch = []
                while self._queue and len(batch) < self._max_batch:
                    pending = self._queue.popleft()
                    if pending.waiting:  # a caller that gave up before its batch began
                        batch.append(pending)
                if not batch:
                    continue
                try:
                    await self._run(batch)
                except Exception as exc:
                    # The runner answers every request itself; this is a bug, not a refusal.
                    log.exception("%s: a batch failed", self._name)
                    for pending in batch:
                        pending.fail(exc)
                for pending in batch:
                    pending.fail(RuntimeError(f"{self._name} left a request unanswered"))
        finally:
            # Only reached with work left when the task itself is cancelled (loop shutdown).
            for pending in (*batch, *self._queue):
                pending.future.cancel()
            self._queue.clear()
            self._task = None
