from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from msgspec import Raw

from reverb.api import cursors, limits
from reverb.api.deps import REQUIRE_VERIFIED, CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import (
    ChatIn,
    ChatPatch,
    DirectChatIn,
    EventPage,
    Id,
    MemberIn,
    Page,
    RoleIn,
    Seq,
    SeqIn,
)
from reverb.api.structs import Answer, returns
from reverb.domain.wire import ChatView, MemberView

router = APIRouter(prefix="/api/chats", tags=["chats"], dependencies=REQUIRE_VERIFIED)


@router.get("", responses={**returns(Page[ChatView]), **responses(401, 422)})
async def list_chats(
    user: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[cursors.Cursor | None, Query()] = None,
) -> Answer:
    """The caller's chats, most recent activity first."""
    before = cursors.decode_keyset(cursor) if cursor else None
    page, next_key = await services.chats.list_chats(me=user, before=before, limit=limit)
    next_cursor = cursors.encode_keyset(*next_key) if next_key else None
    return Answer(Page[ChatView](items=page, next_cursor=next_cursor))


@router.post(
    "",
    status_code=201,
    responses={
        **returns(ChatView, 201, "The new chat"),
        **returns(ChatView, 200, "The existing direct chat"),
        **responses(401, 404, 422, 429),
    },
    dependencies=[limits.WRITES],
)
async def create_chat(body: ChatIn, user: CurrentUser, services: ServicesDep) -> Answer:
    """A direct chat is access-or-create: 201 when new, 200 with the pair's existing chat.
    A group chat is always new, with the caller as its owner."""
    if isinstance(body, DirectChatIn):
        chat, created = await services.chats.create_direct(me=user, user_id=body.user_id)
        return Answer(chat, status_code=201 if created else 200)
    group = await services.chats.create_group(
        me=user, name=body.name, description=body.description, member_ids=body.member_ids
    )
    return Answer(group, status_code=201)


@router.get("/{chat_id}", responses={**returns(ChatView), **responses(401, 404, 422)})
async def get_chat(chat_id: Id, user: CurrentUser, services: ServicesDep) -> Answer:
    return Answer(await services.chats.get(me=user, chat_id=chat_id))


@router.patch(
    "/{chat_id}",
    responses={**returns(ChatView), **responses(401, 403, 404, 409, 422, 429)},
    dependencies=[limits.WRITES],
)
async def update_chat(
    chat_id: Id, body: ChatPatch, user: CurrentUser, services: ServicesDep
) -> Answer:
    """Rename or describe a group (owner or admin)."""
    return Answer(
        await services.chats.update(
            me=user, chat_id=chat_id, name=body.name, description=body.description
        )
    )


@router.get(
    "/{chat_id}/members", responses={**returns(Page[MemberView]), **responses(401, 404, 422)}
)
async def list_members(chat_id: Id, user: CurrentUser, services: ServicesDep) -> Answer:
    """Every member, longest-standing first, with their read and delivered markers."""
    members = await services.chats.members(me=user, chat_id=chat_id)
    return Answer(Page[MemberView](items=members, next_cursor=None))


@router.post(
    "/{chat_id}/members",
    status_code=201,
    responses={**returns(MemberView, 201), **responses(401, 403, 404, 409, 422, 429)},
    dependencies=[limits.WRITES],
)
async def add_member(
    chat_id: Id, body: MemberIn, user: CurrentUser, services: ServicesDep
) -> Answer:
    member = await services.chats.add_member(me=user, chat_id=chat_id, user_id=body.user_id)
    return Answer(member, status_code=201)


@router.patch(
    "/{chat_id}/members/{user_id}",
    responses={**returns(MemberView), **responses(401, 403, 404, 409, 422, 429)},
    dependencies=[limits.WRITES],
)
async def set_role(
    chat_id: Id, user_id: Id, body: RoleIn, user: CurrentUser, services: ServicesDep
) -> Answer:
    return Answer(
        await services.chats.set_role(me=user, chat_id=chat_id, user_id=user_id, role=body.role)
    )


@router.delete(
    "/{chat_id}/members/{user_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 422, 429),
    dependencies=[limits.WRITES],
)
async def remove_member(
    chat_id: Id, user_id: Id, user: CurrentUser, services: ServicesDep
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
async def mark_read(chat_id: Id, body: SeqIn, user: CurrentUser, services: ServicesDep) -> Response:
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
    chat_id: Id, body: SeqIn, user: CurrentUser, services: ServicesDep
) -> Response:
    """As the WebSocket `delivered` frame: raises `last_delivered_seq`, never lowers it."""
    await services.markers.mark(me=user, chat_id=chat_id, seq=body.seq, read=False)
    return Response(status_code=204)


@router.get("/{chat_id}/events", responses={**returns(EventPage), **responses(401, 404, 422)})
async def list_events(
    chat_id: Id,
    user: CurrentUser,
    services: ServicesDep,
    after: Annotated[Seq, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Answer:
    """The chat's event log after `after`, in order: the same events the WebSocket delivers."""
    items, more = await services.chats.events(me=user, chat_id=chat_id, after=after, limit=limit)
    # The events are stored encoded; spliced in rather than decoded and encoded again.
    return Answer(EventPage(items=[Raw(item) for item in items], has_more=more))
