"""A redis-server process of a test's own, for tests that stop and restart Redis. It runs on a
free port, never on the shared 6379, and is stopped only by the PID it started."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

WAIT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
                "redis-server",
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
