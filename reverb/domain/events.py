"""Events: every change a client can hear of, as typed structs (tagged by their `type`), and the
envelope that carries one.

Each event is encoded once, to bytes (`encode`): the same bytes are stored, published and
written to every socket. Logged events (those with a `seq`) are stored in the chat's event log
exactly as they are sent, so a replay after a reconnect gives the same bytes as the live
delivery did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from reverb.domain.wire import (
    SCHEMA_REF,
    ChatInfo,
    ChatView,
    MessageView,
    Role,
    Timestamp,
    UserView,
)
from reverb.domain.wire import encode as encode  # events are encoded by the one wire encoder

# The message of `message.created` is spliced in already encoded (see `wire.EncodedMessage`);
# documented as the MessageView it is (the API's components live under this path).
EncodedMessageView = Annotated[
    msgspec.Raw, Meta(extra_json_schema={"$ref": SCHEMA_REF.format(name="MessageView")})
]


class Event(Struct, kw_only=True, tag_field="type"):
    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class LoggedEvent(Event, kw_only=True):
    chat_id: str
    seq: int


class MessageCreated(LoggedEvent, kw_only=True, tag="message.created"):
    message: EncodedMessageView


class MessageUpdated(LoggedEvent, kw_only=True, tag="message.updated"):
    message: MessageView


class MessageDeleted(LoggedEvent, kw_only=True, tag="message.deleted"):
    message_id: str


class ReactionUpdated(LoggedEvent, kw_only=True, tag="reaction.updated"):
    message_id: str
    emoji: str
    user_id: str
    added: bool


class ChatUpdated(LoggedEvent, kw_only=True, tag="chat.updated"):
    chat: ChatInfo


class MemberAdded(LoggedEvent, kw_only=True, tag="member.added"):
    user: UserView
    role: Role


class MemberUpdated(LoggedEvent, kw_only=True, tag="member.updated"):
    user_id: str
    role: Role


class MemberRemoved(LoggedEvent, kw_only=True, tag="member.removed"):
    user_id: str


class ChatCreated(Event, kw_only=True, tag="chat.created"):
    chat: ChatView


class ReadMarker(Event, kw_only=True, tag="read"):
    chat_id: str
    user_id: str
    seq: int


class DeliveredMarker(Event, kw_only=True, tag="delivered"):
    chat_id: str
    user_id: str
    seq: int


class Typing(Event, kw_only=True, tag="typing"):
    chat_id: str
    user_id: str


class Presence(Event, kw_only=True, tag="presence"):
    user_id: str
    status: Literal["online", "offline"]
    last_seen_at: Timestamp | None


class SessionRevoked(Event, kw_only=True, tag="session.revoked"):
    pass


# The events that take a seq and are stored in the chat's event log.
AnyLoggedEvent = (
    MessageCreated
    | MessageUpdated
    | MessageDeleted
    | ReactionUpdated
    | ChatUpdated
    | MemberAdded
    | MemberUpdated
    | MemberRemoved
)
LOGGED_EVENTS: tuple[type[LoggedEvent], ...] = get_args(AnyLoggedEvent)
LOGGED_TYPES = frozenset(str(m.__struct_config__.tag) for m in LOGGED_EVENTS)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One encoded event and who should get it.

    `chat_id`: every member of that chat (checked at delivery time, so a removed member stops
    at once). `user_ids`: these users as well, member or not (a removed member still hears of
    its own removal; a new member hears of the chat it joined).
    """

    type: str
    data: bytes
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
