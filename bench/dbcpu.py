"""The CPU time of the PostgreSQL backends that serve one database, over a measured window.

Reverb's own CPU (`procs.usage`) leaves out the database's share of each message or page when
the database is PostgreSQL, in processes of its own; this adds it, so a run can say what one
database server can carry. Backends are found by database name in `pg_stat_activity` at the
start and end of the window: one that opened during the window counts all its CPU (all of it
was spent inside the window), one that closed during it is missed (pools keep theirs open)."""

from __future__ import annotations

import asyncpg

from bench.procs import usage
from tests.services import POSTGRES_TEST_URL

BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"


async def _cpu_by_backend(database: str) -> dict[int, float]:
    conn = await asyncpg.connect(POSTGRES_TEST_URL)
    try:
        pids = [int(row["pid"]) for row in await conn.fetch(BACKENDS, database)]
    finally:
        await conn.close()
    return {pid: usage([pid]).cpu_s for pid in pids}


class DatabaseCpu:
    def __init__(self, database: str | None) -> None:
        self.database = database
        self.before: dict[int, float] = {}

    async def start(self) -> DatabaseCpu:
        if self.database is not None:
            self.before = await _cpu_by_backend(self.database)
        return self

    async def stop(self, wall_s: float) -> dict[str, float]:
        """`database_cpu_s` and `database_cores` over the window; nothing for SQLite."""
        if self.database is None:
            return {}
        after = await _cpu_by_backend(self.database)
        cpu = sum(max(0.0, s - self.before.get(pid, 0.0)) for pid, s in after.items())
        return {
            "database_cpu_s": round(cpu, 3),
            "database_cores": round(cpu / wall_s, 3) if wall_s else 0.0,
        }
