from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from reverb.api import cursors, limits
from reverb.api.deps import ClientAddress, CurrentUser, Services, ServicesDep
from reverb.api.problems import responses
from reverb.api.routes.media import MULTIPART
from reverb.api.schemas import (
    USERNAME_PATTERN,
    DeleteMe,
    Id,
    Page,
    PasswordChange,
    ProfilePatch,
    Text,
)
from reverb.api.structs import Answer, returns
from reverb.api.uploads import read_upload
from reverb.domain.users import User
from reverb.domain.wire import MeView, UserView
from reverb.errors import invalid
from reverb.services.export import Export

router = APIRouter(prefix="/api/users", tags=["users"])


async def _me(user: User, services: Services) -> Answer:
    return Answer(MeView.of(user, online=bool(await services.presence.online([user.id]))))


@router.get("/me", responses={**returns(MeView), **responses(401)})
async def me(user: CurrentUser, services: ServicesDep) -> Answer:
    # Read again: the authenticated user may come from the access cache, a few seconds old.
    return await _me(await services.users.get(user.id), services)


@router.patch(
    "/me",
    responses={**returns(MeView), **responses(401, 422, 429)},
    dependencies=[limits.WRITES],
)
async def update_me(body: ProfilePatch, user: CurrentUser, services: ServicesDep) -> Answer:
    updated = await services.users.update_profile(
        user=user, display_name=body.display_name, bio=body.bio
    )
    return await _me(updated, services)


@router.put(
    "/me/avatar",
    openapi_extra=MULTIPART,
    responses={**returns(MeView), **responses(401, 413, 415, 422, 429)},
    dependencies=[limits.WRITES, limits.UPLOADS],
)
async def set_avatar(request: Request, user: CurrentUser, services: ServicesDep) -> Answer:
    """PNG, JPEG, WebP or GIF, at most 5 MiB and 4096x4096: cropped to a square of at most
    512x512 and re-encoded as WebP without metadata. Counts as an upload (429 past
    RATE_LIMIT_UPLOADS)."""
    got = await read_upload(
        request, limit=services.settings.max_avatar_bytes, scratch=services.media.scratch()
    )
    updated = await services.media.set_avatar(me=user, source=got.path, size=got.size)
    return await _me(updated, services)


@router.delete(
    "/me/avatar",
    responses={**returns(MeView), **responses(401, 429)},
    dependencies=[limits.WRITES],
)
async def remove_avatar(user: CurrentUser, services: ServicesDep) -> Answer:
    updated = await services.media.remove_avatar(me=user)
    return await _me(updated, services)


@router.delete(
    "/me",
    status_code=204,
    responses=responses(401, 403, 422, 429),
    dependencies=[limits.WRITES],
)
async def delete_me(
    body: DeleteMe, user: CurrentUser, services: ServicesDep, address: ClientAddress
) -> Response:
    """Delete the account, confirmed with its password (or, for an account without one, the
    `login_code` of a fresh provider login): every session ends and sockets close,
    the profile is anonymised and the e-mail freed, every group is left (an owner hands it on);
    messages stay, shown from "Deleted user"."""
    await services.deletion.delete(
        user=user, password=body.password, login_code=body.login_code, address=address
    )
    return Response(status_code=204)


@router.get(
    "/me/export",
    responses={**returns(Export), **responses(401, 429)},
    # A read, but the costliest one a user can ask for: counted as a write.
    dependencies=[limits.WRITES],
)
async def export_me(user: CurrentUser, services: ServicesDep) -> StreamingResponse:
    """The caller's data as one JSON document: profile, chats, and the messages they sent."""
    return StreamingResponse(
        services.export.document(user),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="reverb-export.json"'},
    )


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


@router.get("", responses={**returns(Page[UserView]), **responses(401, 422)})
async def search_users(
    user: CurrentUser,
    services: ServicesDep,
    search: Annotated[Text, Query(min_length=1, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[cursors.Cursor | None, Query()] = None,
) -> Answer:
    """Username or display name containing `search` (any case), or email equal to it."""
    query = search.strip()
    if not query:
        raise invalid("search must be a non-blank string", field="search")
    after = cursors.decode_str(cursor) if cursor else None
    if after is not None and not USERNAME_PATTERN.fullmatch(after):
        raise cursors.bad_cursor()
    found, next_after = await services.users.search(
        caller=user, query=query, after=after, limit=limit
    )
    here = await services.presence.online([u.id for u in found])
    return Answer(
        Page[UserView](
            items=[UserView.of(u, online=u.id in here) for u in found],
            next_cursor=cursors.encode(next_after) if next_after else None,
        )
    )


@router.get("/{user_id}", responses={**returns(UserView), **responses(401, 404, 422)})
async def get_user(user_id: Id, _: CurrentUser, services: ServicesDep) -> Answer:
    found = await services.users.get(user_id)
    return Answer(UserView.of(found, online=bool(await services.presence.online([found.id]))))
