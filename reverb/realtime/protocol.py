"""The WebSocket protocol without I/O: frame parsing, connection state, the send rate limit.

Everything here is a pure function of its inputs (time is passed in), so it is tested without
sockets; `gateway.py` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import msgspec
import orjson
from msgspec import Meta

# Close codes (RFC 6455 leaves 4000-4999 to applications): the HTTP status they echo.
CLOSE_UNAUTHORIZED = 4401  # bad, expired or revoked token
CLOSE_AUTH_TIMEOUT = 4408  # no auth frame in time
CLOSE_TOO_SLOW = 4013  # the outgoing queue overflowed; resume with `since`
CLOSE_FLOODING = 4429  # kept sending over the rate limit
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the database cannot be reached just now

Ref = Annotated[str, Meta(max_length=128)] | int
ChatId = Annotated[str, Meta(min_length=1, max_length=64)]
Seq = Annotated[int, Meta(ge=0, le=2**31 - 1)]
MAX_SINCE = 10_000  # chats one auth frame may name


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) for k in value)
    return False


class Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """A client frame, parsed in one pass from its JSON text into a typed struct: strict (JSON
    `true` is not the number 1, nor "5" a seq); unknown fields are ignored, so newer clients
    keep working against this server; `type` is the tag that picks the struct."""

    ref: Ref | None = None

    def __post_init__(self) -> None:
        # PostgreSQL text cannot hold NUL: refuse it as a bad frame, not a database error.
        for name in self.__struct_fields__:
            if _has_nul(getattr(self, name)):
                raise ValueError(f"`{name}` must not contain NUL characters")

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class AuthFrame(Frame, frozen=True, tag="auth"):
    token: Annotated[str, Meta(min_length=1, max_length=4096)]
    since: Annotated[dict[ChatId, Seq], Meta(max_length=MAX_SINCE)] = {}


class SendFrame(Frame, frozen=True, tag="message.send"):
    chat_id: ChatId
    content: str
    client_id: Annotated[str, Meta(min_length=1, max_length=128)]
    reply_to_id: ChatId | None = None
    attachment_ids: Annotated[list[ChatId], Meta(max_length=100)] = []


class TypingFrame(Frame, frozen=True, tag="typing"):
    chat_id: ChatId


class ReadFrame(Frame, frozen=True, tag="read"):
    chat_id: ChatId
    seq: Seq


class DeliveredFrame(Frame, frozen=True, tag="delivered"):
    chat_id: ChatId
    seq: Seq


class PingFrame(Frame, frozen=True, tag="ping"):
    pass


ClientFrame = AuthFrame | SendFrame | TypingFrame | ReadFrame | DeliveredFrame | PingFrame
_frames = msgspec.json.Decoder(ClientFrame)


@dataclass(frozen=True, slots=True)
class BadFrame:
    detail: str
    ref: str | int | None = None
    code: str = "invalid_frame"
    type: str | None = None  # the frame's own `type`, when it named one

    def about(self, field: str) -> bool:
        """Whether the fault is in `field` (msgspec names the path it failed at)."""
        return f"at `$.{field}" in self.detail


def parse(text: str) -> ClientFrame | BadFrame:
    try:
        return _frames.decode(text)
    except msgspec.ValidationError as exc:
        detail = str(exc)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):
        # Deeply nested JSON in an ignored field ends at the recursion limit: bounded work.
        return BadFrame("the frame is not valid JSON (or nested too deeply)")
    # The slow path, for a bad frame only: what to echo (its ref) and what it claimed to be.
    try:
        raw: Any = orjson.loads(text)
    except orjson.JSONDecodeError:  # numbers out of range (1e999, integers over 64 bits)
        return BadFrame(f"the frame is not valid JSON here: {detail}")
    ref = raw.get("ref") if isinstance(raw, dict) else None
    if not isinstance(ref, str | int) or isinstance(ref, bool):
        ref = None  # only a string or an integer ref is echoed
    kind = raw.get("type") if isinstance(raw, dict) else None
    return BadFrame(detail, ref, type=kind if isinstance(kind, str) else None)


class State(Enum):
    AWAITING_AUTH = "awaiting_auth"
    READY = "ready"
    CLOSED = "closed"


_ALLOWED = {
    State.AWAITING_AUTH: {State.READY, State.CLOSED},
    State.READY: {State.CLOSED},
    State.CLOSED: set(),
}


class IllegalTransition(Exception):
    pass


class ConnectionState:
    def __init__(self) -> None:
        self.state = State.AWAITING_AUTH

    def to(self, new: State) -> None:
        if new not in _ALLOWED[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {new.value}")
        self.state = new


class TokenBucket:
    """`rate` tokens a second, up to `burst`; each send takes one. Time is passed in."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class FloodGuard:
    """Counts refused sends; too many within a window means the client ignores `rate_limited`."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.refusals: list[float] = []

    def refused(self, now: float) -> bool:
        """Record a refusal; True when the client should be disconnected."""
        self.refusals = [t for t in self.refusals if now - t < self.window_s]
        self.refusals.append(now)
        return len(self.refusals) >= self.limit
