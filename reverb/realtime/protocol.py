"""The WebSocket protocol without I/O: frame parsing, connection state, the send rate limit.

Everything here is a pure function of its inputs (time is passed in), so it is tested without
sockets; `gateway.py` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

# Close codes (RFC 6455 leaves 4000-4999 to applications): the HTTP status they echo.
CLOSE_UNAUTHORIZED = 4401  # bad, expired or revoked token
CLOSE_AUTH_TIMEOUT = 4408  # no auth frame in time
CLOSE_TOO_SLOW = 4013  # the outgoing queue overflowed; resume with `since`
CLOSE_FLOODING = 4429  # kept sending over the rate limit

Ref = Annotated[str, StringConstraints(max_length=128)] | int
ChatId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Seq = Annotated[int, Field(ge=0, le=2**31 - 1)]
MAX_SINCE = 10_000  # chats one auth frame may name


class Frame(BaseModel):
    # Unknown fields are ignored, so newer clients keep working against this server.
    # Strict: JSON `true` is not the number 1, nor "5" a seq.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    ref: Ref | None = None

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text cannot hold NUL: refuse it as a bad frame, not a database error.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class AuthFrame(Frame):
    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    since: Annotated[dict[ChatId, Seq], Field(max_length=MAX_SINCE)] = Field(default_factory=dict)


class SendFrame(Frame):
    type: Literal["message.send"]
    chat_id: ChatId
    content: str
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    reply_to_id: ChatId | None = None
    attachment_ids: Annotated[list[ChatId], Field(max_length=100)] = Field(default_factory=list)


class TypingFrame(Frame):
    type: Literal["typing"]
    chat_id: ChatId


class ReadFrame(Frame):
    type: Literal["read"]
    chat_id: ChatId
    seq: Seq


class DeliveredFrame(Frame):
    type: Literal["delivered"]
    chat_id: ChatId
    seq: Seq


class PingFrame(Frame):
    type: Literal["ping"]


ClientFrame = AuthFrame | SendFrame | TypingFrame | ReadFrame | DeliveredFrame | PingFrame
_frames: TypeAdapter[ClientFrame] = TypeAdapter(Annotated[ClientFrame, Field(discriminator="type")])


@dataclass(frozen=True, slots=True)
class BadFrame:
    detail: str
    ref: str | int | None = None
    code: str = "invalid_frame"
    type: str | None = None  # the frame's own `type`, when it named one


def parse(text: str) -> ClientFrame | BadFrame:
    try:
        # orjson refuses nesting deeper than 1024 levels, so hostile JSON costs one bounded pass.
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        return BadFrame("the frame is not valid JSON")
    ref = raw.get("ref") if isinstance(raw, dict) else None
    if not isinstance(ref, str | int) or isinstance(ref, bool):
        ref = None  # only a string or an integer ref is echoed
    try:
        return _frames.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
        kind = raw.get("type") if isinstance(raw, dict) else None
        detail = f"{where}: {first.get('msg', 'invalid')}"
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
