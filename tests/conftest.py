"""Fixtures shared by every test.

The suite runs against one database per run, chosen with `--db sqlite|postgres` (or the
REVERB_TEST_DB variable). Each test gets an empty, migrated database of its own: a fresh copy of a
migrated SQLite file, or a freshly truncated PostgreSQL database created for this run.
A PostgreSQL run that cannot reach PostgreSQL fails; it never skips.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from reverb.app import create_app
from reverb.config import Settings, async_database_url, load_settings
from reverb.storage.db import Database
from reverb.storage.migrate import upgrade_sync
from tests import s3_server
from tests.s3_server import S3Server
from tests.services import POSTGRES_TEST_URL

# The servers scripts/services settled on (tests.services has the defaults).
POSTGRES_ADMIN_URL = POSTGRES_TEST_URL
TEST_SECRET = "test-secret-" + "x" * 60
# Cheap hashes keep the suite fast; production parameters are exercised by the e2e tests.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 64, "argon2_parallelism": 1}
# The suite makes users, messages and sockets far faster than people do, all from one address:
# rate limits out of its way, except where a test asks for them (tests/integration/test_limits.py
# runs with the defaults).
UNLIMITED = {
    f"rate_limit_{rule}": "1000000 per second"
    for rule in ("messages", "writes", "anonymous", "ws_auth", "uploads")
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=os.environ.get("REVERB_TEST_DB", "sqlite"),
        choices=["sqlite", "postgres"],
        help="database the suite runs against",
    )
    parser.addoption(
        "--media",
        default=os.environ.get("REVERB_TEST_MEDIA", "local"),
        choices=["local", "s3"],
        help="media store the suite runs against (s3: an S3-compatible server of its own)",
    )


@pytest.fixture(scope="session", autouse=True)
def media_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """With --media s3, one S3-compatible server for the run (tests.s3_server)."""
    kind: str = request.config.getoption("--media")
    if kind == "local":
        yield kind
        return
    server = S3Server()
    server.start()
    try:
        server.create_bucket()
        s3_server.SUITE = server
        yield kind
    finally:
        s3_server.SUITE = None
        server.stop()


@dataclass(frozen=True)
class TestDatabase:
    kind: str
    template: str  # sqlite: path of a migrated file; postgres: URL of this run's database

    def fresh_url(self, tmp_path: Path) -> str:
        if self.kind == "sqlite":
            target = tmp_path / "reverb.db"
            shutil.copyfile(self.template, target)
            return f"sqlite:///{target}"
        asyncio.run(_truncate(self.template))
        return self.template


async def _pg(url: str) -> asyncpg.Connection:
    u = make_url(url)
    try:
        return await asyncpg.connect(
            user=u.username, password=u.password, host=u.host, port=u.port, database=u.database
        )
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {url} is not reachable ({exc}); start it, see README", False)


async def _truncate(url: str) -> None:
    conn = await _pg(url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            await conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def _admin(sql: str) -> None:
    conn = await _pg(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def test_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDatabase]:
    kind = request.config.getoption("--db")
    if kind == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        upgrade_sync(async_database_url(f"sqlite:///{path}"))
        yield TestDatabase("sqlite", str(path))
        return
    name = f"reverb_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_sync(async_database_url(url))
        yield TestDatabase("postgres", url)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(test_database: TestDatabase, tmp_path: Path) -> str:
    return test_database.fresh_url(tmp_path)


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "_env_file": None,
        # Never the working directory: each app gets a media folder of its own.
        "media_dir": tempfile.mkdtemp(prefix="reverb-media-"),
        **FAST_ARGON2,
        **UNLIMITED,
    }
    values.update(overrides)
    if "media_store" not in overrides:
        values = {**s3_server.suite_media(str(values["media_dir"])), **values}
    return load_settings(**values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, behind an HTTP client that calls it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://reverb.test") as client:
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_in_process(settings) as c:
        yield c


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """Direct access to the test's database, for arranging states no API call can reach."""
    database = Database(settings.sqlalchemy_url)
    try:
        yield database
    finally:
        await database.close()


# A redis-server of the test's own, for tests that stop and restart Redis.
from tests.redis_server import redis_server  # noqa: E402, F401
