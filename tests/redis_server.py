"""A redis-server process of a test's own, for tests that stop and restart Redis. It runs on a
free port, never on the shared 6379, and is stopped only by the PID it started. The program is
the machine's redis-server, or the Valkey server of the `services` extra (tests.server_programs)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.ports import free_port
from tests.server_programs import server_program

WAIT_S = 10.0
CLUSTER_SLOTS = 16384  # fixed by the Redis Cluster protocol


class RedisServer:
    """A redis-server process of this test's own, on a free port (never the shared one)."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._proc is None
        self._proc = subprocess.Popen(
            [
                server_program("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """Stop the process this object started (by its PID), at once, as a crash would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=WAIT_S)
            self._proc = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def pause(self) -> None:
        """Stop the process without ending it (SIGSTOP): connections stay open and unanswered,
        as with a hung or swapped-out Redis."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    async def wait_ready(self) -> None:
        probe = Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            async with asyncio.timeout(WAIT_S):
                while True:
                    assert self._proc is not None and self._proc.poll() is None, "exited"
                    try:
                        if await probe.ping():
                            return
                    except (RedisError, OSError):
                        pass
                    await asyncio.sleep(0.02)  # poll interval, bounded by the timeout above
        finally:
            await probe.aclose()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    assert server.port != 6379
    try:
        yield server
    finally:
        server.kill()


class RedisClusterServers:
    """Three redis-server processes of a test's own, made into one Redis Cluster (every slot
    on one of the three primaries, no replicas), on free ports; stopped by the PIDs started."""

    SIZE = 3

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self.ports = [free_port() for _ in range(self.SIZE)]
        # The cluster bus ports, free as well (the default, port + 10000, may be taken or out
        # of range).
        self.bus_ports = [free_port() for _ in range(self.SIZE)]
        self.url = f"redis://127.0.0.1:{self.ports[0]}"
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            node_dir = self._workdir / f"node-{port}"
            node_dir.mkdir()
            self._procs.append(
                subprocess.Popen(
                    [
                        server_program("redis-server"),
                        "--port",
                        str(port),
                        "--cluster-port",
                        str(bus_port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node_dir / "nodes.conf"),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node_dir),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(port, lambda node: bool(node.ping()))
        self._form_cluster()
        for port in self.ports:
            # Every node sees every slot covered.
            self._wait(port, lambda node: node.cluster("info").get("cluster_state") == "ok")

    def _form_cluster(self) -> None:
        """What `redis-cli --cluster create --cluster-replicas 0` does, by commands any client
        can send (the Valkey server of the `services` extra comes without a CLI): each primary
        takes an even share of the slots, then the first node meets the others."""
        share = -(-CLUSTER_SLOTS // self.SIZE)  # ceiling division: the last share is smaller
        for i, port in enumerate(self.ports):
            node = SyncRedis(host="127.0.0.1", port=port, socket_timeout=WAIT_S)
            try:
                last = min(CLUSTER_SLOTS, (i + 1) * share) - 1
                node.cluster("ADDSLOTSRANGE", i * share, last)
                if i > 0:
                    node.cluster("MEET", "127.0.0.1", self.ports[0], self.bus_ports[0])
            finally:
                node.close()

    def _wait(self, port: int, ready: Callable[[SyncRedis], bool]) -> None:
        """Polls one node until `ready`, while none of the processes exited. Synchronous: the
        fixture may be set up from inside a running event loop."""
        node = SyncRedis(host="127.0.0.1", port=port, socket_timeout=0.5)
        deadline = time.monotonic() + WAIT_S * 3
        try:
            while True:
                assert all(p.poll() is None for p in self._procs), "a node exited"
                with contextlib.suppress(RedisError, OSError):
                    if ready(node):
                        return
                assert time.monotonic() < deadline, f"node {port} not ready"
                time.sleep(0.05)  # poll interval, bounded by the deadline
        finally:
            node.close()

    def stop(self) -> None:
        for proc in self._procs:
            proc.kill()
            proc.wait(timeout=WAIT_S)
        self._procs = []


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
