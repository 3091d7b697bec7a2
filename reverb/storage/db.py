"""The engine and the unit of work.

`Database.transaction()` is the only way to write. Callbacks registered with `Tx.after_commit`
run once the commit has succeeded, never inside the transaction and never after a rollback:
this is where events are published, so no client hears of a change a rollback removed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from reverb.storage import sqlite_driver
from reverb.storage.sqlite_writer import SqliteWriter

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]


class Tx:
    """A connection inside an open transaction, plus what to do once it commits."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._after: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        self._after.append(callback)


def _sqlite_setup(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cur = dbapi_conn.cursor()
        # WAL: readers never wait for the writer, nor the writer for readers.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL keeps it safe
        cur.execute("PRAGMA foreign_keys=ON")
        # No checkpoint at commit, in the event loop: the writer task runs them on its thread.
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()
        # SQLite's own lower() folds ASCII only; searches must fold every script alike.
        dbapi_conn.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # The writer asks for BEGIN IMMEDIATE: a deferred writer that first reads fails with
        # "database is locked" instead of waiting when another process's writer got there first.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        sqlite_driver.begin(conn.connection.dbapi_connection, mode)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            # Every request holding a read snapshot holds a connection; one beyond the pool was
            # opened (PRAGMAs, functions) and closed again per request, which cost more than
            # the request. SQLite connections are cheap to keep: keep plenty (one of them is
            # the writer's, held for good).
            kwargs = {"pool_size": pool_size * 2 + 1, "max_overflow": pool_size * 2}
        else:
            kwargs = {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
        self.engine = create_async_engine(url, **kwargs)
        self._sqlite_writer: SqliteWriter | None = None
        if self.is_sqlite:
            _sqlite_setup(self.engine)
            self._sqlite_writer = SqliteWriter(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._write_connection() as conn:
            tx = Tx(conn)
            yield tx
        for callback in tx._after:
            try:
                await callback()
            except Exception:
                # The change is committed; a failed notification must not turn it into an error.
                # Clients recover what they missed by resuming from their last seq.
                log.exception("after-commit callback failed")

    @asynccontextmanager
    async def _write_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed when the block ends. SQLite has one
        writer per file: this process's units of work take turns on its write connection."""
        if self._sqlite_writer is not None:
            async with self._sqlite_writer.transaction() as conn:
                yield conn
        else:
            async with self.engine.connect() as conn, conn.begin():
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only; one snapshot for the whole block."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
        await self.engine.dispose()
