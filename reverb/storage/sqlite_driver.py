"""SQLite for SQLAlchemy's asyncio engine: quick statements on the event loop's thread, slow ones
and lock waits on the connection's own thread.

Why not SQLAlchemy's aiosqlite dialect: aiosqlite sends every call to a worker thread and back,
and the dialect makes three or four such calls per statement (cursor, execute, fetch, close).
Measured on this project's hosts (2 cores), one hop costs 80-110 µs of CPU, a statement through
SQLAlchemy and aiosqlite about 400 µs and a read transaction about 800 µs, against about 10 µs for
an indexed query run in place: a history page or a send batch would cost several times more.
Running every statement in place instead (storage/sqlite_inline did, before this) lets one slow
statement, or a wait for another process's write lock, freeze every socket of the process.

So each statement is first run here, in the loop's thread, with a budget:
- a SELECT (a statement that begins with SELECT: nothing else is known to write nothing)
  still running after `BUDGET_S` is interrupted through SQLite's progress handler
  (an interrupted SELECT leaves its transaction and snapshot as they were) and run again, whole,
  on the connection's own thread, rows included; the loop is held at most `BUDGET_S` per
  statement, however long the query (wall time: on a busy host a preempted quick query may move
  too, about 1% of a history benchmark's statements, at the cost of one hop). A full-text query
  (MATCH) goes to the thread at once: FTS5 reads its posting lists inside single steps the
  progress handler cannot interrupt (measured: a 300,000-message chat held the loop 80-130 ms
  before the first check);
- a statement that finds the database locked (SQLITE_BUSY: another process is writing) gave up at
  once, since connections are opened with no busy timeout; it is run again on the connection's
  thread with `BUSY_TIMEOUT_MS`, so the wait happens there;
- anything else (writes, COMMIT) runs in place to the end: interrupting a write would roll back
  its whole transaction, and every write of this project is a short indexed statement. In WAL
  mode, once a writer holds the write lock (BEGIN IMMEDIATE) nothing it does waits for a lock.

SQLite releases the GIL while it works, so a query on a worker thread slows the loop no more than
another process would. The dialect is SQLAlchemy's own pysqlite dialect, marked async and given
this driver through SQLAlchemy's generic asyncio adapters (`sqlalchemy.connectors.asyncio`, the
base of its aiosqlite, aiomysql and aioodbc support); it is registered under `sqlite+reverb`
with SQLAlchemy's dialect registry. Only public attributes of SQLAlchemy and `sqlite3` are used.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sqlalchemy import pool
from sqlalchemy.connectors.asyncio import (
    AsyncAdapt_dbapi_connection,
    AsyncAdapt_dbapi_module,
    AsyncIODBAPIConnection,
)
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.engine.url import URL

T = TypeVar("T")

DRIVER = "reverb"

# How long a statement may hold the event loop before it moves to a thread. Indexed queries
# (a history page, a send's lookups) take 10-200 µs; 2 ms keeps them all in place while a
# socket's delivery is held up by no more than a fraction of its usual latency.
BUDGET_S = 0.002
# SQLite calls the progress handler every this many virtual-machine steps (roughly every
# 10-50 µs of work): often enough to keep to the budget, rarely enough to cost nothing.
PROGRESS_STEPS = 1000
# How long a statement waits, on its thread, for another process's write lock before failing.
BUSY_TIMEOUT_MS = 10_000


def _is_select(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"


def _is_full_text(sql: str) -> bool:
    return " MATCH " in sql.upper()


class DriverConnection:
    """A sqlite3 connection whose statements run as the module docstring says."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self._deadline = math.inf
        self._overran = False
        self._thread: ThreadPoolExecutor | None = None
        raw.set_progress_handler(self._progress, PROGRESS_STEPS)

    def _progress(self) -> bool:
        if time.perf_counter() > self._deadline:
            self._overran = True
            return True  # interrupts the statement
        return False

    async def run(self, work: Callable[[], T], *, may_move: bool) -> T:
        """`work` (statements on `raw`) here if it is quick and finds no lock, else on the
        connection's thread. `may_move`: `work` may be interrupted and run again."""
        self._overran = False
        self._deadline = time.perf_counter() + BUDGET_S if may_move else math.inf
        try:
            return work()
        except sqlite3.OperationalError as exc:
            code = exc.sqlite_errorcode & 0xFF
            if code == sqlite3.SQLITE_BUSY:
                return await self._on_thread(work, wait_for_lock=True)
            if code == sqlite3.SQLITE_INTERRUPT and self._overran:
                return await self._on_thread(work, wait_for_lock=False)
            raise
        finally:
            self._deadline = math.inf

    async def _on_thread(self, work: Callable[[], T], *, wait_for_lock: bool) -> T:
        raw = self.raw

        def there() -> T:
            # No progress handler there: calling it would take the GIL every few steps.
            raw.set_progress_handler(None, 0)
            if wait_for_lock:
                raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            try:
                return work()
            finally:
                if wait_for_lock:
                    raw.execute("PRAGMA busy_timeout=0")
                raw.set_progress_handler(self._progress, PROGRESS_STEPS)

        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="reverb-sqlite")
        done = asyncio.get_running_loop().run_in_executor(self._thread, there)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            # The connection must be idle again before its owner rolls back or returns it.
            raw.interrupt()
            await asyncio.wait([done])
            raise

    async def on_thread(self, work: Callable[[], T]) -> T:
        """`work` on the connection's thread from the start (known to be slow)."""
        return await self._on_thread(work, wait_for_lock=True)

    async def begin(self, mode: str) -> None:
        await self.run(lambda: self.raw.execute(f"BEGIN {mode}"), may_move=False)

    def cursor(self) -> DriverCursor:
        return DriverCursor(self)

    async def commit(self) -> None:
        self.raw.commit()

    async def rollback(self) -> None:
        self.raw.rollback()

    async def close(self) -> None:
        self.raw.close()
        if self._thread is not None:
            self._thread.shutdown(wait=False)


