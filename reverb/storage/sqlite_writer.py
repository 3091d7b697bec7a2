"""The one SQLite writer of a process: a task that owns the write connection and lends it, inside a
transaction, to one unit of work at a time.

SQLite lets one connection write at a time, across every process on the file. Within a process
the units of work queue here rather than inside SQLite's lock, and the task begins each one with
BEGIN IMMEDIATE (so a writer never fails half-way on a lock a deferred transaction could not
upgrade). When another process holds the lock, that BEGIN waits on the connection's thread (see
`sqlite_driver`), and the event loop carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reverb.storage.sqlite_driver import DriverConnection

log = logging.getLogger(__name__)

# Connections do not checkpoint at commit (see db.py); the writer does, this often. SQLite's own
# default is every 1,000 WAL pages, and a commit here writes a handful of pages.
CHECKPOINT_EVERY_COMMITS = 100


class WriterClosed(RuntimeError):
    pass


class _Turn:
    """One unit of work's place in the queue: the writer grants it the connection, the unit of
    work answers commit or roll back, the writer reports how the commit went."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.granted: asyncio.Future[AsyncConnection] = loop.create_future()
        self.outcome: asyncio.Future[bool] = loop.create_future()  # True: commit
        self.done: asyncio.Future[None] = loop.create_future()

    def abandon(self) -> None:
        """The unit of work is gone (cancelled): never grant it, or roll back what it began."""
        if not self.granted.done():
            self.granted.cancel()
        if not self.outcome.done():
            self.outcome.set_result(False)


def _fail(turn: _Turn, error: Exception) -> None:
    if not turn.granted.done():
        turn.granted.set_exception(error)
    elif not turn.granted.cancelled() and turn.granted.exception() is None and not turn.done.done():
        turn.done.set_exception(error)


class SqliteWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[_Turn] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """The write connection in a transaction (BEGIN IMMEDIATE), committed when the block
        ends, rolled back if it raises."""
        if self._closed:
            raise WriterClosed("the database is closed")
        turn = _Turn(asyncio.get_running_loop())
        self._start()
        self._queue.put_nowait(turn)
        try:
            conn = await turn.granted
        except BaseException:
            turn.abandon()
            raise
        try:
            yield conn
        except BaseException:
            turn.outcome.set_result(False)
            raise
        turn.outcome.set_result(True)
        await turn.done

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            # A database object outliving its event loop (a test's) starts afresh on the next.
            self._task = None
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="sqlite-writer")

    async def _run(self) -> None:
        try:
            while True:
                async with self._engine.connect() as conn:
                    await conn.execution_options(sqlite_begin="IMMEDIATE")
                    while not conn.invalidated:
                        await self._serve(conn, await self._queue.get())
        except Exception as exc:
            # The write connection cannot be opened: the units of work waiting are told, and
            # the next one to come starts a new writer.
            log.exception("SQLite writer stopped")
            self._fail_queued(exc)

    async def _serve(self, conn: AsyncConnection, turn: _Turn) -> None:
        if turn.granted.cancelled():
            return
        try:
            try:
                await conn.begin()
            except Exception as exc:
                if not turn.granted.done():
                    turn.granted.set_exception(exc)
                return
            if turn.granted.done():  # abandoned while BEGIN waited for the lock
                await conn.rollback()
                return
            turn.granted.set_result(conn)
            commit = await turn.outcome
            try:
                await (conn.commit() if commit else conn.rollback())
            except Exception as exc:
                turn.done.set_exception(exc)
                if conn.in_transaction():
                    await conn.rollback()
            else:
                turn.done.set_result(None)
                self._commits += 1
                if commit and self._commits % CHECKPOINT_EVERY_COMMITS == 0:
                    await self._checkpoint(conn)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else WriterClosed("the writer stopped")
            _fail(turn, error)
            raise

    async def _checkpoint(self, conn: AsyncConnection) -> None:
        """Copy the WAL back into the database file, on the connection's thread: at commit, in
        the loop, it would hold every socket up for its writes and fsyncs. Between two units of
        work on the write connection, nothing is appended meanwhile, so the checkpoint reaches
        the end of the WAL and the next writer starts it again from the beginning (a checkpoint
        that always lags behind the writers would let the WAL grow without end)."""
        driver = (await conn.get_raw_connection()).driver_connection
        assert isinstance(driver, DriverConnection)
        try:
            await driver.on_thread(
                lambda: driver.raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            )
        except Exception:
            log.exception("SQLite checkpoint failed")  # the WAL only grows until the next one

    def _fail_queued(self, error: Exception) -> None:
        while not self._queue.empty():
            _fail(self._queue.get_nowait(), error)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait([task])
        self._fail_queued(WriterClosed("the database is closed"))
        if self._commits:
            async with self._engine.connect() as conn:
                await self._checkpoint(conn)  # a clean stop leaves a short WAL
