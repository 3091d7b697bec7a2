"""Typed dependency aliases: routes declare what they need in their signature, nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis

from reverb.config import Settings
from reverb.domain.users import User
from reverb.errors import ErrorCode, ReverbError
from reverb.realtime.bus import Bus
from reverb.services.auth import AuthService
from reverb.services.chats import ChatService
from reverb.services.deletion import AccountDeletion
from reverb.services.export import DataExport
from reverb.services.health import HealthService
from reverb.services.live import PresenceService
from reverb.services.mailer import Mailer
from reverb.services.markers import Markers
from reverb.services.media import MediaService
from reverb.services.messages import MessageService
from reverb.services.publish import Publisher
from reverb.services.ratelimits import RateLimiter
from reverb.services.recovery import Recovery
from reverb.services.social import SocialLogin
from reverb.services.users import UserService
from reverb.storage.db import Database


@dataclass(slots=True)
class Services:
    """Everything a request may call, built once per process in the app's lifespan."""

    settings: Settings
    db: Database
    redis: Redis | None
    auth: AuthService
    users: UserService
    health: HealthService
    chats: ChatService
    markers: Markers
    messages: MessageService
    bus: Bus
    publisher: Publisher
    presence: PresenceService
    media: MediaService
    mailer: Mailer
    recovery: Recovery
    deletion: AccountDeletion
    social: SocialLogin
    export: DataExport
    limiter: RateLimiter


# Dependencies are `async def` though they never await: FastAPI runs a plain `def` on a worker
# thread, and that hop cost more than the rest of a history page together.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

# Declared for the OpenAPI schema, so /api/docs shows a working Authorize button.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


async def current_user(
    request: Request, services: ServicesDep, token: Annotated[str | None, Depends(_bearer)]
) -> User:
    if not token:
        raise ReverbError(
            ErrorCode.NOT_AUTHENTICATED,
            "send an access token: Authorization: Bearer <token>",
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = await services.auth.authenticate(token)
    # For the access log line (api.middleware), which names who made the request.
    request.state.user_id = user.id
    return user


async def client_address(request: Request) -> str:
    # uvicorn has already applied X-Forwarded-For from FORWARDED_ALLOW_IPS proxies.
    return request.client.host if request.client else "unknown"


CurrentUser = Annotated[User, Depends(current_user)]
ClientAddress = Annotated[str, Depends(client_address)]


async def verified_user(user: CurrentUser, services: ServicesDep) -> User:
    """The caller, where REQUIRE_EMAIL_VERIFICATION asks that their address be proven."""
    if services.settings.require_email_verification and user.email_verified_at is None:
        raise ReverbError(
            ErrorCode.EMAIL_UNVERIFIED,
            "confirm your e-mail address first (POST /api/auth/verify-email)",
            403,
        )
    return user


# For routers whose every route needs a proven address (chats, messages, uploads).
REQUIRE_VERIFIED = [Depends(verified_user)]
