from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import OAuth2PasswordRequestForm

from reverb.api import limits
from reverb.api.deps import ClientAddress, CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import LoginIn, RefreshIn, RegisterIn, SessionOut, TokenOut

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=201,
    responses=responses(409, 422, 429),
    dependencies=[limits.ANONYMOUS],
)
async def register(body: RegisterIn, services: ServicesDep) -> SessionOut:
    issued = await services.auth.register(
        username=body.username,
        email=str(body.email),
        password=body.password,
        display_name=body.display_name,
    )
    return SessionOut.of(issued)


@router.post("/login", responses=responses(401, 422, 429), dependencies=[limits.ANONYMOUS])
async def login(body: LoginIn, services: ServicesDep, address: ClientAddress) -> SessionOut:
    """Log in with `email` or `username`. Repeated failures answer 429 with `Retry-After`."""
    issued = await services.auth.login(login=body.login, password=body.password, address=address)
    return SessionOut.of(issued)


@router.post("/refresh", responses=responses(401, 422, 429), dependencies=[limits.ANONYMOUS])
async def refresh(body: RefreshIn, services: ServicesDep) -> SessionOut:
    """Trade a refresh token for a new pair. Presenting an already-used token ends the login."""
    return SessionOut.of(await services.auth.refresh(refresh_token=body.refresh_token))


@router.post(
    "/logout", status_code=204, responses=responses(422, 429), dependencies=[limits.ANONYMOUS]
)
async def logout(body: RefreshIn, services: ServicesDep) -> Response:
    await services.auth.logout(refresh_token=body.refresh_token)
    return Response(status_code=204)


@router.post(
    "/logout-all", status_code=204, responses=responses(401, 429), dependencies=[limits.WRITES]
)
async def logout_all(user: CurrentUser, services: ServicesDep) -> Response:
    """End every login of the caller: all refresh tokens and all access tokens stop working."""
    await services.auth.logout_everywhere(user=user)
    return Response(status_code=204)


@router.post("/token", responses=responses(401, 422, 429), dependencies=[limits.ANONYMOUS])
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    services: ServicesDep,
    address: ClientAddress,
) -> TokenOut:
    """OAuth2 password flow for the Authorize button of /api/docs; `username` may be an email."""
    issued = await services.auth.login(login=form.username, password=form.password, address=address)
    return TokenOut(access_token=issued.access_token)
