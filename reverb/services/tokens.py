"""Access tokens (JWT) and refresh tokens (opaque, stored as hashes)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from reverb.config import Settings
from reverb.domain.users import User
from reverb.errors import ErrorCode, ReverbError

ACCESS = "access"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    session_version: int
    expires_at: float  # the token's `exp`: seconds since the epoch


def invalid_token(detail: str = "the access token is invalid or expired") -> ReverbError:
    return ReverbError(ErrorCode.INVALID_TOKEN, detail, 401, headers={"WWW-Authenticate": "Bearer"})


def hash_refresh_token(raw: str) -> str:
    # A fast hash is enough: the token has 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def new_refresh_token() -> tuple[str, str]:
    raw = secrets.token_urlsafe(32)
    return raw, hash_refresh_token(raw)


class AccessTokens:
    def __init__(self, settings: Settings) -> None:
        self._secret = settings.secret
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.ttl = settings.access_token_ttl_seconds

    def issue(self, user: User, now: datetime) -> str:
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user.id,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl)).timestamp()),
            "typ": ACCESS,
            "sv": user.session_version,
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                # Pinned: the header's own "alg" (including "none") is never trusted.
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            raise invalid_token() from None
        sub, sv, exp = claims.get("sub"), claims.get("sv"), claims.get("exp")
        if (
            claims.get("typ") != ACCESS
            or not isinstance(sub, str)
            or not isinstance(sv, int)
            or not isinstance(exp, int | float)
        ):
            raise invalid_token()
        return AccessClaims(user_id=sub, session_version=sv, expires_at=float(exp))
