"""The keyed group committer on its own: which requests go together, when, and in what order
(the database side is tested in tests/integration/test_send_queue.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from reverb.services.groupcommit import GroupCommitter, Pending

WAIT_S = 10


@dataclass
class Started:
    requests: list[str]
    wait: bool
    gate: asyncio.Future[None]


@dataclass
class Runner:
    """Runs each batch until the test opens its gate; answers `request` with `request!`.
    Requests whose key is in `held` are handed back unless the batch waits."""

    held: set[str] = field(default_factory=set)
    started: list[Started] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)

    async def run(self, batch: list[Pending[str, str]], wait: bool) -> list[Pending[str, str]]:
        keys = {p.key for p in batch}
        assert not keys & self.in_flight, "a key with two batches in flight"
        self.in_flight |= keys
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started.append(Started([p.request for p in batch], wait, gate))
        try:
            await gate
        finally:
            self.in_flight -= keys
        back = [p for p in batch if p.key in self.held and not wait]
        for p in batch:
            if p not in back:
                p.settle(p.request + "!")
        return back

    async def batches(self, count: int) -> list[Started]:
        async with asyncio.timeout(WAIT_S):
            while len(self.started) < count:
                await asyncio.sleep(0)
        return self.started

    def open(self, n: int) -> None:
        self.started[n].gate.set_result(None)


def committer(runner: Runner, concurrency: int) -> GroupCommitter[str, str]:
    # The key is what comes before the dot: "a.1" belongs to "a".
    return GroupCommitter(
        runner.run,
        key=lambda r: r.split(".")[0],
        max_batch=100,
        concurrency=concurrency,
        name="test batches",
    )


def submit(c: GroupCommitter[str, str], *requests: str) -> list[asyncio.Task[str]]:
    return [asyncio.create_task(c.submit(r)) for r in requests]


async def test_a_key_has_one_batch_in_flight_and_keeps_its_order() -> None:
    runner = Runner()
    c = committer(runner, concurrency=4)
    tasks = submit(c, "a.1")
    await runner.batches(1)
    tasks += submit(c, "a.2", "a.3", "b.1")
    started = await runner.batches(2)
    # b has a batch of its own at once; a's next sends wait for a's batch to end.
    assert [s.requests for s in started] == [["a.1"], ["b.1"]]
    assert (c.queued, c.in_flight) == (2, 2)
    runner.open(0)
    started = await runner.batches(3)
    assert started[2].requests == ["a.2", "a.3"]
    runner.open(1)
    runner.open(2)
    assert await asyncio.gather(*tasks) == ["a.1!", "a.2!", "a.3!", "b.1!"]
    assert c.peak_in_flight == 2
    await c.close()


async def test_the_bound_holds_and_keys_waiting_meanwhile_share_the_next_batch() -> None:
    runner = Runner()
    c = committer(runner, concurrency=2)
    tasks = submit(c, "a.1")
    await runner.batches(1)
    tasks += submit(c, "b.1")
    await runner.batches(2)
    tasks += submit(c, "c.1", "d.1", "a.2", "c.2")
    async with asyncio.timeout(WAIT_S):
        while c.queued < 4:
            await asyncio.sleep(0)
    assert len(runner.started) == 2  # the bound: no third batch
    runner.open(1)
    started = await runner.batches(3)
    # Every waiting key not in flight, in the order the keys arrived: a is still in flight.
    assert started[2].requests == ["c.1", "c.2", "d.1"]
    runner.open(0)
    started = await runner.batches(4)
    assert started[3].requests == ["a.2"]
    runner.open(2)
    runner.open(3)
    assert await asyncio.gather(*tasks) == ["a.1!", "b.1!", "c.1!", "d.1!", "a.2!", "c.2!"]
    assert c.peak_in_flight == 2
    await c.close()


async def test_a_key_held_elsewhere_is_handed_back_and_waited_for_alone() -> None:
    runner = Runner(held={"h"})
    c = committer(runner, concurrency=4)
    tasks = submit(c, "h.1", "f.1")
    await runner.batches(1)
    tasks += submit(c, "h.2", "g.1")  # arrive while the first batch runs
    started = await runner.batches(2)
    assert [(s.requests, s.wait) for s in started] == [(["h.1", "f.1"], False), (["g.1"], False)]
    runner.open(0)
    # h.1 went back to the head of its queue; the batch that waits takes only held keys.
    started = await runner.batches(3)
    assert (started[2].requests, started[2].wait) == (["h.1", "h.2"], True)
    assert await tasks[1] == "f.1!"
    assert not tasks[0].done()
    runner.open(1)
    runner.open(2)
    assert await asyncio.gather(*tasks) == ["h.1!", "f.1!", "h.2!", "g.1!"]
    # Waited for once, the key is like any other again.
    more = submit(c, "h.3", "f.3")
    started = await runner.batches(4)
    assert (started[3].requests, started[3].wait) == (["h.3", "f.3"], False)
    runner.held.clear()
    runner.open(3)
    assert await asyncio.gather(*more) == ["h.3!", "f.3!"]
    await c.close()


async def test_close_answers_what_was_handed_in_and_an_idle_committer_holds_no_task() -> None:
    runner = Runner()
    c = committer(runner, concurrency=1)
    tasks = submit(c, "a.1", "b.1", "a.2")
    started = await runner.batches(1)
    assert started[0].requests == ["a.1", "a.2", "b.1"]  # a key's requests together
    closing = asyncio.create_task(c.close())
    await asyncio.sleep(0)  # let close() begin: it refuses new requests from its first step
    with pytest.raises(RuntimeError):
        await c.submit("c.1")
    assert not closing.done()  # its batch is still running
    runner.open(0)
    await asyncio.wait_for(closing, WAIT_S)
    assert [t.result() for t in tasks] == ["a.1!", "b.1!", "a.2!"]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test batches"]


async def test_a_runner_that_leaves_a_request_unanswered_fails_it() -> None:
    async def forgetful(batch: list[Pending[str, str]], wait: bool) -> list[Pending[str, str]]:
        batch[0].settle("answered")
        return []

    c: GroupCommitter[str, str] = GroupCommitter(
        forgetful, key=lambda r: r, max_batch=10, concurrency=1, name="test batches"
    )
    first, second = await asyncio.gather(c.submit("x"), c.submit("y"), return_exceptions=True)
    assert first == "answered"
    assert isinstance(second, RuntimeError)
