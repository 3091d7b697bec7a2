"""`/metrics` under `reverb serve --workers 2` shows the whole server, whichever worker answers
the scrape: counters, histograms and the connections gauge add up over the workers (issue #12
part 7). Sockets are opened until both workers hold some (the JSON log names the process that
greeted each); a worker killed outright leaves its counts, but not its connections, behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.server import Running, reverb_process, server_env
from tests.e2e.wsclient import WsClient
from tests.helpers import group, register, until
from tests.services import REDIS_TEST_URL

pytestmark = pytest.mark.e2e

WORKERS = 2
PEOPLE = 4
# Enough for the kernel to have handed both workers some, on any machine seen so far (it takes
# a handful); opened a few at a time, which is what spreads them: one per person at a time, so
# that each person's sockets are greeted (logged) in the order they were opened.
MAX_SOCKETS = 60
AT_ONCE = PEOPLE
SENDS_EACH = 5
# Frames that answer the client itself; every other frame is an event, counted as delivered.
OWN_FRAMES = {"ready", "ack", "error", "pong"}
# Tallies reach the shared files within a second (metrics.TALLY_FLUSH_S); room for a loaded
# machine.
SETTLE_S = 15.0


SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$", re.MULTILINE)


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value (labels in any order: a multiprocess scrape sorts them)."""
    for found in SAMPLE.finditer(text):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
        if found.group(1) == name and pairs == labels:
            return float(found.group(3))
    raise AssertionError(f"{name}{labels} is not in:\n{text}")


async def scraped_until(http: httpx.AsyncClient, holds: Callable[[str], bool], what: str) -> str:
    """Scrape until `holds(text)`; the text that held. Bounded by SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        r = await http.get("/metrics")
        assert r.status_code == 200, r.text
        if holds(r.text):
            return r.text
        if time.monotonic() > deadline:
            pytest.fail(f"not within {SETTLE_S} s: {what}; last scrape:\n{r.text}")
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline above


def greeted_by(log: Path) -> dict[str, list[int]]:
    """Which process (PID) greeted each user's sockets, in order, from the JSON log."""
    out: dict[str, list[int]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "ws connected":
                out.setdefault(entry["user_id"], []).append(entry["pid"])
    return out


class Socket:
    """A signed-in socket that keeps reading, so every event the server writes is counted."""

    def __init__(self, client: WsClient, user_id: str) -> None:
        self.client, self.user_id = client, user_id
        self.reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                await self.client.recv(timeout=3600)
        except ConnectionClosed:
            return  # its worker was killed

    def events(self) -> int:
        return sum(1 for f in self.client.received if f["type"] not in OWN_FRAMES)

    def acks(self) -> int:
        return sum(1 for f in self.client.received if f["type"] == "ack")

    async def close(self) -> None:
        self.reading.cancel()
        await asyncio.wait([self.reading])
        await self.client.close()


async def open_until_both_workers(server: Running, people: list[dict[str, Any]]) -> list[Socket]:
    sockets: list[Socket] = []

    async def one(person: dict[str, Any]) -> Socket:
        client = await WsClient.ready(server.url, person["access_token"])
        return Socket(client, person["user"]["id"])

    while len(sockets) < MAX_SOCKETS:
        batch = [people[(len(sockets) + i) % len(people)] for i in range(AT_ONCE)]
        sockets += await asyncio.gather(*(one(p) for p in batch))
        pids = {pid for seen in greeted_by(server.log_path).values() for pid in seen}
        if len(pids) == WORKERS:
            return sockets
    pytest.fail(f"{MAX_SOCKETS} sockets all landed on one worker")


async def test_a_scrape_adds_up_every_worker(database_url: str, tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    env = server_env(database_url, redis_url=REDIS_TEST_URL, log_format="json", TMPDIR=str(temp))
    sockets: list[Socket] = []
    with reverb_process(tmp_path, env, "--workers", str(WORKERS)) as server:
        # The run's own folder for the workers' metrics.
        assert [p.name.startswith("reverb-metrics-") for p in temp.iterdir()] == [True]
        try:
            # A connection per request: scrapes land on either worker, and none is left
            # on the worker the test kills.
            fresh = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=fresh) as http:
                await scrape_and_kill(server, http, sockets)
        finally:
            for socket_ in sockets:
                await socket_.close()
    assert list(temp.iterdir()) == []  # removed when `reverb serve` ended


async def scrape_and_kill(server: Running, http: httpx.AsyncClient, sockets: list[Socket]) -> None:
    people = [await register(http) for _ in range(PEOPLE)]
    chat = await group(http, people[0], *people[1:])
    sockets += await open_until_both_workers(server, people)

    # Every socket sends; each message reaches every socket (all are in the chat).
    for n in range(SENDS_EACH):
        for i, s in enumerate(sockets):
            await s.client.send(
                {
                    "type": "message.send",
                    "chat_id": chat,
                    "content": f"{i}.{n}",
                    "client_id": f"{i}.{n}",
                    "ref": f"{i}.{n}",
                }
            )
    sent = SENDS_EACH * len(sockets)
    await until(lambda: sum(s.acks() for s in sockets) == sent, "every send acked", SETTLE_S)
    await until(
        lambda: all(s.events() >= sent for s in sockets), "every socket got every message", SETTLE_S
    )

    text = await scraped_until(
        http,
        lambda t: sample(t, "reverb_events_delivered_total") == sum(s.events() for s in sockets),
        "events delivered == events the sockets read",
    )
    assert sample(text, "reverb_messages_stored_total") == sent
    assert sample(text, "reverb_ws_connections") == len(sockets)
    registered = {"route": "/api/auth/register", "method": "POST", "status": "201"}
    assert sample(text, "reverb_http_requests_total", **registered) == PEOPLE
    # Each worker batched only its own sockets' sends; a send whose chat another worker held
    # is counted again in the batch that waited for it.
    assert sample(text, "reverb_send_batch_size_count") >= WORKERS
    assert sample(text, "reverb_send_batch_size_sum") >= sent

    # One worker killed outright (no shutdown of its own): uvicorn starts another in its
    # place. Its sockets are gone from the gauge; what it counted stays counted.
    greeted = greeted_by(server.log_path)
    on: Counter[int] = Counter()
    order = {uid: iter(pids) for uid, pids in greeted.items()}
    where = [next(order[s.user_id]) for s in sockets]
    on.update(where)
    victim = next(iter(on))
    os.kill(victim, signal.SIGKILL)
    await scraped_until(
        http,
        lambda t: sample(t, "reverb_ws_connections") == len(sockets) - on[victim],
        "the killed worker's connections leave the gauge",
    )
    text = await scraped_until(
        http,
        lambda t: sample(t, "reverb_messages_stored_total") == sent,
        "the killed worker's counts stay",
    )
    assert sample(text, "reverb_http_requests_total", **registered) == PEOPLE
