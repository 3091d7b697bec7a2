"""The load-generator process: runs one scenario against one target and prints its figures.

    python -m bench.loadgen SPEC.json     (the orchestrator writes SPEC and reads stdout)

Every loop is bounded by a duration and a count. Server CPU and memory are read from /proc for
the server's PIDs at the start and end of the measured window only, so connecting and warming
up are not counted.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import uvloop

from bench.client import Peer, connect
from bench.dbcpu import DatabaseCpu
from bench.http import HttpConn
from bench.procs import Usage, raise_open_files, usage
from bench.uploads import load as uploads

Spec = dict[str, Any]
NS = 1_000_000_000


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: Sequence[int]) -> dict[str, float | None]:
    """p50/p95/p99/max of nanosecond samples, in milliseconds."""
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        v = pct(values, q)
        out[name] = None if v is None else round(v / 1e6, 3)
    return out


class Window:
    """Wall time and the server's CPU time and RSS over the measured part of a scenario."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.u0 = usage(pids)

    def close(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        u1: Usage = usage(self.pids)
        cpu = u1.cpu_s - self.u0.cpu_s
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(cpu, 3),
            "server_cores": round(cpu / wall, 3) if wall else 0.0,
            "server_rss_mib": round(u1.rss_bytes / 2**20, 1),
        }


def per_unit(stats: dict[str, float], n: int, unit: str) -> dict[str, float]:
    """The database's CPU per unit of work, where it was measured (PostgreSQL)."""
    if "database_cpu_s" not in stats or not n:
        return {}
    return {f"database_cpu_us_per_{unit}": round(stats["database_cpu_s"] / n * 1e6, 1)}


