from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query, Response

from reverb.api.deps import ClientAddress, CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import USERNAME_PATTERN, MeOut, Page, PasswordChange, ProfilePatch, UserOut
from reverb.errors import invalid

router = APIRouter(prefix="/api/users", tags=["users"])


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    """The username a page ended at; anything else is refused rather than half-understood."""
    try:
        raw = cursor.encode("ascii") + b"=" * (-len(cursor) % 4)
        value = base64.b64decode(raw, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        value = ""
    if not USERNAME_PATTERN.fullmatch(value):
        raise invalid("the cursor is not one this server gave out", field="cursor")
    return value


@router.get("/me", responses=responses(401))
async def me(user: CurrentUser) -> MeOut:
    return MeOut.of(user)


@router.patch("/me", responses=responses(401, 422))
async def update_me(body: ProfilePatch, user: CurrentUser, services: ServicesDep) -> MeOut:
    updated = await services.users.update_profile(
        user=user, display_name=body.display_name, bio=body.bio
    )
    return MeOut.of(updated)


@router.post("/me/password", status_code=204, responses=responses(401, 403, 422, 429))
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
) -> Page[UserOut]:
    """Username or display name containing `search` (any case), or email equal to it."""
    query = search.strip()
    if not query or "\x00" in query:
        raise invalid("search must be a non-blank string", field="search")
    after = _decode_cursor(cursor) if cursor else None
    found, next_after = await services.users.search(
        caller=user, query=query, after=after, limit=limit
    )
    return Page[UserOut](
        items=[UserOut.of(u) for u in found],
        next_cursor=_encode_cursor(next_after) if next_after else None,
    )


@router.get("/{user_id}", responses=responses(401, 404))
async def get_user(user_id: str, _: CurrentUser, services: ServicesDep) -> UserOut:
    return UserOut.of(await services.users.get(user_id))
