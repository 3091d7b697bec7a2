"""Which errors are a database outage, on real errors of the real driver."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from reverb.errors import ErrorCode
from reverb.storage.db import Database
from reverb.storage.outage import DatabaseUnavailable, OutageLog, is_outage
from tests.ports import free_port


async def test_a_refused_connection_is_an_outage_and_answers_503() -> None:
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            async with db.read() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await db.close()
    assert raised.value.status == 503 and raised.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert raised.value.headers["Retry-After"] == "5"


async def test_a_socket_error_counts_only_from_the_driver() -> None:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(OSError, match="Connect call failed") as refused:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert is_outage(refused.value)  # raw from the driver, before SQLAlchemy wraps anything
    with pytest.raises(FileNotFoundError) as not_db:
        open("/nonexistent/dir/file")  # noqa: SIM115
    assert not is_outage(not_db.value)  # a file error is not the database's


def test_the_outage_log_says_it_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    outages = OutageLog()
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            outages.failed(ConnectionRefusedError(111, "Connect call failed"))
    lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