async def until_quiet(pids: list[int], limit_s: float = 60.0) -> None:
    """Wait (bounded) until the server uses under a tenth of a core over half a second."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = usage(pids).cpu_s
        await asyncio.sleep(0.5)
        if usage(pids).cpu_s - before < 0.05:
            return


def auth_frame(spec: Spec, conn: dict[str, Any], since: dict[str, int] | None = None) -> Spec:
    if spec["target"]["kind"] == "raw":
        return {"type": "auth", "token": "raw", "chats": conn["chats"]}
    frame: Spec = {"type": "auth", "token": conn["token"]}
    if since:
        frame["since"] = since
    return frame


async def connect_all(
    spec: Spec, conns: Sequence[dict[str, Any]], on_event: Callable[[Peer, Spec, int], None]
) -> list[Peer]:
    """Connect and authenticate every connection, a bounded number at a time."""
    gate = asyncio.Semaphore(spec.get("connect_concurrency", 200))
    url = spec["target"]["ws_url"]

    async def one(conn: dict[str, Any]) -> Peer:
        async with gate:
            peer = await connect(url, auth_frame(spec, conn), on_event)
            peer.tag = conn
            return peer

    return list(await asyncio.gather(*(one(c) for c in conns)))


async def connect_to_their_servers(
    spec: Spec, conns: Sequence[dict[str, Any]], on_event: Callable[[Peer, Spec, int], None]
) -> list[Peer]:
    """`connect_all` for connections that each name the server (`server`) they go to."""
    peers: list[Peer] = []
    for server in {c["server"] for c in conns}:
        part = [c for c in conns if c["server"] == server]
        peers += await connect_all(
            {**spec, "target": {**spec["target"], "ws_url": server}}, part, on_event
        )
    return peers


async def run_for(seconds: float, loops: Sequence[Awaitable[None]]) -> None:
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        await asyncio.sleep(seconds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def send_frame(chat_id: str, content: str, client_id: str) -> Spec:
    return {"type": "message.send", "chat_id": chat_id, "content": content, "client_id": client_id}


# --- scenarios -------------------------------------------------------------------------------


async def send(spec: Spec) -> Spec:
    """Every client sends into its chat and waits for the ack before sending again."""
    deliveries = 0

    def on_event(_peer: Peer, event: Spec, _t: int) -> None:
        nonlocal deliveries
        if event.get("type") == "message.created":
            deliveries += 1

    conns = spec["conns"]
    join = connect_to_their_servers if "server" in conns[0] else connect_all
    peers = await join(spec, conns, on_event)
    measuring = False
    acks: list[int] = []
    errors: list[str] = []
    counter = itertools.count()

    async def client(peer: Peer) -> None:
        chat = peer.tag["chats"][0]  # type: ignore[index]
        while True:
            t0 = time.monotonic_ns()
            n = next(counter)
            answer = await peer.request(send_frame(chat, f"hello {n}", f"c{n}"))
            if answer.get("type") != "ack":
                errors.append(str(answer))
                if len(errors) > 100:
                    raise RuntimeError(f"too many errors: {errors[:3]}")
                continue
            if measuring:
                acks.append(time.monotonic_ns() - t0)

    tasks = [asyncio.ensure_future(client(p)) for p in peers]
    await asyncio.sleep(spec["warmup_s"])
    measuring = True
    d0 = deliveries
    database = await DatabaseCpu(spec["target"].get("database")).start()
    window = Window(spec["target"]["pids"])
    await asyncio.sleep(spec["duration_s"])
    measuring = False
    stats = window.close()
    stats.update(await database.stop(stats["wall_s"]))
    delivered = deliveries - d0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for p in peers:
        p.close()
    n = len(acks)
    return {
        **stats,
        "clients": len(peers),
        "messages": n,
        "messages_per_s": round(n / stats["wall_s"], 1),
        "server_cpu_us_per_message": round(stats["server_cpu_s"] / n * 1e6, 1) if n else None,
        **per_unit(stats, n, "message"),
        "deliveries": delivered,
        "ack_ms": ms(acks),
        "errors": len(errors),
    }


async def fanout(spec: Spec) -> Spec:
    """Senders in one big chat, each waiting for its own copy before sending again, so queues
    stay bounded; every member counts what it receives."""
    deliveries = 0
    own: dict[str, asyncio.Future[None]] = {}

    def on_event(_peer: Peer, event: Spec, _t: int) -> None:
        nonlocal deliveries
        if event.get("type") == "message.created":
            deliveries += 1
            waiter = own.pop(event["message"].get("client_id") or "", None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    peers = await connect_all(spec, spec["conns"], on_event)
    chat = spec["conns"][0]["chats"][0]
    counter = itertools.count()
    loop = asyncio.get_running_loop()

    async def sender(peer: Peer) -> None:
        while True:
            client_id = f"f{next(counter)}"
            waiter = own[client_id] = loop.create_future()
            ack = peer.request(send_frame(chat, "fan-out " + client_id, client_id))
            await asyncio.gather(ack, waiter)

    senders = [asyncio.ensure_future(sender(p)) for p in peers[: spec["senders"]]]
    await asyncio.sleep(spec["warmup_s"])
    d0 = deliveries
    window = Window(spec["target"]["pids"])
    await asyncio.sleep(spec["duration_s"])
    stats = window.close()
    delivered = deliveries - d0
    for task in senders:
        task.cancel()
    await asyncio.gather(*senders, return_exceptions=True)
    closed = sum(1 for p in peers if p.closed.done())
    for p in peers:
        p.close()
    return {
        **stats,
        "members": len(peers),
        "senders": spec["senders"],
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / stats["wall_s"], 1),
        "deliveries_per_core_s": round(delivered / stats["server_cpu_s"], 1)
        if stats["server_cpu_s"]
        else None,
        "closed_during_run": closed,
    }


async def latency(spec: Spec) -> Spec:
    """One sender at a fixed rate into the big chat; latency from send to each receiver."""
    samples: list[int] = []
    per_server: dict[str, list[int]] = {}

    def on_event(peer: Peer, event: Spec, t: int) -> None:
        if event.get("type") == "message.created":
            content = event["message"]["content"]
            if content.startswith("t"):
                lat = t - int(content[1:])
                samples.append(lat)
                per_server.setdefault(peer.tag["server"], []).append(lat)  # type: ignore[index]

    conns = spec["conns"]
    peers = await connect_to_their_servers(spec, conns, on_event)
    sender = next(p for p in peers if p.tag["sender"])  # type: ignore[index]
    chat = conns[0]["chats"][0]
    receivers = len(peers) - 1

    async def level(rate: float, seconds: float, tag: str) -> Spec:
        samples.clear()
        per_server.clear()
        interval = 1 / rate
        count = max(1, int(rate * seconds))
        window = Window(spec["target"]["pids"])
        start = time.monotonic()
        acks = []
        for i in range(count):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = send_frame(chat, f"t{time.monotonic_ns()}", f"{tag}-{i}")
            acks.append(sender.request(frame))
        await asyncio.wait_for(asyncio.gather(*acks), 30)
        # Wait (bounded) for every receiver to have every message.
        deadline = time.monotonic() + 10
        expected = count * len(peers)
        while len(samples) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stats = window.close()
        return {
            "rate_msgs_per_s": rate,
            "deliveries_per_s": rate * receivers,
            "received": len(samples),
            "expected": expected,
            "latency_ms": ms(samples),
            "by_server": {k: ms(v) for k, v in per_server.items()},
            **stats,
        }

    # Not recorded: a thousand sockets connecting make the server announce each one's
    # presence to the others (about a million frames), which takes it a few seconds. Wait
    # until it is quiet, then warm up.
    await until_quiet(spec["target"]["pids"])
    await level(spec["rates"][0], spec.get("warmup_s", 1.0), "warm")
    results = [await level(rate, spec["duration_s"], f"l{rate}") for rate in spec["rates"]]
    out: Spec = {"members": len(peers), "levels": results}
    if "search" in spec:
        # The same again while one client searches without pause (each search slow).
        searches = _Searches(spec)
        task = asyncio.ensure_future(searches.run())
        await searches.started.wait()
        during = await level(spec["rates"][0], spec["duration_s"], "s")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        quiet, busy = results[0]["latency_ms"]["p99"], during["latency_ms"]["p99"]
        out |= {
            "during_search": during,
            "searches_done": len(searches.took),
            "search_ms": ms(searches.took),
            "p99_during_search_over_quiet": round(busy / quiet, 2) if quiet and busy else None,
        }
    for p in peers:
        p.close()
    return out


class _Searches:
    """One client asking for a slow full-text search, again as soon as each answer arrives."""

    def __init__(self, spec: Spec) -> None:
        self.url = urlsplit(spec["target"]["http_url"])
        self.headers = f"Authorization: Bearer {spec['search']['token']}\r\n"
        self.path = f"/api/messages/search?q={quote(spec['search']['query'])}"
        self.started = asyncio.Event()
        self.took: list[int] = []

    async def run(self) -> None:
        conn = await HttpConn.open(self.url.hostname or "127.0.0.1", self.url.port or 80)
        try:
            while True:
                t0 = time.monotonic_ns()
                self.started.set()
                status, body = await conn.get(self.path, self.headers)
                if status != 200 or not orjson.loads(body)["items"]:
                    raise RuntimeError(f"search: {status} {body[:300]!r}")
                self.took.append(time.monotonic_ns() - t0)
        finally:
            conn.close()


async def shards(spec: Spec) -> Spec:
    """Busy groups, each with its members on a process of its own, on one Redis: the CPU of
    every process while only the first group sends, then while all of them send. A process's
    bus work should follow its own group's traffic: near nothing while another group is busy,
    about the same when all are busy as when its own group alone is. A watcher process, whose
    one connection is a member of every group (it follows every busy shard), shows what the
    cluster's whole traffic costs a process that decodes all of it."""
    groups: list[Spec] = spec["groups"]
    received = [0] * len(groups)

    def on_event(peer: Peer, event: Spec, _t: int) -> None:
        if event.get("type") == "message.created":
            received[peer.tag["group"]] += 1  # type: ignore[index]

    senders: list[Peer] = []
    members = [0] * len(groups)
    for g, group in enumerate(groups):
        conns = [{**c, "group": g} for c in group["conns"]]
        peers = await connect_all(
            {**spec, "target": {**spec["target"], "ws_url": group["server"]}}, conns, on_event
        )
        senders.append(peers[0])
        members[g] = len(peers)
    watcher = spec["watcher"]
    await connect_all(
        {**spec, "target": {**spec["target"], "ws_url": watcher["server"]}},
        [{**watcher["conn"], "group": 0}],
        lambda _p, _e, _t: None,
    )
    servers: dict[str, list[int]] = {g["name"]: g["pids"] for g in groups}
    servers[watcher["name"]] = watcher["pids"]
    await until_quiet([pid for pids in servers.values() for pid in pids])
    rate = spec["rate"]

    async def phase(active: list[int], seconds: float, tag: str) -> Spec:
        windows = {name: Window(pids) for name, pids in servers.items()}
        count = max(1, int(rate * seconds))
        expected = [n + (count * members[g] if g in active else 0) for g, n in enumerate(received)]
        start = time.monotonic()
        acks = []
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for g in active:
                frame = send_frame(groups[g]["chat"], f"{tag} {i}", f"{tag}-{g}-{i}")
                acks.append(senders[g].request(frame))
        await asyncio.wait_for(asyncio.gather(*acks), 30)

        def missing() -> bool:
            return any(n < e for n, e in zip(received, expected, strict=True))

        deadline = time.monotonic() + 10
        while missing() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {
            "groups_sending": len(active),
            "messages_per_group": count,
            "complete": not missing(),
            "cpu_s": {name: w.close()["server_cpu_s"] for name, w in windows.items()},
        }

    await phase(list(range(len(groups))), spec["warmup_s"], "warm")
    idle = await phase([], spec["duration_s"], "idle")
    one = await phase([0], spec["duration_s"], "one")
    every = await phase(list(range(len(groups))), spec["duration_s"], "all")
    return {
        "groups": len(groups),
        "members": members,
        "rate": rate,
        "idle": idle,
        "one": one,
        "all": every,
    }


