"""Request rate limits: one rule per kind of action, kept in Redis when REDIS_URL is set (so
every server process counts against the same budget) and in this process otherwise.

Counting uses the `limits` library's sliding window counter: a rule "40 per 2 seconds" lets a
burst of 40 through, then about 20 a second, the same budget whether a client sends over REST or
the WebSocket. It keeps two counters per key (this window and the last, the last weighted by how
much of it still overlaps), so a hit costs O(1) in memory and one script call in Redis; the
library's exact moving window keeps every hit and, in memory, sweeps all keys on a thread after
each one, which a hot send path cannot afford.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from enum import Enum

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from reverb.config import Settings
from reverb.errors import ErrorCode, ReverbError

log = logging.getLogger(__name__)

# Redis answers in well under a millisecond; past this it is stopped or cut off, and the
# request goes ahead uncounted rather than waiting on it (a limit is a guard, not a gate).
STORE_TIMEOUT_S = 0.25
# After the shared store fails, counts stay in this process for this long before it is tried
# again: a stopped or hung Redis costs a request one timeout per interval at most, not each.
FALLBACK_S = 5.0


class Rule(Enum):
    """What is counted, and per whom (the key the caller passes)."""

    MESSAGES = "messages"  # per user: message sends, REST and WebSocket alike
    WRITES = "writes"  # per user: every other write (edits, reactions, uploads, chats...)
    ANONYMOUS = "anonymous"  # per client address: register, login, refresh, password reset
    WS_AUTH = "ws_auth"  # per client address: auth attempts on /ws
    UPLOADS = "uploads"  # per user: files and avatars (also writes)


def rules_of(settings: Settings) -> dict[Rule, RateLimitItem]:
    return {
        Rule.MESSAGES: parse(settings.rate_limit_messages),
        Rule.WRITES: parse(settings.rate_limit_writes),
        Rule.ANONYMOUS: parse(settings.rate_limit_anonymous),
        Rule.WS_AUTH: parse(settings.rate_limit_ws_auth),
        Rule.UPLOADS: parse(settings.rate_limit_uploads),
    }


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self._rules = rules_of(settings)
        storage: Storage
        if settings.redis_url:
            uri = "async+" + settings.redis_url
            if settings.redis_cluster:
                uri = uri.replace("async+redis", "async+redis+cluster", 1)
            found = storage_from_string(
                uri,
                implementation="redispy",
                key_prefix="reverb-limits",
                socket_timeout=STORE_TIMEOUT_S,
                socket_connect_timeout=STORE_TIMEOUT_S,
            )
            assert isinstance(found, Storage)  # an async+ scheme gives an asyncio storage
            storage = found
        else:
            storage = MemoryStorage()
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        # Stand-in while the shared store is away (without one, the limiter itself).
        self._local = self._limiter
        if settings.redis_url:
            self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared_from = -math.inf  # monotonic time from which the shared store is tried

    async def check(self, rule: Rule, key: str) -> None:
        """Count one action of `key` under `rule`; raise 429 `rate_limited` when over it."""
        wait = await self.retry_after(rule, key)
        if wait is not None:
            raise ReverbError(
                ErrorCode.RATE_LIMITED,
                "too many requests; try again later",
                429,
                headers={"Retry-After": str(wait)},
            )

    async def retry_after(self, rule: Rule, key: str) -> int | None:
        """Count one action; None when it is within the rule, else the seconds to wait."""
        item = self._rules[rule]
        limiter = self._limiter if time.monotonic() >= self._shared_from else self._local
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                if await limiter.hit(item, rule.value, key):
                    return None
                stats = await limiter.get_window_stats(item, rule.value, key)
        except Exception as exc:
            if limiter is self._local:
                raise
            # The shared store is away: count in this process for a while (one line per failure).
            self._shared_from = time.monotonic() + FALLBACK_S
            log.warning(
                "rate limits: the shared store failed (%s); counting in this process for %.0f s",
                type(exc).__name__,
                FALLBACK_S,
            )
            return await self.retry_after(rule, key)
        return max(1, math.ceil(stats.reset_time - time.time()))
