"""The engine and the unit of work.

`Database.transaction()` is the only way to write. Callbacks registered with `Tx.after_commit`
run once the commit has succeeded, never inside the transaction and never after a rollback:
this is where events are published, so no client hears of a change a rollback removed. They are
plain functions run straight after the commit returns, before anything else can run on the loop:
so their order is the order of the commits (two transactions of one chat are serialised by its
lock, and the second cannot commit before the first's callbacks ran).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from reverb.errors import ReverbError
from reverb.storage import sqlite_driver
from reverb.storage.outage import DatabaseUnavailable, OutageLog, is_outage
from reverb.storage.sqlite_writer import SqliteWriter

# Seconds to get a PostgreSQL connection, new or pooled: a healthy server answers in
# milliseconds, a loaded pool frees one within a second or two.
CONNECT_TIMEOUT_S = 5.0

# Must not block or raise: it hands the event to the relay (reverb.services.publish).
AfterCommit = Callable[[], None]


class Tx:
    """A connection inside an open transaction, plus what to do once it commits."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._after: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        self._after.append(callback)

    def committed(self) -> None:
        for callback in self._after:
            callback()


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
            kwargs = {
                "pool_size": pool_size,
                "max_overflow": pool_size,
                "pool_pre_ping": True,
                # A database that does not answer is an outage within seconds (503), not a
                # request held for asyncpg's 60 s connect timeout or the pool's 30 s wait.
                "pool_timeout": CONNECT_TIMEOUT_S,
                "connect_args": {"timeout": CONNECT_TIMEOUT_S},
            }
        self.engine = create_async_engine(url, **kwargs)
        self._sqlite_writer: SqliteWriter | None = None
        self._outages = OutageLog()
        if self.is_sqlite:
            _sqlite_setup(self.engine)
            self._sqlite_writer = SqliteWriter(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A unit of work, committed when the block ends (rolled back if it raises); its
        after-commit callbacks run as soon as the commit has returned.

        SQLite has one writer per file: this process's units of work take turns on the writer's
        connection, which wakes a unit of work whose commit it reported before it lends the
        connection to the next. On PostgreSQL the callbacks run before the connection goes back
        to the pool (an await that would let a later commit of the chat overtake them).

        A database that cannot be reached raises DatabaseUnavailable (nothing was stored, or,
        if the COMMIT itself was cut off, maybe the whole unit: never part of it)."""
        async with self._reachable():
            if self._sqlite_writer is not None:
                async with self._sqlite_writer.transaction() as conn:
                    tx = Tx(conn)
                    yield tx
                tx.committed()
                return
            async with self.engine.connect() as conn:
                tx = Tx(conn)
                async with conn.begin():
                    yield tx
                tx.committed()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only; one snapshot for the whole block."""
        async with self._reachable(), self.engine.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        """Connection-level failures become DatabaseUnavailable, logged once (rate-limited);
        every other error passes unchanged."""
        try:
            yield
        except ReverbError:
            raise
        except Exception as exc:
            if not is_outage(exc):
                raise
            self._outages.failed(exc)
            raise DatabaseUnavailable() from None

    async def close(self) -> None:
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
        await self.engine.dispose()
