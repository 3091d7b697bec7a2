"""Opaque page cursors: base64url of a small JSON value. Clients never parse them; anything
that does not decode to what this server gave out is 422."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import orjson

from reverb.errors import ReverbError, invalid


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
    if not isinstance(value, str):
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
    try:
        at = datetime.fromisoformat(value[0])
    except ValueError:
        raise bad_cursor() from None
    if at.tzinfo is None:
        raise bad_cursor()
    return at, value[1]
