"""Readiness: is every backing service answering?"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from reverb.storage.db import Database

log = logging.getLogger(__name__)

# A readiness probe must answer quickly even when a dependency hangs.
CHECK_TIMEOUT_S = 2.0


@dataclass(slots=True)
class HealthService:
    db: Database
    redis: Redis | None

    async def check(self) -> dict[str, str]:
        checks = {"database": await self._probe("database", self.db.ping())}
        if self.redis is not None:
            checks["redis"] = await self._probe("redis", self.redis.ping())
        return checks

    @staticmethod
    async def _probe(name: str, probe: object) -> str:
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_S)  # type: ignore[arg-type]
        except Exception as exc:
            log.warning("readiness: %s unavailable: %s", name, type(exc).__name__)
            return "unavailable"
        return "ok"
