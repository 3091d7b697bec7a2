from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from reverb.api import cursors, limits
from reverb.api.deps import ClientAddress, CurrentUser, Services, ServicesDep
from reverb.api.problems import responses
from reverb.api.routes.media import MULTIPART
from reverb.api.schemas import USERNAME_PATTERN, MeOut, Page, PasswordChange, ProfilePatch
from reverb.api.uploads import read_upload
from reverb.domain.users import User
from reverb.domain.wire import UserView
from reverb.errors import invalid

router = APIRouter(prefix="/api/users", tags=["users"])


async def _me(user: User, services: Services) -> MeOut:
    return MeOut.of(user, online=bool(await services.presence.online([user.id])))


@router.get("/me", responses=responses(401))
async def me(user: CurrentUser, services: ServicesDep) -> MeOut:
    # Read again: the authenticated user may come from the access cache, a few seconds old.
    return await _me(await services.users.get(user.id), services)


@router.patch("/me", responses=responses(401, 422, 429), dependencies=[limits.WRITES])
async def update_me(body: ProfilePatch, user: CurrentUser, services: ServicesDep) -> MeOut:
    updated = await services.users.update_profile(
        user=user, display_name=body.display_name, bio=body.bio
    )
    return await _me(updated, services)


@router.put(
    "/me/avatar",
    openapi_extra=MULTIPART,
    responses=responses(401, 413, 415, 422, 429),
    dependencies=[limits.WRITES],
)
async def set_avatar(request: Request, user: CurrentUser, services: ServicesDep) -> MeOut:
    """PNG, JPEG, WebP or GIF, at most 5 MiB and 4096x4096: cropped to a square of at most
    512x512 and re-encoded as WebP without metadata."""
    got = await read_upload(
        request, limit=services.settings.max_avatar_bytes, scratch=services.media.scratch()
    )
    updated = await services.media.set_avatar(me=user, source=got.path, size=got.size)
    return await _me(updated, services)


@router.delete("/me/avatar", responses=responses(401, 429), dependencies=[limits.WRITES])
async def remove_avatar(user: CurrentUser, services: ServicesDep) -> MeOut:
    updated = await services.media.remove_avatar(me=user)
    return await _me(updated, services)


@router.post(
    "/me/password",
    status_code=204,
    responses=responses(401, 403, 422, 429),
    dependencies=[limits.WRITES],
)
async def change_password(
    body: PasswordChange, user: CurrentUser, services: ServicesDep, address: ClientAddress
) -> Response:
    """Every refresh and access token of the user stops working; log in again."""
    await services.auth.change_password(
        user=user,
        current_password=body.current_password,
        new_password=body.new_password,
        address=address,
    )
    return Response(status_code=204)


@router.get("", responses=responses(401, 422))
async def search_users(
    user: CurrentUser,
    services: ServicesDep,
    search: Annotated[str, Query(min_length=1, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[UserView]:
    """Username or display name containing `search` (any case), or email equal to it."""
    query = search.strip()
    if not query or "\x00" in query:
        raise invalid("search must be a non-blank string", field="search")
    after = cursors.decode_str(cursor) if cursor else None
    if after is not None and not USERNAME_PATTERN.fullmatch(after):
        raise cursors.bad_cursor()
    found, next_after = await services.users.search(
        caller=user, query=query, after=after, limit=limit
    )
    here = await services.presence.online([u.id for u in found])
    return Page[UserView](
        items=[UserView.of(u, online=u.id in here) for u in found],
        next_cursor=cursors.encode(next_after) if next_after else None,
    )


@router.get("/{user_id}", responses=responses(401, 404))
async def get_user(user_id: str, _: CurrentUser, services: ServicesDep) -> UserView:
    found = await services.users.get(user_id)
    return UserView.of(found, online=bool(await services.presence.online([found.id])))
