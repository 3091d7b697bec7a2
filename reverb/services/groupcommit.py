"""Group commit keyed by chat: callers hand in work and await its answer; tasks run the work
in batches, each key (a chat) with at most one batch in flight.

Each key has a queue of its own. A batch takes every key that is waiting and not in flight
(several keys in one batch: fewer transactions when many chats are busy at once), so the
requests of one key run in arrival order, one batch after another. Up to `concurrency`
batches of different keys run at once; a key that arrives while every batch in flight holds
other keys gets a batch of its own at once, if the bound allows, rather than waiting for them.

The runner may hand requests back, unrun, when their key was held elsewhere (another
process's transaction holds that chat's row): the key goes back to the head of its queue,
and its next batch is one of keys found held, which waits for them. A held key thus never
holds up the keys that were free.

When idle, the first request starts a batch at once (no timer, so light load adds no wait).
Tasks live only while there is work, so an idle process holds none and nothing can outlive
its event loop.
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
    key: str
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


# Runs one batch: settles or fails each request, or hands it back (returned) because its key
# was held elsewhere. `wait` is true for a batch of keys found held before: it must wait for
# them rather than hand them back again.
RunBatch = Callable[[list[Pending[T, R]], bool], Awaitable[list[Pending[T, R]]]]


class GroupCommitter(Generic[T, R]):
    def __init__(
        self,
        run: RunBatch[T, R],
        *,
        key: Callable[[T], str],
        max_batch: int,
        concurrency: int,
        name: str,
    ) -> None:
        self._run = run
        self._key = key
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._name = name
        self._queues: dict[str, deque[Pending[T, R]]] = {}
        self._ready: dict[str, None] = {}  # keys with requests queued and no batch in flight
        self._busy: set[str] = set()  # keys with a batch in flight
        self._held: set[str] = set()  # keys handed back: their next batch waits for them
        self._queued = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: set[asyncio.Task[None]] = set()  # tasks yet to take a first batch
        self._in_flight = 0
        self._peak = 0
        self._closed = False

    @property
    def queued(self) -> int:
        """Requests handed in and not yet taken into a batch."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Batches running now."""
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most batches that ever ran at once: the concurrency bound at work."""
        return self._peak

    async def submit(self, request: T) -> R:
        """The answer the batch gives this request. Cancelling the caller only withdraws it:
        a request already in a running batch may still take effect."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        key = self._key(request)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(Pending(request, key, future))
        self._queued += 1
        if key not in self._busy:
            self._ready[key] = None
        self._kick()
        return await future

    async def close(self) -> None:
        """Refuse new requests and wait until those already handed in are answered."""
        self._closed = True
        while self._tasks:
            # `wait` never cancels what it waits for: a cancelled close leaves them running.
            await asyncio.wait(set(self._tasks))

    def _kick(self) -> None:
        """Start a task for ready keys if none is about to take them and the bound allows."""
        if self._ready and not self._starting and len(self._tasks) < self._concurrency:
            # A context of its own: the task serves every caller, not the one that woke it
            # (its request id must not label the batch's log lines).
            task = asyncio.create_task(self._work(), name=self._name, context=contextvars.Context())
            self._tasks.add(task)
            self._starting.add(task)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        # Also reached by a task cancelled before its first step, which never ran `_work`.
        self._tasks.discard(task)
        self._starting.discard(task)

    def _claim(self) -> tuple[list[str], list[Pending[T, R]], bool]:
        """The next batch (its keys, its requests, whether it waits for held keys): the held
        keys that are ready, else every other ready key; at most `max_batch` requests, in
        arrival order within each key."""
        held = [k for k in self._ready if k in self._held]
        keys: list[str] = []
        batch: list[Pending[T, R]] = []
        for key in held or list(self._ready):
            if len(batch) >= self._max_batch:
                break
            keys.append(key)
            del self._ready[key]
            self._busy.add(key)
            queue = self._queues[key]
            while queue and len(batch) < self._max_batch:
                pending = queue.popleft()
                self._queued -= 1
                if pending.waiting:  # a caller that gave up before its batch began
                    batch.append(pending)
            if not queue:
                del self._queues[key]
        return keys, batch, bool(held)

    def _release(self, keys: list[str], handed_back: list[Pending[T, R]]) -> None:
        for pending in reversed(handed_back):  # back to the head, in their order
            if pending.waiting:
                queue = self._queues.get(pending.key)
                if queue is None:
                    queue = self._queues[pending.key] = deque()
                queue.appendleft(pending)
                self._queued += 1
        back = {p.key for p in handed_back}
        for key in keys:
            self._busy.discard(key)
            if key not in self._queues:
                self._held.discard(key)
                continue
            self._ready[key] = None
            if key in back:
                self._held.add(key)
            else:
                self._held.discard(key)

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._starting.discard(me)
        keys: list[str] = []
        batch: list[Pending[T, R]] = []
        try:
            while self._ready:
                keys, batch, wait = self._claim()
                self._kick()  # keys left ready (a bound batch, or free keys behind held ones)
                handed_back: list[Pending[T, R]] = []
                if batch:
                    self._in_flight += 1
                    self._peak = max(self._peak, self._in_flight)
                    try:
                        handed_back = await self._run(batch, wait)
                    except Exception as exc:
                        # The runner answers every request itself; this is a bug, not a refusal.
                        log.exception("%s: a batch failed", self._name)
                        for pending in batch:
                            pending.fail(exc)
                    finally:
                        self._in_flight -= 1
                    returned = {id(p) for p in handed_back}
                    for pending in batch:
                        if id(pending) not in returned:
                            pending.fail(RuntimeError(f"{self._name} left a request unanswered"))
                self._release(keys, handed_back)
                keys, batch = [], []
        finally:
            # Gone from the set before anything else runs (the done callback comes later): a
            # request handed in next must see the room this task leaves, or with a bound of one
            # it would wait forever.
            self._tasks.discard(me)
            if keys:
                # Only reached with a batch in hand when the task itself is cancelled (loop
                # shutdown): nobody will answer it, nor the queue if no other task is left.
                for pending in batch:
                    pending.future.cancel()
                self._release(keys, [])
                if not self._tasks:
                    for queue in self._queues.values():
                        for pending in queue:
                            pending.future.cancel()
                    self._queues.clear()
                    self._ready.clear()
                    self._held.clear()
                    self._queued = 0
