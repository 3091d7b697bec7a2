"""Events: every change a client can hear of, as typed models, and the envelope that carries one.

Logged events (those with a `seq`) are stored in the chat's event log exactly as they are sent,
so a replay after a reconnect gives the same bytes as the live delivery did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import orjson
from pydantic import BaseModel

from reverb.domain.wire import ChatInfo, ChatView, MessageView, Role, Timestamp, UserView


class LoggedEvent(BaseModel):
    type: str
    chat_id: str
    seq: int


class MessageCreated(LoggedEvent):
    type: Literal["message.created"] = "message.created"
    message: MessageView


class MessageUpdated(LoggedEvent):
    type: Literal["message.updated"] = "message.updated"
    message: MessageView


class MessageDeleted(LoggedEvent):
    type: Literal["message.deleted"] = "message.deleted"
    message_id: str


class ReactionUpdated(LoggedEvent):
    type: Literal["reaction.updated"] = "reaction.updated"
    message_id: str
    emoji: str
    user_id: str
    added: bool


class ChatUpdated(LoggedEvent):
    type: Literal["chat.updated"] = "chat.updated"
    chat: ChatInfo


class MemberAdded(LoggedEvent):
    type: Literal["member.added"] = "member.added"
    user: UserView
    role: Role


class MemberUpdated(LoggedEvent):
    type: Literal["member.updated"] = "member.updated"
    user_id: str
    role: Role


class MemberRemoved(LoggedEvent):
    type: Literal["member.removed"] = "member.removed"
    user_id: str


class ChatCreated(BaseModel):
    type: Literal["chat.created"] = "chat.created"
    chat: ChatView


class ReadMarker(BaseModel):
    type: Literal["read"] = "read"
    chat_id: str
    user_id: str
    seq: int


class DeliveredMarker(BaseModel):
    type: Literal["delivered"] = "delivered"
    chat_id: str
    user_id: str
    seq: int


class Typing(BaseModel):
    type: Literal["typing"] = "typing"
    chat_id: str
    user_id: str


class Presence(BaseModel):
    type: Literal["presence"] = "presence"
    user_id: str
    status: Literal["online", "offline"]
    last_seen_at: Timestamp | None


class SessionRevoked(BaseModel):
    type: Literal["session.revoked"] = "session.revoked"


# The events that take a seq and are stored in the chat's event log.
LOGGED_EVENTS: tuple[type[LoggedEvent], ...] = (
    MessageCreated,
    MessageUpdated,
    MessageDeleted,
    ReactionUpdated,
    ChatUpdated,
    MemberAdded,
    MemberUpdated,
    MemberRemoved,
)
LOGGED_TYPES = frozenset(str(m.model_fields["type"].default) for m in LOGGED_EVENTS)


def encode(event: BaseModel) -> str:
    """Encode once; the same text is stored, published and written to every socket."""
    return orjson.dumps(event.model_dump(mode="json")).decode()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One encoded event and who should get it.

    `chat_id`: every member of that chat (checked at delivery time, so a removed member stops
    at once). `user_ids`: these users as well, member or not (a removed member still hears of
    its own removal; a new member hears of the chat it joined).
    """

    type: str
    data: str
    chat_id: str | None = None
    seq: int | None = None
    user_ids: tuple[str, ...] = field(default_factory=tuple)
    # Membership change carried by this event, so the gateway can update its view at once.
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    # Not to this user's connections (the typist does not hear their own typing).
    exclude: str | None = None
    # A chat created just now (at seq 0) that the addressed users' connections now follow.
    opens: str | None = None
