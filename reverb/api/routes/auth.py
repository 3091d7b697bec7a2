from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Response
from fastapi.responses import RedirectResponse

from reverb.api import limits
from reverb.api.deps import ClientAddress, CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import (
    Accepted,
    CodeIn,
    ForgotIn,
    LoginCodeIn,
    LoginIn,
    ProviderOut,
    RefreshIn,
    RegisterIn,
    ResetIn,
    SessionOut,
    Text,
    TokenForm,
    TokenOut,
)
from reverb.api.structs import Answer, returns
from reverb.domain.wire import MeView

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=201,
    responses={**returns(SessionOut, 201), **responses(409, 422, 429)},
    dependencies=[limits.ANONYMOUS],
)
async def register(body: RegisterIn, services: ServicesDep) -> Answer:
    issued = await services.auth.register(
        username=body.username,
        email=str(body.email),
        password=body.password,
        display_name=body.display_name,
    )
    return Answer(SessionOut.of(issued), status_code=201)


@router.post(
    "/login",
    responses={**returns(SessionOut), **responses(401, 422, 429)},
    dependencies=[limits.ANONYMOUS],
)
async def login(body: LoginIn, services: ServicesDep, address: ClientAddress) -> Answer:
    """Log in with `email` or `username`. Repeated failures answer 429 with `Retry-After`."""
    issued = await services.auth.login(login=body.login, password=body.password, address=address)
    return Answer(SessionOut.of(issued))


@router.post(
    "/refresh",
    responses={**returns(SessionOut), **responses(401, 422, 429)},
    dependencies=[limits.ANONYMOUS],
)
async def refresh(body: RefreshIn, services: ServicesDep) -> Answer:
    """Trade a refresh token for a new pair. Presenting an already-used token ends the login."""
    return Answer(SessionOut.of(await services.auth.refresh(refresh_token=body.refresh_token)))


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


@router.post(
    "/token",
    responses={**returns(TokenOut), **responses(401, 422, 429)},
    dependencies=[limits.ANONYMOUS],
)
async def token(
    form: Annotated[TokenForm, Form()],
    services: ServicesDep,
    address: ClientAddress,
) -> Answer:
    """OAuth2 password flow for the Authorize button of /api/docs; `username` may be an email."""
    issued = await services.auth.login(login=form.username, password=form.password, address=address)
    return Answer(TokenOut(access_token=issued.access_token))


@router.post(
    "/forgot-password",
    status_code=202,
    responses={**returns(Accepted, 202), **responses(422, 429)},
    dependencies=[limits.ANONYMOUS],
)
async def forgot_password(body: ForgotIn, services: ServicesDep) -> Answer:
    """Mail a 6-digit reset code if the address has an account. The answer is the same, and
    comes as fast, whether or not it has one."""
    services.recovery.forgot_password(email=str(body.email))
    return Answer(Accepted(), status_code=202)


@router.post(
    "/reset-password",
    responses={**returns(SessionOut), **responses(400, 422, 429)},
    dependencies=[limits.ANONYMOUS],
)
async def reset_password(body: ResetIn, services: ServicesDep) -> Answer:
    """A new password with the mailed code (once, within its lifetime, void after 5 wrong
    tries). Every earlier session ends and the user's sockets close; a new session begins."""
    issued = await services.recovery.reset_password(
        email=str(body.email), code=body.code, new_password=body.new_password
    )
    return Answer(SessionOut.of(issued))


@router.post(
    "/verify-email",
    responses={**returns(MeView), **responses(400, 401, 422, 429)},
    dependencies=[limits.WRITES],
)
async def verify_email(body: CodeIn, user: CurrentUser, services: ServicesDep) -> Answer:
    """Prove the account's address with the code mailed to it."""
    return Answer(MeView.of(await services.recovery.verify_email(user=user, code=body.code)))


@router.post(
    "/resend-verification",
    status_code=202,
    responses={**returns(Accepted, 202), **responses(401, 429)},
    dependencies=[limits.WRITES],
)
async def resend_verification(user: CurrentUser, services: ServicesDep) -> Answer:
    """A new verification code (the earlier one stops working); at most one a minute."""
    await services.recovery.resend_verification(user=user)
    return Answer(Accepted(), status_code=202)


@router.get("/providers", responses=returns(list[ProviderOut]))
async def providers(services: ServicesDep) -> Answer:
    """The social and OpenID Connect login providers configured (`[]` when none)."""
    return Answer(
        [ProviderOut(name=p.name, display_name=p.title) for p in services.social.providers()]
    )


ProviderName = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,32}$")]


@router.get(
    "/oauth/{provider}/start",
    status_code=302,
    response_class=RedirectResponse,
    responses=responses(404, 422, 429),
    dependencies=[limits.ANONYMOUS],
)
async def oauth_start(
    provider: ProviderName,
    redirect_uri: Annotated[Text, Query(min_length=1, max_length=2048)],
    services: ServicesDep,
) -> RedirectResponse:
    """Off to the provider (authorization code with PKCE, `state` and, for OpenID Connect,
    `nonce`). `redirect_uri`, where the app gets its `login_code`, must be listed in
    OAUTH_REDIRECT_URIS."""
    url = await services.social.start(name=provider, redirect_uri=redirect_uri)
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.get(
    "/oauth/{provider}/callback",
    status_code=302,
    response_class=RedirectResponse,
    responses=responses(400, 404, 422, 429),
    dependencies=[limits.ANONYMOUS],
)
async def oauth_callback(
    provider: ProviderName,
    services: ServicesDep,
    state: Annotated[Text | None, Query(max_length=128)] = None,
    code: Annotated[Text | None, Query(max_length=2048)] = None,
    error: Annotated[Text | None, Query(max_length=256)] = None,
) -> RedirectResponse:
    """Back from the provider: on to the app's `redirect_uri` with `?login_code=` (traded at
    /api/auth/oauth/exchange within 60 s) or `?error=`."""
    url = await services.social.callback(name=provider, state=state, code=code, error=error)
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.post(
    "/oauth/exchange",
    responses={**returns(SessionOut), **responses(400, 422, 429)},
    dependencies=[limits.ANONYMOUS],
)
async def oauth_exchange(body: LoginCodeIn, services: ServicesDep) -> Answer:
    """A `login_code` from the callback, once and within 60 s, for a session."""
    return Answer(SessionOut.of(await services.social.exchange(login_code=body.login_code)))
