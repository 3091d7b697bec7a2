"""SQLite's one writer and its driver, on a real database file: units of work take turns, a lock
held by another connection is waited for off the loop, and a slow query leaves the loop.

These test the SQLite storage itself, so they run on a SQLite file of their own whichever
database the suite runs against."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.config import async_database_url
from reverb.storage import sqlite_driver
from reverb.storage.db import Database


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    return str(tmp_path / "writer.db")


@pytest.fixture
async def db(sqlite_path: str) -> AsyncIterator[Database]:
    database = Database(async_database_url(f"sqlite:///{sqlite_path}"))
    try:
        yield database
    finally:
        await database.close()


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Another connection (as another process would) holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def _counter(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT n FROM counter"))).scalar_one())


async def _make_counter(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        await tx.conn.execute(text("INSERT INTO counter VALUES (0)"))


async def _increment(db: Database) -> None:
    async with db.transaction() as tx:
        n = (await tx.conn.execute(text("SELECT n FROM counter"))).scalar_one()
        await asyncio.sleep(0)  # another unit of work would run here if it could
        await tx.conn.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})


async def test_units_of_work_take_turns(db: Database, sqlite_path: str) -> None:
    await _make_counter(db)
    await asyncio.gather(*(_increment(db) for _ in range(50)))
    assert await _counter(db) == 50


async def test_a_failed_unit_of_work_is_rolled_back_and_the_next_one_commits(
    db: Database, sqlite_path: str
) -> None:
    await _make_counter(db)

    async def fail() -> None:
        async with db.transaction() as tx:
            await tx.conn.execute(text("UPDATE counter SET n = 99"))
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail()
    await _increment(db)
    assert await _counter(db) == 1


async def test_reads_answer_while_a_write_waits_for_another_connection_lock(
    db: Database, sqlite_path: str
) -> None:
    await _make_counter(db)
    with locked(sqlite_path):
        write = asyncio.create_task(_increment(db))
        for _ in range(5):
            assert await _counter(db) == 0
            assert not write.done()  # it cannot finish while the lock is held
    await write
    assert await _counter(db) == 1


async def test_a_unit_of_work_cancelled_while_waiting_for_the_lock_leaves_the_writer_working(
    db: Database, sqlite_path: str
) -> None:
    await _make_counter(db)
    with locked(sqlite_path):
        waiting = asyncio.create_task(_increment(db))
        for _ in range(3):  # meanwhile the write reaches BEGIN and waits there
            assert await _counter(db) == 0
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await _increment(db)
    assert await _counter(db) == 1


async def test_a_write_that_never_gets_the_lock_fails_and_the_next_one_succeeds(
    db: Database, sqlite_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _make_counter(db)
    monkeypatch.setattr(sqlite_driver, "BUSY_TIMEOUT_MS", 50)
    with locked(sqlite_path), pytest.raises(sqlite3.OperationalError, match="locked"):
        await _increment(db)
    await _increment(db)
    assert await _counter(db) == 1


async def test_a_query_over_its_budget_finishes_on_a_thread_with_its_snapshot(
    db: Database, sqlite_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _make_counter(db)
    moved: list[bool] = []
    on_thread = sqlite_driver.DriverConnection._on_thread

    async def spy(self: sqlite_driver.DriverConnection, *args: object, **kwargs: bool) -> object:
        moved.append(kwargs["wait_for_lock"])
        return await on_thread(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_driver.DriverConnection, "_on_thread", spy)
    # A query that takes far longer than the budget: a million-row recursive count.
    slow = text(
        "SELECT count(*) FROM counter, (WITH RECURSIVE r(x) AS "
        "(SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 1000000) SELECT x FROM r)"
    )
    async with db.read() as conn:
        assert await _counter_in(conn) == 0
        await _increment(db)  # committed after the snapshot was taken
        assert (await conn.execute(slow)).scalar_one() == 1_000_000
        assert moved == [False]
        assert await _counter_in(conn) == 0  # still the same snapshot
    assert await _counter(db) == 1


async def _counter_in(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT n FROM counter"))).scalar_one())


async def test_the_writer_keeps_the_wal_from_growing(db: Database, sqlite_path: str) -> None:
    # Connections never checkpoint at commit (that would be in the event loop); without the
    # writer's checkpoints these commits would leave a WAL of more than 4,000 pages (16 MiB).
    async with db.transaction() as tx:
        await tx.conn.execute(text("CREATE TABLE blobs (b BLOB NOT NULL)"))
    for _ in range(1000):
        async with db.transaction() as tx:
            await tx.conn.execute(text("INSERT INTO blobs VALUES (zeroblob(16000))"))
    wal = Path(sqlite_path + "-wal")
    assert wal.stat().st_size < 4 * 2**20, wal.stat().st_size
    async with db.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM blobs"))).scalar_one() == 1000
