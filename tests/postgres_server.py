"""A PostgreSQL cluster of one's own: initdb into a fresh directory, the server on a free port of
127.0.0.1 (no Unix socket), stopped by the PID it started. Programs from
tests.server_programs, so it runs on a machine with Python and nothing else.

PostgreSQL refuses to run as root; as root the programs run as `nobody`, which every Linux
has, and the data directory is handed to it."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg

from tests.server_programs import server_program

WAIT_S = 30.0
UNPRIVILEGED_USER = "nobody"
# A cluster for tests only, thrown away afterwards: durability buys nothing and costs time.
THROWAWAY_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")


def _as_unprivileged() -> dict[str, Any]:
    """Keyword arguments for subprocess that drop root to `nobody`; none for anyone else."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _check_reachable(path: Path) -> None:
    """As root the server runs as `nobody`, which must be able to pass through every parent of
    its data directory and of its programs; say so plainly instead of a bare initdb error."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise PermissionError(
                f"PostgreSQL runs as '{UNPRIVILEGED_USER}' when started by root, and "
                f"'{UNPRIVILEGED_USER}' cannot enter {parent} (no o+x): allow it "
                f"(chmod o+x {parent}) or run as an ordinary user"
            )


class PostgresServer:
    """One PostgreSQL cluster in `workdir`, user `postgres` with trust authentication."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.data = workdir / "pgdata"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._log = workdir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def init(self) -> None:
        initdb = server_program("initdb")
        _check_reachable(self.data)
        _check_reachable(Path(initdb))
        self.data.mkdir(mode=0o700)
        user = _as_unprivileged()
        if user:
            os.chown(self.data, user["user"], user["group"])
        done = subprocess.run(
            [
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
            **user,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        assert self._proc is None
        settings = [arg for s in THROWAWAY_SETTINGS for arg in ("-c", s)]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
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
                **_as_unprivileged(),
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
