"""The PostgreSQL and Redis the suite and the benchmarks talk to.

`python -m tests.services -- COMMAND...` (scripts/services) runs COMMAND with both answering:
the servers the URLs below name when they answer, otherwise servers of its own (programs from
tests.server_programs) on free ports of 127.0.0.1, with data directories under .services/ in the
project, stopped by their PIDs and removed when COMMAND ends. It exports the URLs it settled on,
so everything COMMAND starts uses the same servers.

A URL that was set explicitly and does not answer is an error, not a reason to start another
server: the run was asked to use that one."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError

from tests.ports import free_port
from tests.postgres_server import PostgresServer, postgres_problem
from tests.redis_server import RedisServer

POSTGRES_URL_VAR = "REVERB_TEST_POSTGRES_URL"
REDIS_URL_VAR = "REVERB_TEST_REDIS_URL"
POSTGRES_TEST_URL = os.environ.get(POSTGRES_URL_VAR, "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get(REDIS_URL_VAR, "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".services"
# How long a server that exists gets to answer one probe before it counts as absent.
PROBE_TIMEOUT_S = 3.0


def _redis_answers(url: str) -> str | None:
    client = Redis.from_url(
        url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S
    )
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def _say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


@contextmanager
def _postgres(workdir: Path) -> Iterator[str]:
    problem = asyncio.run(postgres_problem(POSTGRES_TEST_URL, PROBE_TIMEOUT_S))
    if problem is None:
        _say(f"PostgreSQL answers at {POSTGRES_TEST_URL}")
        yield POSTGRES_TEST_URL
        return
    if POSTGRES_URL_VAR in os.environ:
        raise SystemExit(
            f"services: {POSTGRES_URL_VAR}={POSTGRES_TEST_URL} does not answer ({problem})"
        )
    server = PostgresServer(workdir, free_port())
    try:
        server.init()
        server.start()
        _say(f"PostgreSQL started at {server.url} (at {POSTGRES_TEST_URL}: {problem})")
        yield server.url
    finally:
        server.stop()


@contextmanager
def _redis(workdir: Path) -> Iterator[str]:
    problem = _redis_answers(REDIS_TEST_URL)
    if problem is None:
        _say(f"Redis answers at {REDIS_TEST_URL}")
        yield REDIS_TEST_URL
        return
    if REDIS_URL_VAR in os.environ:
        raise SystemExit(f"services: {REDIS_URL_VAR}={REDIS_TEST_URL} does not answer ({problem})")
    server = RedisServer(free_port(), workdir)
    try:
        server.start()
        asyncio.run(server.wait_ready())
        _say(f"Redis started at {server.url} (at {REDIS_TEST_URL}: {problem})")
        yield server.url
    finally:
        server.kill()


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the run as Ctrl-C does, so the servers are still stopped."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def run(command: list[str]) -> int:
    _stop_on_signals()
    STATE_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=STATE_DIR))
    # The data directory is handed to an unprivileged user when root starts PostgreSQL.
    workdir.chmod(0o755)
    try:
        with ExitStack() as stack:
            postgres_url = stack.enter_context(_postgres(workdir))
            redis_url = stack.enter_context(_redis(workdir))
            env = {**os.environ, POSTGRES_URL_VAR: postgres_url, REDIS_URL_VAR: redis_url}
            child = subprocess.Popen(command, env=env)
            try:
                return child.wait()
            except KeyboardInterrupt:
                # The command ends before the servers it uses.
                child.terminate()
                child.wait()
                return 130
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/services", description=__doc__)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is needed: scripts/services -- COMMAND...")
    sys.exit(run(command))


if __name__ == "__main__":
    main()
