"""The wire encoding: each value has one encoding, to bytes, in the contract's format; an event's
bytes go through the bus and into socket frames unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from msgspec import Raw
from websockets.frames import Frame, Opcode

from reverb.domain.events import (
    LOGGED_TYPES,
    Envelope,
    MessageCreated,
    MessageUpdated,
    Presence,
    SessionRevoked,
    encode,
)
from reverb.domain.users import User
from reverb.domain.wire import (
    EncodedMessage,
    MediaView,
    MessageView,
    MeView,
    ReactionView,
    UserView,
    rfc3339,
)
from reverb.realtime.bus.redis import from_wire, to_wire
from reverb.realtime.gateway import Ack, Error, Pong, Ready
from reverb.realtime.transport import FrameCache, text_frame

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "2026-01-02T03:04:05.678Z"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        # Another offset is written as the same instant in UTC.
        (datetime(2026, 1, 2, 0, 30, 0, 999999, tzinfo=PLUS_TWO), "2026-01-01T22:30:00.999Z"),
    ],
)
def test_timestamps_are_utc_with_milliseconds_and_z(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


def user(**changes: object) -> User:
    values: dict[str, object] = {
        "id": "u1",
        "username": "ann",
        "email": "ann@example.com",
        "display_name": "Ann \u2028 \U0001f44b",
        "bio": 'says "hi"\n',
        "avatar_key": "avatars/u1.webp",
        "session_version": 0,
        "last_seen_at": datetime(2026, 1, 2, 5, 0, 0, 123456, tzinfo=PLUS_TWO),
        "created_at": datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return User(**(values | changes))  # type: ignore[arg-type]


USER_JSON = (
    '{"id":"u1","username":"ann","display_name":"Ann \u2028 \U0001f44b",'
    '"bio":"says \\"hi\\"\\n","avatar_url":"/media/avatars/u1.webp","status":"online",'
    '"last_seen_at":"2026-01-02T03:00:00.123Z"}'
).encode()


def test_views_encode_to_the_contract_bytes_in_field_order() -> None:
    assert encode(UserView.of(user(), online=True)) == USER_JSON
    me = encode(MeView.of(user(), online=True))
    assert me == USER_JSON[:-1] + (
        b',"email":"ann@example.com","email_verified":false,'
        b'"created_at":"2025-12-31T23:59:59.999Z"}'
    )
    never = encode(UserView.of(user(last_seen_at=None, avatar_key=None)))
    assert b'"avatar_url":null,"status":"offline","last_seen_at":null}' in never


def message() -> MessageView:
    return MessageView(
        id="m1",
        chat_id="c1",
        seq=7,
        sender=UserView.of(user(), online=True),
        content="héllo",
        client_id=None,
        reply_to_id="m0",
        attachments=[
            MediaView(
                id="f1",
                url="/media/f1",
                filename="a.png",
                content_type="image/png",
                size=10,
                width=2,
                height=3,
                thumbnail_url=None,
            )
        ],
        created_at="2026-01-02T03:04:05.678Z",
        edited_at=None,
        deleted=False,
        reactions=[ReactionView(emoji="👍", count=2, me=False)],
    )


# The order stored event logs were written in (and clients may see): type first, then the
# event's fields, then the message's, as the contract lists them.
MESSAGE_CREATED = (
    '{"type":"message.created","chat_id":"c1","seq":7,"message":{"id":"m1","chat_id":"c1",'
    '"seq":7,"sender":' + USER_JSON.decode() + ',"content":"héllo","client_id":null,'
    '"reply_to_id":"m0","attachments":[{"id":"f1","url":"/media/f1","filename":"a.png",'
    '"content_type":"image/png","size":10,"width":2,"height":3,"thumbnail_url":null}],'
    '"created_at":"2026-01-02T03:04:05.678Z","edited_at":null,"deleted":false,'
    '"reactions":[{"emoji":"👍","count":2,"me":false}]}}'
).encode()


def test_message_created_carries_the_message_encoded_once() -> None:
    sent = EncodedMessage.of(message())
    created = encode(MessageCreated(chat_id="c1", seq=7, message=Raw(sent.json)))
    assert created == MESSAGE_CREATED
    # The spliced message is exactly the message's own encoding, as a typed field would give.
    updated = encode(MessageUpdated(chat_id="c1", seq=7, message=message()))
    assert created == updated.replace(b'"message.updated"', b'"message.created"', 1)
    assert created == b'{"type":"message.created","chat_id":"c1","seq":7,"message":%s}' % sent.json


def test_events_are_tagged_by_type() -> None:
    assert MessageCreated(chat_id="c", seq=1, message=Raw(b"{}")).type == "message.created"
    assert "message.created" in LOGGED_TYPES and "presence" not in LOGGED_TYPES
    assert encode(SessionRevoked()) == b'{"type":"session.revoked"}'
    presence = Presence(user_id="u1", status="offline", last_seen_at=None)
    assert orjson.loads(encode(presence)) == {
        "type": "presence",
        "user_id": "u1",
        "status": "offline",
        "last_seen_at": None,
    }


def test_the_bus_carries_the_event_bytes_unchanged() -> None:
    envelope = Envelope(type="message.created", data=MESSAGE_CREATED, chat_id="c1", seq=7)
    wire = to_wire(envelope)
    assert wire.endswith(b"\n" + MESSAGE_CREATED)
    assert from_wire(wire) == envelope


def test_an_events_frame_is_built_once_and_carries_its_bytes() -> None:
    cache = FrameCache(size=2)
    data = MESSAGE_CREATED
    frame = cache.frame(data)
    assert frame == Frame(Opcode.TEXT, data).serialize(mask=False) == text_frame(data)
    assert frame.endswith(data)
    assert cache.frame(data) is frame  # every socket gets the frame built the first time
    other = encode(SessionRevoked())
    assert cache.frame(other) is not frame
    assert cache.frame(data) is frame  # still cached while others are fanned out


def test_replies_keep_their_shape_with_the_ref_last_and_only_when_given() -> None:
    me = MeView.of(user(), online=True)
    assert encode(Ready(user=me, ref="a")) == b'{"type":"ready","user":%s,"ref":"a"}' % encode(me)
    sent = EncodedMessage.of(message())
    ack = encode(Ack(message=Raw(sent.json), ref=3))
    assert ack == b'{"type":"ack","message":%s,"ref":3}' % sent.json
    assert encode(Ack(ref="x")) == b'{"type":"ack","ref":"x"}'
    assert encode(Pong()) == b'{"type":"pong"}'
    error = Error(code="rate_limited", detail="slow down", ref=0)
    assert encode(error) == b'{"type":"error","code":"rate_limited","detail":"slow down","ref":0}'