async def connections(spec: Spec) -> Spec:
    """Open authenticated sockets and hold them. Several of these processes share the work
    (a process may hold at most 20,000 files here): each prints READY once its share is open,
    and waits for a line on stdin (the orchestrator has read the server's memory) before it
    checks that every socket still answers and closes them."""
    t0 = time.monotonic()
    gate = asyncio.Semaphore(spec.get("connect_concurrency", 200))

    async def one(conn: dict[str, Any]) -> Peer:
        async with gate:
            return await connect(spec["target"]["ws_url"], auth_frame(spec, conn))

    # Failures are counted, not fatal: how many sockets a process holds is the figure.
    opened = await asyncio.gather(*(one(c) for c in spec["conns"]), return_exceptions=True)
    peers = [p for p in opened if isinstance(p, Peer)]
    failures = sorted({repr(e)[:200] for e in opened if not isinstance(e, Peer)})
    opened_s = time.monotonic() - t0
    sys.stdout.write(f"READY {len(peers)}\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    held = sum(1 for p in peers if not p.closed.done())
    alive = 0
    for batch in range(0, len(peers), 1000):
        answers = await asyncio.gather(
            *(p.request({"type": "ping"}) for p in peers[batch : batch + 1000]),
            return_exceptions=True,
        )
        alive += sum(1 for a in answers if isinstance(a, dict) and a.get("type") == "pong")
    for p in peers:
        p.close()
    return {
        "requested": len(spec["conns"]),
        "held": held,
        "answered_ping": alive,
        "open_s": round(opened_s, 2),
        "failed": len(opened) - len(peers),
        "failures": failures[:5],
    }


class _Pages:
    """One chat's history run: latencies of newest and deep pages while measuring."""

    def __init__(self, chat: Spec, headers: str) -> None:
        self.chat = chat
        self.headers = headers
        self.newest: list[int] = []
        self.deep: list[int] = []
        self.failures = 0
        self.measuring = False
        self.rng = random.Random(7)

    async def worker(self, conn: HttpConn) -> None:
        for i in itertools.count():
            path = f"/api/messages/{self.chat['chat_id']}?limit=50"
            is_deep = i % 2 == 1
            if is_deep:
                path += f"&before={self.rng.randint(51, self.chat['last_seq'])}"
            t0 = time.monotonic_ns()
            status, body = await conn.get(path, self.headers)
            took = time.monotonic_ns() - t0
            if status != 200 or len(orjson.loads(body)["items"]) != 50:
                self.failures += 1
                if self.failures > 10:
                    raise RuntimeError(f"history: {status} {body[:300]!r}")
                continue
            if self.measuring:
                (self.deep if is_deep else self.newest).append(took)


async def history(spec: Spec) -> Spec:
    """Pages of 50 over keep-alive HTTP: the newest page and deep pages, per chat size."""
    url = urlsplit(spec["target"]["http_url"])
    headers = f"Authorization: Bearer {spec['token']}\r\n"
    out = {}

    async def phase(chat: Spec, clients: int) -> tuple[_Pages, dict[str, float]]:
        run = _Pages(chat, headers)
        conns = [
            await HttpConn.open(url.hostname or "127.0.0.1", url.port or 80) for _ in range(clients)
        ]
        tasks = [asyncio.ensure_future(run.worker(c)) for c in conns]
        await asyncio.sleep(spec["warmup_s"])
        run.measuring = True
        database = await DatabaseCpu(spec["target"].get("database")).start()
        window = Window(spec["target"]["pids"])
        await asyncio.sleep(spec["duration_s"])
        run.measuring = False
        stats = window.close()
        stats.update(await database.stop(stats["wall_s"]))
        for task in tasks:
            if task.done():
                task.result()  # a worker that gave up: its error, not a figure
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in conns:
            c.close()
        return run, stats

    for chat in spec["chats"]:
        # Throughput with many clients; latency with one, so that it measures the page and not
        # the queue of fifteen other requests in front of it.
        busy, stats = await phase(chat, spec["concurrency"])
        alone, _ = await phase(chat, 1)
        pages = len(busy.newest) + len(busy.deep)
        out[chat["label"]] = {
            **stats,
            "messages_in_chat": chat["last_seq"],
            "pages": pages,
            "pages_per_s": round(pages / stats["wall_s"], 1),
            "server_cpu_us_per_page": round(stats["server_cpu_s"] / pages * 1e6, 1)
            if pages
            else None,
            **per_unit(stats, pages, "page"),
            "all_ms": ms(alone.newest + alone.deep),
            "newest_ms": ms(alone.newest),
            "deep_ms": ms(alone.deep),
            "busy_ms": ms(busy.newest + busy.deep),
            "failures": busy.failures + alone.failures,
        }
    return {"concurrency": spec["concurrency"], "chats": out}


async def resume(spec: Spec) -> Spec:
    """Reconnect with `since` far behind: time from opening the socket to the last replayed
    event, and a check that the replay is complete and in order."""
    conn = spec["conn"]
    chat = conn["chats"][0]
    last = spec["last_seq"]
    since = last - spec["behind"]
    times: list[int] = []
    bad = 0
    for _ in range(spec["repeats"]):
        got: list[int] = []
        done = asyncio.get_running_loop().create_future()

        def on_event(
            _peer: Peer, event: Spec, t: int, got: list[int] = got, done: Any = done
        ) -> None:
            if event.get("chat_id") == chat and "seq" in event:
                got.append(event["seq"])
                if event["seq"] >= last and not done.done():
                    done.set_result(t)

        t0 = time.monotonic_ns()
        peer = await connect(
            spec["target"]["ws_url"], auth_frame(spec, conn, {chat: since}), on_event
        )
        t_last = await asyncio.wait_for(done, 60)
        times.append(t_last - t0)
        if got != list(range(since + 1, last + 1)):
            bad += 1
        peer.close()
        await peer.closed
    return {
        "behind": spec["behind"],
        "repeats": spec["repeats"],
        "ms": ms(times),
        "incomplete": bad,
    }


async def fill(spec: Spec) -> Spec:
    """Set-up, not a figure: send `count` messages into a chat, 100 outstanding at a time."""
    conn = spec["conn"]
    chat = conn["chats"][0]
    peer = await connect(spec["target"]["ws_url"], auth_frame(spec, conn))
    gate = asyncio.Semaphore(100)
    last = 0
    t0 = time.monotonic()

    async def one(i: int) -> None:
        nonlocal last
        async with gate:
            answer = await peer.request(send_frame(chat, f"backlog {i}", f"b{i}"))
        if answer.get("type") != "ack":
            raise RuntimeError(f"fill failed: {answer}")
        last = max(last, answer["message"]["seq"])

    await asyncio.gather(*(one(i) for i in range(spec["count"])))
    took = time.monotonic() - t0
    peer.close()
    return {"last_seq": last, "messages_per_s": round(spec["count"] / took, 1)}


async def markers(spec: Spec) -> Spec:
    """A fixed rate of messages into the big chat, first with nobody marking, then with every
    member sending `read` for each message it gets: server CPU per message, both ways."""
    reading = False
    received = 0

    def on_event(peer: Peer, event: Spec, _t: int) -> None:
        nonlocal received
        if event.get("type") == "message.created":
            received += 1
            if reading:
                peer.send({"type": "read", "chat_id": event["chat_id"], "seq": event["seq"]})

    peers = await connect_all(spec, spec["conns"], on_event)
    await until_quiet(spec["target"]["pids"])
    sender = peers[0]
    chat = spec["conns"][0]["chats"][0]

    async def level(tag: str) -> Spec:
        count = int(spec["rate"] * spec["duration_s"])
        r0 = received
        window = Window(spec["target"]["pids"])
        start = time.monotonic()
        acks = []
        for i in range(count):
            delay = start + i / spec["rate"] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            acks.append(sender.request(send_frame(chat, f"{tag}{i}", f"{tag}-{i}")))
        await asyncio.wait_for(asyncio.gather(*acks), 30)
        deadline = time.monotonic() + 10
        while received - r0 < count * len(peers) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await until_quiet(spec["target"]["pids"], limit_s=10)  # the markers' writes and fan-out
        stats = window.close()
        return {
            "messages": count,
            "received": received - r0,
            "server_cpu_us_per_message": round(stats["server_cpu_s"] / count * 1e6, 1),
            **stats,
        }

    plain = await level("p")
    reading = True
    marked = await level("r")
    closed = sum(1 for p in peers if p.closed.done())
    for p in peers:
        p.close()
    ratio = marked["server_cpu_us_per_message"] / plain["server_cpu_us_per_message"]
    return {
        "members": len(peers),
        "rate_msgs_per_s": spec["rate"],
        "without_markers": plain,
        "with_markers": marked,
        "cpu_ratio": round(ratio, 2),
        "closed_during_run": closed,
    }


async def hang(spec: Spec) -> Spec:
    """One sender at a fixed rate into a group whose members are on two processes; Redis is
    stopped (SIGSTOP, the PID the orchestrator started) for `pause_s` in the middle. Sends
    must not wait on it; every member must get every message once Redis runs again."""
    sent: dict[str, int] = {}  # client id -> when it was sent
    got: dict[str, list[int]] = {}  # client id -> when each member received it
    dupes = 0

    def on_event(peer: Peer, event: Spec, t: int) -> None:
        nonlocal dupes
        if event.get("type") == "message.created":
            key = event["message"]["client_id"]
            seen = got.setdefault(key, [])
            seen.append(t)
            tag: Spec = peer.tag  # type: ignore[assignment]
            if tag.setdefault("seen", set()) & {key}:
                dupes += 1
            tag["seen"].add(key)

    conns = spec["conns"]
    peers = await connect_to_their_servers(spec, conns, on_event)
    await until_quiet(spec["target"]["pids"])
    sender = next(p for p in peers if p.tag["sender"])  # type: ignore[index]
    chat = conns[0]["chats"][0]
    interval = 1 / spec["rate"]
    total_s = spec["before_s"] + spec["pause_s"] + spec["after_s"]
    acks: list[asyncio.Future[Spec]] = []
    acked_at: dict[str, int] = {}

    def when_acked(key: str, _ack: asyncio.Future[Spec]) -> None:
        acked_at[key] = time.monotonic_ns()

    paused_at = resumed_at = 0
    start = time.monotonic()
    window = Window(spec["target"]["pids"])
    try:
        for i in range(int(total_s * spec["rate"])):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elapsed = time.monotonic() - start
            if not paused_at and elapsed >= spec["before_s"]:
                os.kill(spec["redis_pid"], signal.SIGSTOP)
                paused_at = time.monotonic_ns()
            if paused_at and not resumed_at and elapsed >= spec["before_s"] + spec["pause_s"]:
                os.kill(spec["redis_pid"], signal.SIGCONT)
                resumed_at = time.monotonic_ns()
            key = f"h{i}"
            sent[key] = time.monotonic_ns()
            ack = sender.request(send_frame(chat, key, key))
            ack.add_done_callback(functools.partial(when_acked, key))
            acks.append(ack)
    finally:
        if paused_at and not resumed_at:
            os.kill(spec["redis_pid"], signal.SIGCONT)
            resumed_at = time.monotonic_ns()
    answers = await asyncio.wait_for(asyncio.gather(*acks), 60)
    acked = sum(1 for a in answers if a.get("type") == "ack")
    # Wait (bounded) until every member has every message.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(len(got.get(k, ())) >= len(peers) for k in sent):
        await asyncio.sleep(0.01)
    stats = window.close()
    during = [k for k, t in sent.items() if paused_at <= t < resumed_at]
    ack_latency = [acked_at[k] - sent[k] for k in during if k in acked_at]
    # Until the last member has the last message sent while Redis was stopped.
    caught_up = max((max(got.get(k, [0])) for k in during), default=resumed_at) - resumed_at
    for p in peers:
        p.close()
    return {
        "members": len(peers),
        "rate_msgs_per_s": spec["rate"],
        "pause_s": spec["pause_s"],
        "sent": len(sent),
        "acked": acked,
        "sent_during_pause": len(during),
        "ack_during_pause_ms": ms(ack_latency),
        "complete": sum(1 for k in sent if len(got.get(k, ())) >= len(peers)),
        "duplicates": dupes,
        "last_delivery_after_resume_ms": round(caught_up / 1e6, 1),
        **stats,
    }


SCENARIOS: dict[str, Callable[[Spec], Awaitable[Spec]]] = {
    "send": send,
    "fanout": fanout,
    "latency": latency,
    "connections": connections,
    "history": history,
    "resume": resume,
    "fill": fill,
    "hang": hang,
    "markers": markers,
    "shards": shards,
    "uploads": uploads,
}


async def main(spec: Spec) -> Spec:
    if spec["scenario"] not in ("fill", "connections", "uploads"):
        # What the previous scenario left (thousands of sockets closing, say) is not this one's.
        await until_quiet(spec["target"]["pids"])
    return await asyncio.wait_for(SCENARIOS[spec["scenario"]](spec), spec.get("timeout_s", 600))


if __name__ == "__main__":
    raise_open_files()
    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    result = uvloop.run(main(spec))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
