"""Rate limits as route dependencies: one per rule of `reverb.services.ratelimits`."""

from __future__ import annotations

from fastapi import Depends

from reverb.api.deps import ClientAddress, CurrentUser, ServicesDep
from reverb.services.ratelimits import Rule


async def _messages(user: CurrentUser, services: ServicesDep) -> None:
    await services.limiter.check(Rule.MESSAGES, user.id)


async def _writes(user: CurrentUser, services: ServicesDep) -> None:
    await services.limiter.check(Rule.WRITES, user.id)


async def _uploads(user: CurrentUser, services: ServicesDep) -> None:
    # Checked before the body is read: a refused upload costs nothing.
    await services.limiter.check(Rule.UPLOADS, user.id)


async def _anonymous(address: ClientAddress, services: ServicesDep) -> None:
    await services.limiter.check(Rule.ANONYMOUS, address)


# For `dependencies=[...]` of a route (the user and the services are resolved once a request).
MESSAGES = Depends(_messages)
WRITES = Depends(_writes)
ANONYMOUS = Depends(_anonymous)
UPLOADS = Depends(_uploads)
