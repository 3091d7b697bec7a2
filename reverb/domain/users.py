"""Accounts as the rest of the code sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    email: str
    display_name: str
    bio: str
    avatar_key: str | None
    session_version: int
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None
    email_verified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What a successful login or refresh hands the caller; the refresh token exists only here."""

    user: User
    access_token: str
    refresh_token: str
    expires_in: int
