"""Shapes that travel to clients, shared by REST responses and WebSocket events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, PlainSerializer

from reverb.domain.users import User


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]
ChatType = Literal["direct", "group"]
Role = Literal["owner", "admin", "member"]


def avatar_url(key: str | None) -> str | None:
    return f"/media/{key}" if key else None


class UserView(BaseModel):
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
            last_seen_at=user.last_seen_at,
        )


class MeView(UserView):
    email: str
    email_verified: bool
    created_at: Timestamp

    @classmethod
    def of(cls, user: User, *, online: bool = False) -> MeView:
        base = UserView.of(user, online=online).model_dump()
        return cls(
            **base,
            email=user.email,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
        )


class ReactionView(BaseModel):
    emoji: str
    count: int
    # Whether the viewer is among the reactors. In logged events, which every member shares,
    # it is false; clients learn their own reactions from `reaction.updated` (it names the user).
    me: bool


class MediaView(BaseModel):
    id: str
    url: str
    filename: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    thumbnail_url: str | None


class MessageView(BaseModel):
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


class ChatInfo(BaseModel):
    """What every member of a chat sees alike (carried by `chat.updated`)."""

    id: str
    type: ChatType
    name: str | None
    description: str
    member_count: int
    last_seq: int
    created_at: Timestamp
    updated_at: Timestamp


class ChatView(ChatInfo):
    """A chat as one member sees it."""

    peer: UserView | None
    my_role: Role
    last_read_seq: int
    unread_count: int
    last_message: MessageView | None


class MemberView(BaseModel):
    user: UserView
    role: Role
    joined_at: Timestamp
    last_read_seq: int
    last_delivered_seq: int
