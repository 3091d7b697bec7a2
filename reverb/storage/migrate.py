"""Apply Alembic migrations without an alembic.ini: the script directory ships in the package."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from reverb.storage import sqlite_driver  # noqa: F401 -- registers the sqlite+reverb dialect

MIGRATIONS = Path(__file__).parent / "migrations"


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
