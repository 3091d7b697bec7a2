"""Slows password guessing, per account and per client address.

Failures are rows in the database, so every server process sees the same counts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.config import Settings
from reverb.errors import ErrorCode, ReverbError
from reverb.storage import tokens as store


class LoginLimiter:
    def __init__(self, settings: Settings) -> None:
        self._window = timedelta(seconds=settings.login_failure_window_seconds)
        self._per_account = settings.login_max_failures_per_account
        self._per_address = settings.login_max_failures_per_address

    async def check(
        self, conn: AsyncConnection, *, account_key: str, address: str, now: datetime
    ) -> None:
        """Raise 429 while the account or the address has used up its failures."""
        n_acc, oldest_acc, n_addr, oldest_addr = await store.failures_since(
            conn, account_key=account_key, address=address, since=now - self._window
        )
        blocked_until: list[datetime] = []
        if n_acc >= self._per_account and oldest_acc is not None:
            blocked_until.append(oldest_acc + self._window)
        if n_addr >= self._per_address and oldest_addr is not None:
            blocked_until.append(oldest_addr + self._window)
        if blocked_until:
            wait = max(1, math.ceil((max(blocked_until) - now).total_seconds()))
            raise ReverbError(
                ErrorCode.RATE_LIMITED,
                "too many failed logins; try again later",
                429,
                headers={"Retry-After": str(wait)},
            )

    async def record_failure(
        self, conn: AsyncConnection, *, account_key: str, address: str, now: datetime
    ) -> None:
        await store.prune_failures(conn, now - self._window)
        await store.record_failure(conn, account_key=account_key, address=address, now=now)

    async def record_success(self, conn: AsyncConnection, *, account_key: str) -> None:
        await store.clear_account_failures(conn, account_key)
