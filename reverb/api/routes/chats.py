from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from reverb.api import cursors, limits
from reverb.api.deps import CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import (
    ChatIn,
    ChatPatch,
    DirectChatIn,
    EventPage,
    MemberIn,
    Page,
    RoleIn,
    Seq,
    SeqIn,
)
from reverb.domain.wire import ChatView, MemberView

router = APIRouter(prefix="/api/chats", tags=["chats"])


@router.get("", responses=responses(401, 422))
async def list_chats(
    user: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ChatView]:
    """The caller's chats, most recent activity first."""
    before = cursors.decode_keyset(cursor) if cursor else None
    page, next_key = await services.chats.list_chats(me=user, before=before, limit=limit)
    return Page[ChatView](
        items=page, next_cursor=cursors.encode_keyset(*next_key) if next_key else None
    )


@router.post(
    "",
    status_code=201,
    responses={
        200: {"model": ChatView, "description": "The existing direct chat"},
        **responses(401, 404, 422, 429),
    },
    dependencies=[limits.WRITES],
)
async def create_chat(
    body: ChatIn, user: CurrentUser, services: ServicesDep, response: Response
) -> ChatView:
    """A direct chat is access-or-create: 201 when new, 200 with the pair's existing chat.
    A group chat is always new, with the caller as its owner."""
    if isinstance(body, DirectChatIn):
        chat, created = await services.chats.create_direct(me=user, user_id=body.user_id)
        response.status_code = 201 if created else 200
        return chat
    return await services.chats.create_group(
        me=user, name=body.name, description=body.description, member_ids=body.member_ids
    )


@router.get("/{chat_id}", responses=responses(401, 404))
async def get_chat(chat_id: str, user: CurrentUser, services: ServicesDep) -> ChatView:
    return await services.chats.get(me=user, chat_id=chat_id)


@router.patch(
    "/{chat_id}", responses=responses(401, 403, 404, 409, 422, 429), dependencies=[limits.WRITES]
)
async def update_chat(
    chat_id: str, body: ChatPatch, user: CurrentUser, services: ServicesDep
) -> ChatView:
    """Rename or describe a group (owner or admin)."""
    return await services.chats.update(
        me=user, chat_id=chat_id, name=body.name, description=body.description
    )


@router.get("/{chat_id}/members", responses=responses(401, 404))
async def list_members(chat_id: str, user: CurrentUser, services: ServicesDep) -> Page[MemberView]:
    """Every member, longest-standing first, with their read and delivered markers."""
    members = await services.chats.members(me=user, chat_id=chat_id)
    return Page[MemberView](items=members, next_cursor=None)


@router.post(
    "/{chat_id}/members",
    status_code=201,
    responses=responses(401, 403, 404, 409, 422, 429),
    dependencies=[limits.WRITES],
)
async def add_member(
    chat_id: str, body: MemberIn, user: CurrentUser, services: ServicesDep
) -> MemberView:
    return await services.chats.add_member(me=user, chat_id=chat_id, user_id=body.user_id)


@router.patch(
    "/{chat_id}/members/{user_id}",
    responses=responses(401, 403, 404, 409, 422, 429),
    dependencies=[limits.WRITES],
)
async def set_role(
    chat_id: str, user_id: str, body: RoleIn, user: CurrentUser, services: ServicesDep
) -> MemberView:
    return await services.chats.set_role(me=user, chat_id=chat_id, user_id=user_id, role=body.role)


@router.delete(
    "/{chat_id}/members/{user_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 429),
    dependencies=[limits.WRITES],
)
async def remove_member(
    chat_id: str, user_id: str, user: CurrentUser, services: ServicesDep
) -> Response:
    """Remove a member (owner or admin), or leave (your own id). An owner who leaves hands
    ownership to the longest-standing admin, else the longest-standing member."""
    await services.chats.remove_member(me=user, chat_id=chat_id, user_id=user_id)
    return Response(status_code=204)


@router.post(
    "/{chat_id}/read",
    status_code=204,
    responses=responses(401, 404, 422, 429),
    dependencies=[limits.WRITES],
)
async def mark_read(
    chat_id: str, body: SeqIn, user: CurrentUser, services: ServicesDep
) -> Response:
    """`last_read_seq` becomes max(old, min(seq, last_seq)); it never moves backwards."""
    await services.markers.mark(me=user, chat_id=chat_id, seq=body.seq, read=True)
    return Response(status_code=204)


@router.post(
    "/{chat_id}/delivered",
    status_code=204,
    responses=responses(401, 404, 422, 429),
    dependencies=[limits.WRITES],
)
async def mark_delivered(
    chat_id: str, body: SeqIn, user: CurrentUser, services: ServicesDep
) -> Response:
    """As the WebSocket `delivered` frame: raises `last_delivered_seq`, never lowers it."""
    await services.markers.mark(me=user, chat_id=chat_id, seq=body.seq, read=False)
    return Response(status_code=204)


@router.get("/{chat_id}/events", response_model=EventPage, responses=responses(401, 404, 422))
async def list_events(
    chat_id: str,
    user: CurrentUser,
    services: ServicesDep,
    after: Annotated[Seq, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The chat's event log after `after`, in order: the same events the WebSocket delivers."""
    items, more = await services.chats.events(me=user, chat_id=chat_id, after=after, limit=limit)
    # The events are stored encoded; splice them in rather than decode and re-encode.
    body = '{"items":[' + ",".join(items) + '],"has_more":' + ("true" if more else "false") + "}"
    return Response(body, media_type="application/json")
