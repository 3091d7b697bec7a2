from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from reverb.api import cursors, limits
from reverb.api.deps import CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import MessageEdit, MessageIn, MessagePage, Page, Seq
from reverb.domain.wire import MessageView
from reverb.errors import invalid

router = APIRouter(prefix="/api/messages", tags=["messages"])


@router.post(
    "",
    status_code=201,
    responses={
        200: {"model": MessageView, "description": "A retry: the original message"},
        **responses(401, 404, 422, 429),
    },
    dependencies=[limits.MESSAGES],
)
async def send_message(
    body: MessageIn, user: CurrentUser, services: ServicesDep, response: Response
) -> MessageView:
    """Store a message (committed before anyone hears of it). The same `client_id` from the
    same sender in the same chat again answers 200 with the original: no second message."""
    message, created = await services.messages.send(
        me=user,
        chat_id=body.chat_id,
        content=body.content,
        client_id=body.client_id,
        reply_to_id=body.reply_to_id,
        attachment_ids=body.attachment_ids,
    )
    response.status_code = 201 if created else 200
    return message


# Declared before /{chat_id}, which would otherwise take "search" for a chat id.
@router.get("/search", responses=responses(401, 404, 422))
async def search_messages(
    user: CurrentUser,
    services: ServicesDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    chat_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[MessageView]:
    """Messages of the caller's chats containing every word of `q`, best match first."""
    if not q.strip() or "\x00" in q:
        raise invalid("q must be a non-blank string", field="q")
    offset = cursors.decode_int(cursor) if cursor else 0
    found, more = await services.messages.search(
        me=user, query=q, chat_id=chat_id, offset=offset, limit=limit
    )
    return Page[MessageView](
        items=found, next_cursor=cursors.encode(offset + limit) if more else None
    )


@router.get("/{chat_id}", response_model=MessagePage, responses=responses(401, 404, 422))
async def history(
    chat_id: str,
    user: CurrentUser,
    services: ServicesDep,
    before: Annotated[Seq | None, Query()] = None,
    after: Annotated[Seq | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    """Ascending by seq. No cursor: the newest page. `before=SEQ`: the page before it
    (scroll-back; `has_more` says older ones exist). `after=SEQ`: the page after it (catch-up;
    `has_more` says newer ones exist)."""
    # Already JSON, built from the rows: `response_model` above documents it.
    body = await services.messages.history(
        me=user, chat_id=chat_id, before=before, after=after, limit=limit
    )
    return Response(body, media_type="application/json")


@router.patch(
    "/{message_id}", responses=responses(401, 403, 404, 409, 422, 429), dependencies=[limits.WRITES]
)
async def edit_message(
    message_id: str, body: MessageEdit, user: CurrentUser, services: ServicesDep
) -> MessageView:
    return await services.messages.edit(me=user, message_id=message_id, content=body.content)


@router.delete(
    "/{message_id}",
    status_code=204,
    responses=responses(401, 403, 404, 429),
    dependencies=[limits.WRITES],
)
async def delete_message(message_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    """Leaves a tombstone: `deleted: true`, empty content, no reactions."""
    await services.messages.delete(me=user, message_id=message_id)
    return Response(status_code=204)


@router.put(
    "/{message_id}/reactions/{emoji}",
    status_code=204,
    responses=responses(401, 404, 409, 422, 429),
    dependencies=[limits.WRITES],
)
async def add_reaction(
    message_id: str, emoji: str, user: CurrentUser, services: ServicesDep
) -> Response:
    await services.messages.react(me=user, message_id=message_id, emoji=emoji, add=True)
    return Response(status_code=204)


@router.delete(
    "/{message_id}/reactions/{emoji}",
    status_code=204,
    responses=responses(401, 404, 422, 429),
    dependencies=[limits.WRITES],
)
async def remove_reaction(
    message_id: str, emoji: str, user: CurrentUser, services: ServicesDep
) -> Response:
    await services.messages.react(me=user, message_id=message_id, emoji=emoji, add=False)
    return Response(status_code=204)
