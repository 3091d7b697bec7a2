"""A PostgreSQL cluster of a test's own (tests/postgres_server.py), as tests that need a server
they can stop use it. Here in the test's temporary directory, which only its owner may enter: as
root that takes the user-namespace way (the `nobody` way is what scripts/services takes, proven
by tests/e2e/test_python_only_machine.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.ports import free_port
from tests.postgres_server import PostgresServer, postgres_problem


async def _write(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE notes (body text)")
        await conn.execute("INSERT INTO notes VALUES ('kept'), ('also kept')")
    finally:
        await conn.close()


async def _read(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r["body"] for r in await conn.fetch("SELECT body FROM notes ORDER BY body")]
    finally:
        await conn.close()


def test_a_cluster_of_its_own_serves_stops_and_starts_again_with_its_data(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path, free_port())
    assert server.port != 5432
    server.init()
    server.start()
    try:
        asyncio.run(_write(server.url))
        server.stop()
        problem = asyncio.run(postgres_problem(server.url, timeout=2))
        assert problem is not None and "ConnectionRefused" in problem, problem
        server.start()
        assert asyncio.run(_read(server.url)) == ["also kept", "kept"]
    finally:
        server.stop()
