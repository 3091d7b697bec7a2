"""Apply Alembic migrations without an alembic.ini: the script directory ships in the package."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from reverb.storage import sqlite_driver  # noqa: F401 -- registers the sqlite+reverb dialect

MIGRATIONS = Path(__file__).parent / "migrations"

# How long a start waits for the database to accept a connection before saying it cannot reach
# it: long enough for a database container that is still starting, short enough that a wrong
# address is reported while someone is watching.
CONNECT_TIMEOUT_S = 10.0


class DatabaseUnreachable(Exception):
    """The database did not accept a connection; the message says what the driver said."""


class SchemaMismatch(Exception):
    """The database's schema is not the one this version of Reverb works with."""

    def __init__(self, current: str | None, head: str | None) -> None:
        self.current, self.head = current, head
        what = "has no Reverb schema yet" if current is None else f"is at migration {current}"
        super().__init__(f"the database {what}; this version of Reverb needs migration {head}")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser would read "%" in a password as interpolation.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade_connection(conn: AsyncConnection, url: str, revision: str = "head") -> None:
    """Upgrade through an open connection (used where an event loop is already running)."""

    def run(sync_conn: object) -> None:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    await conn.run_sync(run)


async def upgrade(url: str, revision: str = "head") -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await upgrade_connection(conn, url, revision)
    finally:
        await engine.dispose()


def upgrade_sync(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade(url, revision))


@functools.cache
def head_revision() -> str | None:
    """The newest migration this version of Reverb ships."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(conn: AsyncConnection) -> str | None:
    """The migration the database is at (None for a database never migrated)."""

    def read(sync_conn: object) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()  # type: ignore[arg-type]

    return await conn.run_sync(read)


async def prepare(url: str, *, migrate: bool) -> None:
    """What a server start does with its database: reach it, then migrate it (`migrate`) or
    make sure it is already at the newest migration. Raises DatabaseUnreachable or
    SchemaMismatch with a message fit for one line."""
    engine = create_async_engine(url)
    try:
        try:
            conn = await asyncio.wait_for(engine.connect(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise DatabaseUnreachable(f"no answer within {CONNECT_TIMEOUT_S:g} s") from None
        except (OSError, DBAPIError) as exc:
            raise DatabaseUnreachable(_first_line(exc)) from None
        try:
            if migrate:
                async with conn.begin():
                    await upgrade_connection(conn, url)
            elif (current := await current_revision(conn)) != head_revision():
                raise SchemaMismatch(current, head_revision())
        finally:
            await conn.close()
    finally:
        await engine.dispose()


def _first_line(exc: BaseException) -> str:
    # A DBAPIError's text is the driver's message, then the statement and a link: the first
    # line is the part that names the cause.
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0]}" if text else type(orig).__name__
