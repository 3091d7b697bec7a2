"""The per-process cache of access tokens and users: bounds, ages, and forgetting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from reverb.domain.users import User
from reverb.services.access_cache import AccessCache
from reverb.services.tokens import AccessClaims

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def user(user_id: str, session_version: int = 0) -> User:
    return User(
        id=user_id,
        username=f"u{user_id}",
        email=f"{user_id}@example.com",
        display_name="U",
        bio="",
        avatar_key=None,
        session_version=session_version,
        last_seen_at=None,
        created_at=NOW,
        updated_at=NOW,
    )


def cache(*, max_entries: int = 100, max_age_s: float = 5.0) -> tuple[AccessCache, Clock, Clock]:
    monotonic, wall = Clock(), Clock()
    made = AccessCache(max_entries=max_entries, max_age_s=max_age_s, monotonic=monotonic, wall=wall)
    return made, monotonic, wall


def test_claims_are_kept_until_the_token_expires() -> None:
    c, _, wall = cache()
    claims = AccessClaims(user_id="a", session_version=0, expires_at=wall.now + 60)
    c.remember_claims("token", claims)
    wall.now += 59.9
    assert c.claims("token") == claims
    wall.now += 0.1
    assert c.claims("token") is None
    assert c.claims("never seen") is None


def test_a_user_is_kept_at_most_max_age() -> None:
    c, monotonic, _ = cache(max_age_s=5.0)
    c.remember_user(user("a"), c.generation)
    monotonic.now += 4.9
    assert c.user("a") == user("a")
    monotonic.now += 0.1
    assert c.user("a") is None


def test_forgetting_a_user_and_clearing() -> None:
    c, _, _ = cache()
    for name in ("a", "b", "c"):
        c.remember_user(user(name), c.generation)
    c.forget_user("a")
    assert c.user("a") is None
    assert c.user("b") is not None
    c.clear()
    assert c.user("b") is None and c.user("c") is None


def test_a_read_that_raced_a_forget_is_not_remembered() -> None:
    c, _, _ = cache()
    started = c.generation  # a read of a's row begins...
    c.forget_user("a")  # ...a's sessions end meanwhile...
    c.remember_user(user("a"), started)  # ...and the row it read may be the old one
    assert c.user("a") is None
    started = c.generation
    c.clear()
    c.remember_user(user("a"), started)
    assert c.user("a") is None
    c.remember_user(user("a"), c.generation)  # a read begun after both is kept
    assert c.user("a") is not None


def test_the_cache_is_bounded_and_drops_the_oldest_first() -> None:
    c, _, wall = cache(max_entries=3)
    for i in range(10):
        c.remember_claims(
            f"t{i}", AccessClaims(user_id=str(i), session_version=0, expires_at=wall.now + 60)
        )
        c.remember_user(user(str(i)), c.generation)
    assert len(c) == 6  # three tokens, three users
    assert [c.claims(f"t{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    assert [c.user(str(i)) is not None for i in range(10)] == [False] * 7 + [True] * 3
    # Remembering a user again refreshes it in place: no second entry, no eviction.
    c.remember_user(replace(user("8"), display_name="new"), c.generation)
    assert len(c) == 6
    assert c.user("7") is not None
    assert c.user("8") == replace(user("8"), display_name="new")
