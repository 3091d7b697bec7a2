"""Shapes that travel to clients, shared by REST responses and WebSocket events.

Each is a msgspec Struct, defined once: the same definition builds the value, encodes it (one
shared encoder, straight to bytes) and documents it (the OpenAPI components are generated from
these structs, see `reverb.api.structs`). Field order is the order on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from reverb.domain.users import User


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339_or_none(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


# Held as the text the contract fixes (RFC 3339, UTC, milliseconds, `Z`; see `rfc3339`), not as
# a datetime: msgspec would write microseconds, and history pages get this text from the
# database as it is (storage.history).
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
ChatType = Literal["direct", "group"]
Role = Literal["owner", "admin", "member"]

# Where the API's OpenAPI document keeps the components generated from these structs.
SCHEMA_REF = "#/components/schemas/{name}"

_encoder = msgspec.json.Encoder()


def encode(value: object) -> bytes:
    """JSON bytes of a wire value: the one encoder of everything sent to clients."""
    return _encoder.encode(value)


def avatar_url(key: str | None) -> str | None:
    return f"/media/{key}" if key else None


class UserView(Struct, kw_only=True):
    id: str
    username: str
    display_name: str
    bio: str
    avatar_url: str | None
    status: Literal["online", "offline"]
    last_seen_at: Timestamp | None

    @classmethod
    def of(cls, user: User, *, online: bool = False) -> UserView:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            bio=user.bio,
            avatar_url=avatar_url(user.avatar_key),
            status="online" if online else "offline",
            last_seen_at=rfc3339_or_none(user.last_seen_at),
        )


class MeView(UserView, kw_only=True):
    email: str
    email_verified: bool
    created_at: Timestamp

    @classmethod
    def of(cls, user: User, *, online: bool = False) -> MeView:
        base = msgspec.structs.asdict(UserView.of(user, online=online))
        return cls(
            **base,
            email=user.email,
            email_verified=user.email_verified_at is not None,
            created_at=rfc3339(user.created_at),
        )


class ReactionView(Struct, kw_only=True):
    emoji: str
    count: int
    # Whether the viewer is among the reactors. In logged events, which every member shares,
    # it is false; clients learn their own reactions from `reaction.updated` (it names the user).
    me: bool


class MediaView(Struct, kw_only=True):
    id: str
    url: str
    filename: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    thumbnail_url: str | None


class MessageView(Struct, kw_only=True):
    id: str
    chat_id: str
    seq: int
    sender: UserView
    content: str
    client_id: str | None
    reply_to_id: str | None
    attachments: list[MediaView]
    created_at: Timestamp
    edited_at: Timestamp | None
    deleted: bool
    reactions: list[ReactionView]


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A message and its JSON, encoded once: `message.created` carries these bytes, and the
    ack and the REST answer to a send splice them in as they are."""

    view: MessageView
    json: bytes

    @classmethod
    def of(cls, view: MessageView) -> EncodedMessage:
        return cls(view, encode(view))


class ChatInfo(Struct, kw_only=True):
    """What every member of a chat sees alike (carried by `chat.updated`)."""

    id: str
    type: ChatType
    name: str | None
    description: str
    member_count: int
    last_seq: int
    created_at: Timestamp
    updated_at: Timestamp


class ChatView(ChatInfo, kw_only=True):
    """A chat as one member sees it."""

    peer: UserView | None
    my_role: Role
    last_read_seq: int
    unread_count: int
    last_message: MessageView | None


class MemberView(Struct, kw_only=True):
    user: UserView
    role: Role
    joined_at: Timestamp
    last_read_seq: int
    last_delivered_seq: int
