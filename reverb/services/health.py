"""Readiness: is every backing service answering?"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from redis.asyncio import Redis

from reverb.storage.db import Database
from reverb.storage.files import BlobStore
from reverb.storage.migrate import current_revision, head_revision

log = logging.getLogger(__name__)

# A readiness probe must answer quickly even when a dependency hangs.
CHECK_TIMEOUT_S = 2.0


@dataclass(slots=True)
class HealthService:
    db: Database
    redis: Redis | None
    media: BlobStore

    async def check(self) -> dict[str, str]:
        checks = {"database": await self._probe("database", self._database())}
        if self.redis is not None:
            checks["redis"] = await self._probe("redis", self.redis.ping())
        if (media := self.media.probe()) is not None:
            checks["media"] = await self._probe("media store", media)
        return checks

    async def _database(self) -> str:
        # A database someone rolled back or forgot to migrate answers, but every request
        # would fail on it: not ready.
        async with self.db.read() as conn:
            current = await current_revision(conn)
        return "ok" if current == head_revision() else "schema_mismatch"

    @staticmethod
    async def _probe(name: str, probe: Awaitable[object]) -> str:
        try:
            answer = await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
        except Exception as exc:
            log.warning("readiness: %s unavailable: %s", name, type(exc).__name__)
            return "unavailable"
        return answer if isinstance(answer, str) else "ok"
