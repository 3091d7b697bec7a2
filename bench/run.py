"""The orchestrator: starts the servers, sets them up, runs each scenario in a separate
load-generator process, and collects the figures."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import seed, uploads
from bench.procs import Server, python
from bench.profile import Recorder
from tests.ports import free_port
from tests.redis_server import RedisServer
from tests.services import POSTGRES_TEST_URL


@dataclass(frozen=True, slots=True)
class Sizes:
    send_clients: int = 200
    send_s: float = 10.0
    warmup_s: float = 2.0
    fanout_members: int = 1000
    fanout_senders: int = 8
    fanout_s: float = 10.0
    latency_rates: tuple[int, ...] = (5, 10, 20, 40)
    latency_s: float = 5.0
    # A process may hold at most 20,000 open files on this host (no CAP_SYS_RESOURCE to raise
    # the hard limit): the server keeps some for its database, listener and event loop.
    connections: int = 19_700
    connection_users: int = 100
    connection_processes: int = 2
    hold_s: float = 3.0
    history: tuple[tuple[str, int], ...] = (("1k", 1_000), ("1M", 1_000_000))
    history_s: float = 5.0
    history_concurrency: int = 16
    resume_behind: int = 10_000
    resume_repeats: int = 20
    two_process_members: int = 200
    two_process_rate: int = 20
    two_process_s: float = 5.0
    hang_members: int = 200
    hang_rate: int = 100
    hang_pause_s: float = 10.0
    markers_members: int = 1000
    markers_rate: int = 5
    markers_s: float = 5.0
    # Four processes on one Redis, a group of its own on each (see loadgen.shards).
    shard_groups: int = 4
    shard_members: int = 50
    shard_rate: int = 100
    shard_s: float = 5.0
    # Delivery latency while a slow search runs (its matches ranked and sorted: seconds).
    slow_search_members: int = 100
    slow_search_messages: int = 300_000
    slow_search_rate: int = 20
    slow_search_s: float = 5.0
    # The same at every size: the figure is about this many decodes arriving at once.
    image_uploads: int = 8


FULL = Sizes()
SMOKE = Sizes(
    send_clients=4,
    send_s=0.5,
    warmup_s=0.2,
    fanout_members=6,
    fanout_senders=2,
    fanout_s=0.5,
    latency_rates=(10,),
    latency_s=0.5,
    connections=20,
    connection_users=2,
    connection_processes=2,
    hold_s=0.1,
    history=(("small", 120), ("larger", 600)),
    history_s=0.5,
    history_concurrency=2,
    resume_behind=60,
    resume_repeats=2,
    two_process_members=4,
    two_process_rate=10,
    two_process_s=0.5,
    hang_members=4,
    hang_rate=20,
    hang_pause_s=0.5,
    markers_members=6,
    markers_rate=10,
    markers_s=0.5,
    shard_members=3,
    shard_rate=20,
    shard_s=0.5,
    slow_search_members=4,
    slow_search_messages=2_000,
    slow_search_rate=10,
    slow_search_s=0.5,
)


@dataclass(slots=True)
class Plan:
    sizes: Sizes
    databases: tuple[str, ...] = ("sqlite", "postgres")
    scenarios: tuple[str, ...] = (
        "send",
        "fanout",
        "latency",
        "connections",
        "history",
        "resume",
        "two-process",
        "send-two",
        "redis-hang",
        "markers",
        "shards",
        "slow-search",
        "image-uploads",
    )
    profile: Path | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="reverb-bench-")))
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    pg_databases: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[bench {stamp}] {line}", file=sys.stderr, flush=True)


def loadgen(plan: Plan, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one scenario in its own load-generator process and return its figures."""
    path = plan.workdir / f"spec-{spec['scenario']}-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    timeout = spec.get("timeout_s", 600) + 30
    recorder = None
    if plan.profile is not None and spec["target"]["kind"] == "reverb":
        plan.profile.mkdir(parents=True, exist_ok=True)
        name = f"{spec['target']['name']}-{spec['scenario']}.txt"
        recorder = Recorder(spec["target"]["pids"][0], plan.profile / name)
    try:
        done = subprocess.run(
            [python(), "-m", "bench.loadgen", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        if recorder is not None:
            recorder.stop()
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({spec['scenario']}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def target(server: Server, *pids_from: Server) -> dict[str, Any]:
    pids = [pid for s in (pids_from or (server,)) for pid in s.pids()]
    return {
        "kind": "raw" if server.name == "raw" else "reverb",
        "name": server.name,
        "ws_url": server.ws_url,
        "http_url": server.url,
        "pids": pids,
        "database": server.database,
    }


# --- servers ---------------------------------------------------------------------------------


def start_raw(plan: Plan) -> Server:
    port = free_port()
    server = Server(
        "raw",
        [python(), "-m", "bench.raw_server", "--port", str(port)],
        {},
        port,
        plan.workdir / "raw.log",
    )
    server.wait_ready()
    return server


def reverb_env(database_url: str, media: Path, redis_url: str | None = None) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "AUTO_MIGRATE": "true",
        "JWT_SECRET": secrets.token_urlsafe(48),
        # Logins are not what is measured: cheap hashes keep setting up a thousand users quick.
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST_KIB": "64",
        "ARGON2_PARALLELISM": "1",
        "ACCESS_TOKEN_TTL_SECONDS": "86400",
        # The rate limits protect against abusive clients; the load generator is many clients'
        # worth of traffic on few sockets and users, from one address.
        **{
            f"RATE_LIMIT_{rule}": "1000000 per second"
            for rule in ("MESSAGES", "WRITES", "ANONYMOUS", "WS_AUTH")
        },
        "LOG_LEVEL": "WARNING",
        "MEDIA_DIR": str(media),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def start_reverb(plan: Plan, name: str, env: dict[str, str]) -> Server:
    port = free_port()
    server = Server(
        name,
        [python(), "-m", "reverb", "serve", "--port", str(port)],
        env,
        port,
        plan.workdir / f"{name}-{port}.log",
    )
    server.wait_ready("/readyz")
    return server


async def _pg_admin(*statements: str) -> None:
    # The PostgreSQL the tests use (scripts/services settles which).
    conn = await asyncpg.connect(POSTGRES_TEST_URL)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def database_url(plan: Plan, kind: str, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{plan.workdir / (name + '.db')}"
    # A name of this run's own: two runs at once (a bench and the suite's smoke run) must not
    # drop each other's databases.
    name = f"{name}_{plan.run_id}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    plan.pg_databases.append(name)
    return make_url(POSTGRES_TEST_URL).set(database=name).render_as_string(hide_password=False)


def drop_databases(plan: Plan) -> None:
    drops = [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in plan.pg_databases]
    if drops:
        asyncio.run(_pg_admin(*drops))


@contextmanager
def redis_server(plan: Plan) -> Iterator[RedisServer]:
    """A redis-server of the run's own (the tests' helper), stopped by its PID afterwards."""
    server = RedisServer(free_port(), plan.workdir)
    server.start()
    try:
        asyncio.run(server.wait_ready())
        yield server
    finally:
        server.kill()


# --- scenario specs -----------------------------------------------------------------------------


@dataclass(slots=True)
class World:
    """What a Reverb server was set up with."""

    users: seed.Users
    big_chat: str
    pairs: list[tuple[int, str]]  # (user index, direct chat) for the send scenario


def set_up(plan: Plan, server: Server) -> World:
    s = plan.sizes
    with httpx.Client(base_url=server.url, timeout=60) as client:
        count = max(s.fanout_members, s.send_clients, s.connection_users, s.two_process_members)
        users = seed.register(client, count, f"u{secrets.token_hex(3)}")
        big = seed.group(client, users.tokens[0], "everyone", users.ids[1 : s.fanout_members])
        pairs: list[tuple[int, str]] = []
        for i in range(0, s.send_clients, 2):
            chat = seed.direct(client, users.tokens[i], users.ids[i + 1])
            pairs += [(i, chat), (i + 1, chat)]
    return World(users=users, big_chat=big, pairs=pairs)


def conn(world: World | None, index: int, chat: str, **extra: Any) -> dict[str, Any]:
    token = world.users.tokens[index] if world else "raw"
    return {"token": token, "chats": [chat], **extra}


def run_send(plan: Plan, server: Server, world: World | None) -> dict[str, Any]:
    s = plan.sizes
    pairs = world.pairs if world else [(i, f"room{i // 2}") for i in range(s.send_clients)]
    return loadgen(
        plan,
        {
            "scenario": "send",
            "target": target(server),
            "conns": [conn(world, i, chat) for i, chat in pairs],
            "warmup_s": s.warmup_s,
            "duration_s": s.send_s,
        },
    )


def big_chat_conns(plan: Plan, world: World | None, n: int) -> list[dict[str, Any]]:
    chat = world.big_chat if world else "big"
    return [conn(world, i, chat) for i in range(n)]


def run_fanout(plan: Plan, server: Server, world: World | None) -> dict[str, Any]:
    s = plan.sizes
    return loadgen(
        plan,
        {
            "scenario": "fanout",
            "target": target(server),
            "conns": big_chat_conns(plan, world, s.fanout_members),
            "senders": s.fanout_senders,
            "warmup_s": s.warmup_s,
            "duration_s": s.fanout_s,
        },
    )


def run_markers(plan: Plan, server: Server, world: World | None) -> dict[str, Any]:
    s = plan.sizes
    return loadgen(
        plan,
        {
            "scenario": "markers",
            "target": target(server),
            "conns": big_chat_conns(plan, world, s.markers_members),
            "rate": s.markers_rate,
            "duration_s": s.markers_s,
        },
    )


def run_latency(plan: Plan, server: Server, world: World | None) -> dict[str, Any]:
    s = plan.sizes
    conns = big_chat_conns(plan, world, s.fanout_members)
    for i, c in enumerate(conns):
        c.update(server=server.ws_url, sender=i == 0)
    return loadgen(
        plan,
        {
            "scenario": "latency",
            "target": target(server),
            "conns": conns,
            "rates": list(s.latency_rates),
            "duration_s": s.latency_s,
            "warmup_s": s.warmup_s,
        },
    )


def run_connections(plan: Plan, server: Server, world: World | None) -> dict[str, Any]:
    """Open the sockets from several load generators at once, read the server's RSS when all
    are open, then let them check the sockets still answer."""
    s = plan.sizes
    chat = world.big_chat if world else "big"
    conns = [conn(world, i % s.connection_users, chat) for i in range(s.connections)]
    shares = [conns[i :: s.connection_processes] for i in range(s.connection_processes)]
    tgt = target(server)
    before = server.usage()
    recorder = None
    if plan.profile is not None and tgt["kind"] == "reverb":
        plan.profile.mkdir(parents=True, exist_ok=True)
        recorder = Recorder(tgt["pids"][0], plan.profile / f"{tgt['name']}-connections.txt")
    t0 = time.monotonic()
    procs = []
    for i, share in enumerate(shares):
        path = plan.workdir / f"spec-connections-{i}.json"
        spec = {
            "scenario": "connections",
            "target": tgt,
            "conns": share,
            "connect_concurrency": 100,
        }
        path.write_text(json.dumps(spec))
        procs.append(
            subprocess.Popen(
                [python(), "-m", "bench.loadgen", str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                err = proc.stderr.read()[-4000:]
                raise RuntimeError(f"load generator failed (connections):\n{err}")
        opened_s = time.monotonic() - t0
        time.sleep(s.hold_s)
        after = server.usage()
        results = []
        for proc in procs:
            out, err = proc.communicate("go\n", timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"load generator failed (connections):\n{err[-4000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if recorder is not None:
            recorder.stop()
    n = len(conns)
    return {
        "requested": n,
        "held": sum(r["held"] for r in results),
        "answered_ping": sum(r["answered_ping"] for r in results),
        "failed_to_open": sum(r["failed"] for r in results),
        "failures": sorted({f for r in results for f in r["failures"]})[:5],
        "load_generators": len(procs),
        "open_s": round(opened_s, 2),
        "connections_per_s": round(n / opened_s, 1),
        "rss_before_mib": round(before.rss_bytes / 2**20, 1),
        "rss_after_mib": round(after.rss_bytes / 2**20, 1),
        "rss_per_connection_kib": round((after.rss_bytes - before.rss_bytes) / n / 1024, 2),
    }


def run_history(plan: Plan, server: Server, world: World, db_url: str) -> dict[str, Any]:
    s = plan.sizes
    token = world.users.tokens[0]
    chats = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for label, count in s.history:
            chat = seed.group(client, token, f"history {label}", [])
            plan.say(f"  writing {count} messages into the {label} chat")
            seed.bulk_history(db_url, chat, world.users.ids[0], count)
            chats.append({"label": label, "chat_id": chat, "last_seq": count})

    def pages(of: Server) -> dict[str, Any]:
        return loadgen(
            plan,
            {
                "scenario": "history",
                "target": target(of),
                "token": token,
                "chats": chats,
                "concurrency": s.history_concurrency,
                "warmup_s": s.warmup_s,
                "duration_s": s.history_s,
            },
        )

    result = pages(server)
    # The bare reference, on the same database and chats, in the same run.
    plan.say("  the bare history reference")
    port = free_port()
    ref = Server(
        "raw",
        [
            python(),
            "-m",
            "bench.history_ref",
            "--port",
            str(port),
            "--database-url",
            db_url,
            "--viewer",
            world.users.ids[0],
        ],
        {},
        port,
        plan.workdir / "history-ref.log",
    )
    try:
        ref.wait_ready()
        result["reference"] = pages(ref)
    finally:
        ref.stop()
    return result


SLOW_SEARCH = "long conversation about benchmarks"  # every word in every seeded message


def run_slow_search(plan: Plan, server: Server, world: World, db_url: str) -> dict[str, Any]:
    """Delivery latency into the big chat, quiet and then while a slow search runs."""
    s = plan.sizes
    token = world.users.tokens[0]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        chat = seed.group(client, token, "archive", [])
    plan.say(f"  writing {s.slow_search_messages} messages into the archive chat")
    seed.bulk_history(db_url, chat, world.users.ids[0], s.slow_search_messages)
    conns = big_chat_conns(plan, world, s.slow_search_members)
    for i, c in enumerate(conns):
        c.update(server=server.ws_url, sender=i == 0)
    return loadgen(
        plan,
        {
            "scenario": "latency",
            "target": target(server),
            "conns": conns,
            "rates": [s.slow_search_rate],
            "duration_s": s.slow_search_s,
            "warmup_s": s.warmup_s,
            "search": {"token": token, "query": SLOW_SEARCH},
        },
    )


def run_resume(plan: Plan, server: Server, world: World) -> dict[str, Any]:
    s = plan.sizes
    token = world.users.tokens[0]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        chat = seed.group(client, token, "resume", [])
    c = conn(world, 0, chat)
    fill = loadgen(
        plan,
        {"scenario": "fill", "target": target(server), "conn": c, "count": s.resume_behind + 10},
    )
    result = loadgen(
        plan,
        {
            "scenario": "resume",
            "target": target(server),
            "conn": c,
            "last_seq": fill["last_seq"],
            "behind": s.resume_behind,
            "repeats": s.resume_repeats,
        },
    )
    return {**result, "fill_messages_per_s": fill["messages_per_s"]}


@contextmanager
def two_processes(
    plan: Plan, db_kind: str, name: str
) -> Iterator[tuple[Server, Server, World, RedisServer]]:
    """Two Reverb processes on one database and a Redis of the run's own, set up alike."""
    with redis_server(plan) as redis:
        url = database_url(plan, db_kind, f"reverb_bench_{name}")
        env = reverb_env(url, plan.workdir / f"media-{name}", redis.url)
        a = start_reverb(plan, f"reverb-{name}-a", env)
        b = start_reverb(plan, f"reverb-{name}-b", env)
        try:
            yield a, b, set_up(plan, a), redis
        finally:
            a.stop()
            b.stop()


def alternate(conns: list[dict[str, Any]], a: Server, b: Server) -> list[dict[str, Any]]:
    """Every other connection on the second process; the first one, on the first, sends."""
    for i, c in enumerate(conns):
        c.update(server=(a if i % 2 == 0 else b).ws_url, sender=i == 0)
    return conns


def run_two_process(plan: Plan, db_kind: str) -> dict[str, Any]:
    s = plan.sizes
    with two_processes(plan, db_kind, "two") as (a, b, world, _):
        result = loadgen(
            plan,
            {
                "scenario": "latency",
                "target": target(a, a, b),
                "conns": alternate(big_chat_conns(plan, world, s.two_process_members), a, b),
                "rates": [s.two_process_rate],
                "duration_s": s.two_process_s,
                "warmup_s": s.warmup_s,
            },
        )
    level = result["levels"][0]
    same = level["by_server"].get(a.ws_url, {}).get("p50")
    other = level["by_server"].get(b.ws_url, {}).get("p50")
    extra = round(other - same, 3) if same is not None and other is not None else None
    return {
        **result,
        "database": db_kind,
        "same_process_p50_ms": same,
        "other_process_p50_ms": other,
        "extra_p50_ms": extra,
    }


def run_send_two(plan: Plan, db_kind: str) -> dict[str, Any]:
    """The send scenario with the two people of each direct chat on different processes, so
    every message crosses Redis: acked msg/s against one process's, and CPU of both."""
    s = plan.sizes
    with two_processes(plan, db_kind, "sendtwo") as (a, b, world, _):
        conns = alternate([conn(world, i, chat) for i, chat in world.pairs], a, b)
        result = loadgen(
            plan,
            {
                "scenario": "send",
                "target": target(a, a, b),
                "conns": conns,
                "warmup_s": s.warmup_s,
                "duration_s": s.send_s,
            },
        )
    return {**result, "database": db_kind}


def run_hang(plan: Plan, db_kind: str) -> dict[str, Any]:
    """Sends while Redis is stopped (SIGSTOP) between two processes: the acks during it, and
    how long after it every member has every message."""
    s = plan.sizes
    with two_processes(plan, db_kind, "hang") as (a, b, world, redis):
        conns = alternate(big_chat_conns(plan, world, s.hang_members), a, b)
        result = loadgen(
            plan,
            {
                "scenario": "hang",
                "target": target(a, a, b),
                "conns": conns,
                "rate": s.hang_rate,
                "before_s": s.warmup_s,
                "pause_s": s.hang_pause_s,
                "after_s": s.warmup_s,
                "redis_pid": redis.pid,
            },
        )
    return {**result, "database": db_kind}


def run_shards(plan: Plan, db_kind: str) -> dict[str, Any]:
    s = plan.sizes
    with redis_server(plan) as redis:
        url = database_url(plan, db_kind, "reverb_bench_shards")
        env = reverb_env(url, plan.workdir / "media-shards", redis.url)
        servers = [start_reverb(plan, f"reverb-{i + 1}", env) for i in range(s.shard_groups)]
        watcher = start_reverb(plan, "watcher", env)
        try:
            with httpx.Client(base_url=servers[0].url, timeout=60) as client:
                users = seed.register(
                    client, s.shard_groups * s.shard_members + 1, f"s{secrets.token_hex(3)}"
                )
                everyone = len(users.ids) - 1  # the watcher, a member of every group
                groups = []
                for g, server in enumerate(servers):
                    own = range(g * s.shard_members, (g + 1) * s.shard_members)
                    chat = seed.group(
                        client,
                        users.tokens[own[0]],
                        f"busy {g}",
                        [users.ids[i] for i in own[1:]] + [users.ids[everyone]],
                    )
                    groups.append(
                        {
                            "name": server.name,
                            "server": server.ws_url,
                            "pids": server.pids(),
                            "chat": chat,
                            "conns": [{"token": users.tokens[i], "chats": [chat]} for i in own],
                        }
                    )
            all_servers = [*servers, watcher]
            result = loadgen(
                plan,
                {
                    "scenario": "shards",
                    "target": target(servers[0], *all_servers),
                    "groups": groups,
                    "watcher": {
                        "name": watcher.name,
                        "server": watcher.ws_url,
                        "pids": watcher.pids(),
                        "conn": {"token": users.tokens[everyone], "chats": []},
                    },
                    "rate": s.shard_rate,
                    "duration_s": s.shard_s,
                    "warmup_s": s.warmup_s,
                },
            )
        finally:
            for server in (*servers, watcher):
                server.stop()
    return {**result, "database": db_kind, **shard_ratios(result)}


def shard_ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """The figures that say whether a process's bus work follows its own chats' traffic.

    - others_while_one_busy: the mean CPU of the processes whose group is quiet, while the
      first group is busy, over the first process's CPU then (about 0: they decode nothing of it);
    - own_all_vs_one: the first process's CPU with every group busy over its CPU with its group
      alone busy (about 1: the other groups' traffic costs it nothing);
    - watcher_all_vs_one: the same for the watcher, which follows every group (about the number
      of groups: what every process would pay if each decoded the whole cluster's traffic).
    """
    one, every, idle = result["one"]["cpu_s"], result["all"]["cpu_s"], result["idle"]["cpu_s"]
    names = [n for n in one if n != "watcher"]
    first, others = names[0], names[1:]

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b > 0 else None

    return {
        "others_while_one_busy": ratio(sum(one[n] for n in others) / len(others), one[first]),
        "others_idle_floor": ratio(sum(idle[n] for n in others) / len(others), one[first]),
        "own_all_vs_one": ratio(every[first], one[first]),
        "watcher_all_vs_one": ratio(every["watcher"], one["watcher"]),
    }


def run_image_uploads(plan: Plan, db_kind: str) -> dict[str, Any]:
    """Uploads of a small PNG that decodes big, all at once, to a server of their own (its
    peak RSS is what is measured: nothing else may have raised it)."""
    url = database_url(plan, db_kind, "reverb_bench_uploads")
    env = reverb_env(url, plan.workdir / "media-uploads")
    server = start_reverb(plan, "reverb-uploads", env)
    try:
        result = uploads.measure(
            server,
            plan.sizes.image_uploads,
            lambda extra: loadgen(plan, {"scenario": "uploads", "target": target(server), **extra}),
        )
    finally:
        server.stop()
    return {**result, "database": db_kind}


# --- the run ------------------------------------------------------------------------------------


def run(plan: Plan) -> dict[str, Any]:
    try:
        return _run(plan)
    finally:
        drop_databases(plan)
        shutil.rmtree(plan.workdir, ignore_errors=True)


def _run(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": asdict(plan.sizes)}
    wanted = set(plan.scenarios)
    raw_scenarios = [n for n in ("send", "fanout", "latency", "connections") if n in wanted]
    if raw_scenarios:
        plan.say("raw reference server")
        raw = start_raw(plan)
        try:
            out["raw"] = {}
            for name in raw_scenarios:
                plan.say(f"  raw: {name}")
                out["raw"][name] = RAW_RUNNERS[name](plan, raw, None)
        finally:
            raw.stop()
    for db_kind in plan.databases:
        key = f"reverb-{db_kind}"
        plan.say(f"Reverb on {db_kind}")
        url = database_url(plan, db_kind, "reverb_bench")
        server = start_reverb(plan, key, reverb_env(url, plan.workdir / f"media-{db_kind}"))
        try:
            world = set_up(plan, server)
            out[key] = {}
            # Fan-out, latency and connections cost the same on either database (a send is one
            # commit whatever the chat's size): they run on the first database only.
            per_db = ["send", "history", "resume", "markers", "slow-search"]
            if db_kind == plan.databases[0]:
                per_db += ["fanout", "latency", "connections"]
            for scenario in [n for n in plan.scenarios if n in per_db]:
                plan.say(f"  {key}: {scenario}")
                if scenario == "history":
                    runner = functools.partial(run_history, plan, server, world, url)
                elif scenario == "resume":
                    runner = functools.partial(run_resume, plan, server, world)
                elif scenario == "markers":
                    runner = functools.partial(run_markers, plan, server, world)
                elif scenario == "slow-search":
                    runner = functools.partial(run_slow_search, plan, server, world, url)
                else:
                    runner = functools.partial(RAW_RUNNERS[scenario], plan, server, world)
                attempt(plan, out, out[key], scenario, f"{key}: {scenario}", runner)
        finally:
            server.stop()
    multi_db = "postgres" if "postgres" in plan.databases else plan.databases[0]
    multi: tuple[tuple[str, str, Callable[[Plan, str], dict[str, Any]]], ...] = (
        ("two-process", "two Reverb processes with Redis", run_two_process),
        ("send-two", "sends across two Reverb processes with Redis", run_send_two),
        ("redis-hang", "Redis stopped under sends, two processes", run_hang),
        ("shards", "four Reverb processes, a busy group on each, one Redis", run_shards),
    )
    for multi_name, what, run_multi in multi:
        if multi_name in wanted:
            plan.say(f"{what} on {multi_db}")
            job = functools.partial(run_multi, plan, multi_db)
            attempt(plan, out, out, multi_name, multi_name, job)
    if "image-uploads" in wanted:
        db_kind = plan.databases[0]
        plan.say(f"{plan.sizes.image_uploads} image uploads at once, on {db_kind}")
        job = functools.partial(run_image_uploads, plan, db_kind)
        attempt(plan, out, out, "image-uploads", "image-uploads", job)
    return out


def attempt(
    plan: Plan,
    out: dict[str, Any],
    into: dict[str, Any],
    key: str,
    label: str,
    runner: Callable[[], dict[str, Any]],
) -> None:
    """One scenario; a failure is recorded under out["failed"] and the run goes on, so one
    scenario that breaks does not lose the figures of all the others."""
    try:
        into[key] = runner()
    except Exception as exc:  # any failure of one scenario is reported, not fatal
        reason = str(exc).strip().splitlines()
        plan.say(f"  FAILED {label}: {reason[-1] if reason else type(exc).__name__}")
        out.setdefault("failed", {})[label] = "\n".join(reason[-12:])


RAW_RUNNERS = {
    "send": run_send,
    "fanout": run_fanout,
    "latency": run_latency,
    "connections": run_connections,
}
