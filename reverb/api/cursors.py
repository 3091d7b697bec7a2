"""Opaque page cursors: base64url of a small JSON value. Clients never parse them; anything
that does not decode to what this server gave out is 422."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated

import orjson
from pydantic import StringConstraints

from reverb import ids, text
from reverb.errors import ReverbError, invalid

# What `encode` writes (base64url, no padding), so the schema can say what a cursor looks like.
Cursor = Annotated[str, StringConstraints(max_length=200, pattern="^[A-Za-z0-9_-]*$")]


def encode(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode(cursor: str) -> object:
    try:
        raw = base64.b64decode(
            cursor.encode("ascii") + b"=" * (-len(cursor) % 4), altchars=b"-_", validate=True
        )
        return orjson.loads(raw)
    except (binascii.Error, UnicodeError, ValueError, orjson.JSONDecodeError):
        raise bad_cursor() from None


def bad_cursor() -> ReverbError:
    return invalid("the cursor is not one this server gave out", field="cursor")


def decode_str(cursor: str) -> str:
    value = decode(cursor)
    if not isinstance(value, str) or not text.is_text(value):
        raise bad_cursor()
    return value


def decode_int(cursor: str) -> int:
    value = decode(cursor)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000:
        raise bad_cursor()
    return value


def encode_keyset(at: datetime, key: str) -> str:
    return encode([at.isoformat(), key])


def decode_keyset(cursor: str) -> tuple[datetime, str]:
    value = decode(cursor)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise bad_cursor()
    stamp, key = value
    if not ids.is_id(key):
        raise bad_cursor()
    try:
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            raise bad_cursor()
        # In UTC, as the database compares it: a time near the ends of the calendar whose offset
        # carries it past them (0001-01-01T00:00:00+14:00) is no time at all.
        return at.astimezone(UTC), key
    except (ValueError, OverflowError):
        raise bad_cursor() from None
