from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from reverb.api import cursors, limits
from reverb.api.deps import REQUIRE_VERIFIED, CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import Id, Line, MessageEdit, MessageIn, MessagePage, Page, Seq, Text
from reverb.api.structs import Answer, returns
from reverb.domain.wire import MessageView
from reverb.errors import invalid
from reverb.services.messages import MAX_EMOJI

# The service says what a reaction may be (clean_emoji); this states it for the schema.
Emoji = Annotated[Line, Path(min_length=1, max_length=MAX_EMOJI)]

router = APIRouter(prefix="/api/messages", tags=["messages"], dependencies=REQUIRE_VERIFIED)


@router.post(
    "",
    status_code=201,
    responses={
        **returns(MessageView, 201, "The message, stored"),
        **returns(MessageView, 200, "A retry: the original message"),
        **responses(401, 404, 422, 429),
    },
    dependencies=[limits.MESSAGES],
)
async def send_message(body: MessageIn, user: CurrentUser, services: ServicesDep) -> Answer:
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
    # The message's bytes as `message.created` carries them, not encoded again.
    return Answer(message.json, status_code=201 if created else 200)


# Declared before /{chat_id}, which would otherwise take "search" for a chat id.
@router.get("/search", responses={**returns(Page[MessageView]), **responses(401, 404, 422)})
async def search_messages(
    user: CurrentUser,
    services: ServicesDep,
    q: Annotated[Text, Query(min_length=1, max_length=200)],
    chat_id: Annotated[Id | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[cursors.Cursor | None, Query()] = None,
) -> Answer:
    """Messages of the caller's chats containing every word of `q`, best match first."""
    if not q.strip():
        raise invalid("q must be a non-blank string", field="q")
    offset = cursors.decode_int(cursor) if cursor else 0
    found, more = await services.messages.search(
        me=user, query=q, chat_id=chat_id, offset=offset, limit=limit
    )
    return Answer(
        Page[MessageView](items=found, next_cursor=cursors.encode(offset + limit) if more else None)
    )


@router.get("/{chat_id}", responses={**returns(MessagePage), **responses(401, 404, 422)})
async def history(
    chat_id: Id,
    user: CurrentUser,
    services: ServicesDep,
    before: Annotated[Seq | None, Query()] = None,
    after: Annotated[Seq | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Answer:
    """Ascending by seq. No cursor: the newest page. `before=SEQ`: the page before it
    (scroll-back; `has_more` says older ones exist). `after=SEQ`: the page after it (catch-up;
    `has_more` says newer ones exist)."""
    items, more = await services.messages.history(
        me=user, chat_id=chat_id, before=before, after=after, limit=limit
    )
    return Answer(MessagePage(items=items, has_more=more))


@router.patch(
    "/{message_id}",
    responses={**returns(MessageView), **responses(401, 403, 404, 409, 422, 429)},
    dependencies=[limits.WRITES],
)
async def edit_message(
    message_id: Id, body: MessageEdit, user: CurrentUser, services: ServicesDep
) -> Answer:
    return Answer(
        await services.messages.edit(me=user, message_id=message_id, content=body.content)
    )


@router.delete(
    "/{message_id}",
    status_code=204,
    responses=responses(401, 403, 404, 422, 429),
    dependencies=[limits.WRITES],
)
async def delete_message(message_id: Id, user: CurrentUser, services: ServicesDep) -> Response:
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
    message_id: Id, emoji: Emoji, user: CurrentUser, services: ServicesDep
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
    message_id: Id, emoji: Emoji, user: CurrentUser, services: ServicesDep
) -> Response:
    await services.messages.react(me=user, message_id=message_id, emoji=emoji, add=False)
    return Response(status_code=204)
