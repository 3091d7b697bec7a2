"""Verified access tokens and the users they belong to, remembered per process.

Checking an access token costs a JWT verification and a read of the user's row (a password
change or "log out everywhere" bumps the row's session version, which ends every token issued
before). Both are remembered here so a busy client's requests cost neither:

- a token's verified claims until the token expires (a JWT never changes);
- a user's row for at most `MAX_AGE_S`, and only until their sessions end: the process that
  ends them forgets at once, every other process when the `session.revoked` envelope reaches it
  through the bus (the hub calls `forget_user`), and all of them forget everything when their
  bus subscription comes back after a loss (`clear`), since a revocation may have been missed.

A read of the user's row that was under way while a user was forgotten is not remembered (it may
have seen the row as it was before): every forget bumps `generation`, and a row is only
remembered under the generation its read began in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from reverb.domain.users import User
from reverb.services.tokens import AccessClaims

# How long a remembered user row stays good without news from the bus. The bus brings a
# revocation within milliseconds; this bounds only what happens when the subscription is down
# without saying so (a Redis that hangs): then a revoked token still works on this process for
# at most this long, and a profile changed on another process may appear in what this one
# builds from the cached user (a message's sender) for as long. 5 s is far below the 15 minutes
# an access token lives anyway, and long enough that a client paging or polling reads its row
# once per 5 s rather than once per request (the cost it saves is one read per request).
MAX_AGE_S = 5.0
# Per table (tokens, users). 10,000 users active within a few seconds is more than one process
# serves; an entry is about 1 KiB, so the cache holds at most about 20 MiB.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Claims:
    claims: AccessClaims
    expires_at: float  # wall-clock seconds, the token's own `exp`


@dataclass(frozen=True, slots=True)
class _User:
    user: User
    fresh_until: float  # monotonic seconds


class AccessCache:
    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        max_age_s: float = MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._wall = wall
        self._claims: dict[str, _Claims] = {}
        self._users: dict[str, _User] = {}
        self.generation = 0

    def __len__(self) -> int:
        return len(self._claims) + len(self._users)

    # --- tokens -----------------------------------------------------------------------------

    def claims(self, token: str) -> AccessClaims | None:
        """The claims of a token verified before and not yet expired."""
        entry = self._claims.get(token)
        if entry is None:
            return None
        if entry.expires_at <= self._wall():
            del self._claims[token]
            return None
        return entry.claims

    def remember_claims(self, token: str, claims: AccessClaims) -> None:
        _bounded_put(self._claims, token, _Claims(claims, claims.expires_at), self._max_entries)

    # --- users ------------------------------------------------------------------------------

    def user(self, user_id: str) -> User | None:
        entry = self._users.get(user_id)
        if entry is None:
            return None
        if entry.fresh_until <= self._monotonic():
            del self._users[user_id]
            return None
        return entry.user

    def remember_user(self, user: User, generation: int) -> None:
        """Remember a row read while `generation` was current (see the module docstring)."""
        if generation != self.generation:
            return
        entry = _User(user, self._monotonic() + self._max_age_s)
        _bounded_put(self._users, user.id, entry, self._max_entries)

    def forget_user(self, user_id: str) -> None:
        """The user's sessions ended, or their profile changed: read their row again."""
        self.generation += 1
        self._users.pop(user_id, None)

    def clear(self) -> None:
        """Revocations may have been missed: read every user's row again."""
        self.generation += 1
        self._users.clear()


V = TypeVar("V")


def _bounded_put(table: dict[str, V], key: str, value: V, limit: int) -> None:
    # Dicts keep insertion order: the first key is the one remembered longest ago, so dropping
    # it drops the entry nearest to expiring anyway. (Re-inserting moves a key to the end.)
    table.pop(key, None)
    if len(table) >= limit:
        del table[next(iter(table))]
    table[key] = value
