"""The engine and the unit of work.

`Database.transaction()` is the only way to write. Callbacks registered with `Tx.after_commit`
run once the commit has succeeded, never inside the transaction and never after a rollback:
this is where events are published, so no client hears of a change a rollback removed. They are
plain functions run straight after the commit returns, before anything else can run on the loop:
so their order is the order of the commits (two transactions of one chat are serialised by its
lock, and the second cannot commit before the first's callbacks ran).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from reverb.storage import sqlite_inline

# Must not block or raise: it hands the event to the relay (reverb.services.publish).
AfterCommit = Callable[[], None]

# How long a SQLite writer waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000


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
        # Let SQLAlchemy's "begin" event below emit BEGIN itself, so writers can ask for
        # BEGIN IMMEDIATE: a deferred writer that first reads fails with "database is locked"
        # instead of waiting when another writer got there first.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL keeps it safe
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()
        # SQLite's own lower() folds ASCII only; searches must fold every script alike.
        dbapi_conn.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite_inline.InlineConnection):
            # Straight to SQLite: through SQLAlchemy's statement machinery a BEGIN cost about
            # as much as the query it starts.
            driver.begin(mode)
        else:
            conn.exec_driver_sql(f"BEGIN {mode}")


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
            # the request. SQLite connections are cheap to keep: keep plenty.
            kwargs = {
                "async_creator": sqlite_inline.creator(make_url(url).database or ""),
                "pool_size": pool_size * 2,
                "max_overflow": pool_size * 2,
            }
        else:
            kwargs = {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
        self.engine = create_async_engine(url, **kwargs)
        # SQLite statements run inline (see sqlite_inline): a second writer of this process
        # must wait here, not inside BEGIN IMMEDIATE, where it would hold up the loop and so
        # the very writer it waits for.
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            _sqlite_setup(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._writer(), self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.execution_options(sqlite_begin="IMMEDIATE")
            tx = Tx(conn)
            async with conn.begin():
                yield tx
            for callback in tx._after:
                callback()

    def _writer(self) -> AbstractAsyncContextManager[object]:
        return self._sqlite_writer if self._sqlite_writer is not None else nullcontext()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only; one snapshot for the whole block."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
