"""A PostgreSQL cluster of one's own: initdb into a fresh directory, the server on a free port of
127.0.0.1 (no Unix socket), stopped by the PID it started. Programs from
tests.server_programs, so it runs on a machine with Python and nothing else.

PostgreSQL refuses to run as root. Root runs it as `nobody` (every Linux has it) when `nobody`
can reach the programs and the data, else in a user namespace of its own where it is uid 1:
not root to PostgreSQL, still the owner of its files (a clone under /root, a test's 0700
temporary directory)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.server_programs import server_program

WAIT_S = 30.0
UNPRIVILEGED_USER = "nobody"
# A cluster for tests only, thrown away afterwards: durability buys nothing and costs time.
THROWAWAY_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")


@dataclass(frozen=True)
class RunAs:
    """How to start PostgreSQL's programs so that they do not run as root."""

    prefix: tuple[str, ...] = ()  # put before the program
    popen: dict[str, Any] = field(default_factory=dict)  # subprocess keyword arguments
    owner: tuple[int, int] | None = None  # uid and gid to hand the data directory to


def _others_can_enter(path: Path) -> bool:
    return all(parent.stat().st_mode & 0o001 for parent in path.resolve().parents)


def unprivileged(paths: Sequence[Path]) -> RunAs:
    """How to run PostgreSQL's programs on `paths` (programs, data): as is for a user other
    than root."""
    if os.geteuid() != 0:
        return RunAs()
    if all(_others_can_enter(p) for p in paths):
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        return RunAs(
            popen={"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []},
            owner=(entry.pw_uid, entry.pw_gid),
        )
    unshare = shutil.which("unshare")
    if unshare is None:
        raise PermissionError(
            f"PostgreSQL refuses root, '{UNPRIVILEGED_USER}' cannot enter {paths}, and "
            "`unshare` (util-linux) is missing: run as an ordinary user"
        )
    return RunAs(prefix=(unshare, "--map-user=1", "--map-group=1", "--"))


class PostgresServer:
    """One PostgreSQL cluster in `workdir`, user `postgres` with trust authentication."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.data = workdir / "pgdata"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._log = workdir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as = RunAs()

    def init(self) -> None:
        initdb = server_program("initdb")
        self._run_as = unprivileged([self.data, Path(initdb)])
        self.data.mkdir(mode=0o700)
        if self._run_as.owner is not None:
            os.chown(self.data, *self._run_as.owner)
        done = subprocess.run(
            [
                *self._run_as.prefix,
                initdb,
                "--pgdata",
                str(self.data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                # C: the same on every machine, and needs no locale installed.
                "--locale",
                "C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=WAIT_S * 2,
            check=False,
            **self._run_as.popen,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        assert self._proc is None
        settings = [arg for s in THROWAWAY_SETTINGS for arg in ("-c", s)]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    *self._run_as.prefix,
                    server_program("postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    # TCP only: no socket file in a directory the server may not own.
                    "-c",
                    "unix_socket_directories=",
                    *settings,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._run_as.popen,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self._log.read_text()[-2000:]}")
            if asyncio.run(postgres_problem(self.url, timeout=2)) is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready in {WAIT_S} s: {self._log}")
            time.sleep(0.1)  # poll interval, bounded by the deadline

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the server this object started, by its PID."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=WAIT_S)
        self._proc = None


async def postgres_problem(url: str, timeout: float) -> str | None:
    """None when a PostgreSQL server at `url` takes a connection within `timeout`, else why
    not."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None
