"""Uploads per user: each upload (a file or an avatar) costs a decode and disk, so one user
gets MEDIA_UPLOADS_PER_MINUTE of them at once and then one every 60/N seconds.

The same token bucket the WebSocket gateway meters sends with, one per user, in this process.
"""

from __future__ import annotations

import math
import time

from reverb.errors import ErrorCode, ReverbError
from reverb.realtime.protocol import TokenBucket

# Buckets of users who have not uploaded for a while are full again, the same as no bucket:
# past this many, those are dropped, so idle users hold no memory.
PRUNE_AT = 10_000


class UploadLimiter:
    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._burst = per_minute
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, user_id: str, now: float | None = None) -> None:
        """Count one upload of `user_id`, or raise 429 `rate_limited` with Retry-After."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) >= PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[user_id] = TokenBucket(self._rate, self._burst, now)
        if not bucket.take(now):
            wait = max(1, math.ceil(bucket.wait(now)))
            raise ReverbError(
                ErrorCode.RATE_LIMITED,
                "too many uploads; try again later",
                429,
                headers={"Retry-After": str(wait)},
            )

    def _prune(self, now: float) -> None:
        full = [u for u, b in self._buckets.items() if _full(b, now)]
        for user_id in full:
            del self._buckets[user_id]


def _full(bucket: TokenBucket, now: float) -> bool:
    return bucket.tokens + (now - bucket.updated) * bucket.rate >= bucket.burst