class DriverCursor:
    """The asyncio cursor SQLAlchemy's adapter drives: rows are fetched with the statement."""

    def __init__(self, conn: DriverConnection) -> None:
        self._conn = conn
        self._cursor = conn.raw.cursor()
        self._rows: list[Any] = []

    async def __aenter__(self) -> DriverCursor:
        return self

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> DriverCursor:
        cursor = self._cursor

        def work() -> list[Any]:
            cursor.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else []

        if _is_full_text(sql):
            self._rows = await self._conn.on_thread(work)
        else:
            self._rows = await self._conn.run(work, may_move=_is_select(sql))
        return self

    async def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> DriverCursor:
        cursor = self._cursor
        await self._conn.run(lambda: cursor.executemany(sql, parameters), may_move=False)
        self._rows = []
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._cursor.close()


class AdaptedConnection(AsyncAdapt_dbapi_connection):
    """The PEP 249 face SQLAlchemy sees; `driver_connection` is the `DriverConnection`."""

    __slots__ = ()

    @property
    def isolation_level(self) -> str | None:
        return self.driver_connection.raw.isolation_level  # type: ignore[no-any-return]

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self.driver_connection.raw.isolation_level = value

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.driver_connection.raw.create_function(*args, **kwargs)


class DBAPI(AsyncAdapt_dbapi_module):
    """sqlite3's names, and a `connect` that opens a `DriverConnection`."""

    def __init__(self) -> None:
        super().__init__(sqlite3, dbapi_module=sqlite3)
        self.paramstyle = "qmark"
        for name in (
            "DatabaseError",
            "DataError",
            "Error",
            "IntegrityError",
            "InterfaceError",
            "InternalError",
            "NotSupportedError",
            "OperationalError",
            "ProgrammingError",
            "Warning",
            "sqlite_version",
            "sqlite_version_info",
            "PARSE_COLNAMES",
            "PARSE_DECLTYPES",
            "Binary",
        ):
            setattr(self, name, getattr(sqlite3, name))

    def connect(self, database: str, **kwargs: Any) -> AdaptedConnection:
        kwargs.pop("timeout", None)
        kwargs.pop("isolation_level", None)
        # No busy timeout: a statement that finds the database locked must return at once
        # (see DriverConnection.run). No implicit BEGIN: transactions are begun explicitly.
        # Any thread may run a statement, one at a time (the adapter and the pool see to it).
        kwargs["check_same_thread"] = False
        raw = sqlite3.connect(database, timeout=0, isolation_level=None, **kwargs)
        # The adapter calls only what DriverConnection and DriverCursor define.
        driver = cast(AsyncIODBAPIConnection, DriverConnection(raw))
        return AdaptedConnection(self, driver)


class SQLiteDialect_reverb(SQLiteDialect_pysqlite):
    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> DBAPI:
        return DBAPI()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool

    def get_driver_connection(self, connection: DBAPIConnection) -> DriverConnection:
        assert isinstance(connection, AdaptedConnection)
        driver: DriverConnection = connection.driver_connection
        return driver


def begin(dbapi_connection: DBAPIConnection, mode: str) -> None:
    """BEGIN `mode` straight to SQLite, from a sync SQLAlchemy event (`begin`): through
    SQLAlchemy's statement machinery a BEGIN cost about as much as the query it starts."""
    assert isinstance(dbapi_connection, AdaptedConnection)
    dbapi_connection.run_async(lambda driver: driver.begin(mode))


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_reverb")
