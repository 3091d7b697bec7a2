"""Telling a database that cannot be reached from a statement that failed, and saying so once.

A connection-level failure (refused, dropped, shut down, no pooled connection in time) is an
outage: expected, answered 503 / `service_unavailable` / close 1013, logged as one short line
(at most one every few seconds, with a count of the ones not logged). Everything else stays
what it was: a bug or a refusal, with its traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import asyncpg
from sqlalchemy import exc as sa_exc

from reverb.errors import ErrorCode, ReverbError

log = logging.getLogger(__name__)

# What a client waits before trying again: a PostgreSQL restart or failover takes seconds, and
# the pool reconnects on the first request after it.
RETRY_AFTER_S = 5
# At most one outage line per this many seconds (a busy server fails hundreds of requests a
# second while the database is away).
LOG_INTERVAL_S = 5.0

# SQLSTATEs of a server that is going or not yet there: class 08 (connection exception),
# admin shutdown, crash shutdown, cannot connect now, too many connections.
_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_DRIVERS = ("/asyncpg/", "/sqlalchemy/")


class DatabaseUnavailable(ReverbError):
    def __init__(self) -> None:
        super().__init__(
            ErrorCode.SERVICE_UNAVAILABLE,
            "the database cannot be reached; try again shortly",
            503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__]


def _from_driver(error: BaseException) -> bool:
    """Raised in the driver or SQLAlchemy (a socket error there is the database's socket)."""
    tb = error.__traceback__
    while tb is not None:
        if any(d in tb.tb_frame.f_code.co_filename for d in _DRIVERS):
            return True
        tb = tb.tb_next
    return False


def is_outage(error: BaseException) -> bool:
    for e in _chain(error):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sa_exc.TimeoutError):  # no pooled connection in time
            return True
        if isinstance(e, asyncpg.exceptions.ConnectionDoesNotExistError):
            return True
        if isinstance(e, asyncpg.PostgresError):
            state = str(getattr(e, "sqlstate", "") or "")
            if state.startswith("08") or state in _SQLSTATES:
                return True
        if isinstance(e, asyncpg.InterfaceError) and "closed" in str(e):
            return True
        if isinstance(e, OSError) and _from_driver(e):
            return True
    return False


class OutageLog:
    """One line per failure, at most one every LOG_INTERVAL_S (the rest counted)."""

    def __init__(self, what: str = "database") -> None:
        self._what = what
        self._last = -LOG_INTERVAL_S
        self._unlogged = 0

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last < LOG_INTERVAL_S:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        self._last, self._unlogged = now, 0
        log.warning("%s unavailable: %s%s", self._what, _brief(error), more)


def _brief(error: BaseException) -> str:
    """The innermost cause, in one line: the driver's words, not SQLAlchemy's page."""
    inner = error
    for e in _chain(error):
        inner = e
    text = str(inner).splitlines()[0] if str(inner) else ""
    return f"{type(inner).__name__}: {text}"[:300]
