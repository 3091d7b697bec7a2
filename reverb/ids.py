"""Opaque identifiers: time-ordered (UUIDv7 layout) so B-tree inserts stay local, random enough
(74 random bits) that they cannot be guessed or enumerated."""

from __future__ import annotations

import re
import secrets
import time
import uuid

# What an id looks like on the wire: 32 lowercase hex digits (new_id below; media ids too).
ID_LENGTH = 32
ID_PATTERN = "^[0-9a-f]{32}$"
_ID = re.compile(ID_PATTERN)


def new_id() -> str:
    ms = time.time_ns() // 1_000_000
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 62) << 64  # 12 random bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value).hex


def is_id(value: str) -> bool:
    """Whether `value` could be an id we issued; anything else is simply not found."""
    return _ID.fullmatch(value) is not None
