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

from reverb.ids import ID_LENGTH, ID_PATTERN
from reverb.text import TEXT_PATTERN

# Close codes (RFC 6455 leaves 4000-4999 to applications): the HTTP status they echo.
CLOSE_UNAUTHORIZED = 4401  # bad, expired or revoked token
CLOSE_AUTH_TIMEOUT = 4408  # no auth frame in time
CLOSE_TOO_SLOW = 4013  # the outgoing queue overflowed; resume with `since`
CLOSE_FLOODING = 4429  # kept sending over the rate limit
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the database cannot be reached just now

# The same rules as the REST API's (reverb.api.schemas): every string is text (no NUL, no
# unpaired surrogate), every id looks like one.
Text = Annotated[str, Meta(pattern=TEXT_PATTERN)]
Id = Annotated[str, Meta(min_length=ID_LENGTH, max_length=ID_LENGTH, pattern=ID_PATTERN)]
# An integer ref is echoed in the answer, so it must be one the encoder can write (64 bits).
Ref = Annotated[Text, Meta(max_length=128)] | Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Seq = Annotated[int, Meta(ge=0, le=2**31 - 1)]
MAX_SINCE = 10_000  # chats one auth frame may name


class Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """A client frame, parsed in one pass from its JSON text into a typed struct: strict (JSON
    `true` is not the number 1, nor "5" a seq); unknown fields are ignored, so newer clients
    keep working against this server; `type` is the tag that picks the struct."""

    ref: Ref | None = None

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class AuthFrame(Frame, frozen=True, tag="auth"):
    token: Annotated[Text, Meta(min_length=1, max_length=4096)]
    since: Annotated[dict[Id, Seq], Meta(max_length=MAX_SINCE)] = {}


class SendFrame(Frame, frozen=True, tag="message.send"):
    chat_id: Id
    content: Text
    client_id: Annotated[Text, Meta(min_length=1, max_length=128)]
    reply_to_id: Id | None = None
    attachment_ids: Annotated[list[Id], Meta(max_length=100)] = []


class TypingFrame(Frame, frozen=True, tag="typing"):
    chat_id: Id


class ReadFrame(Frame, frozen=True, tag="read"):
    chat_id: Id
    seq: Seq


class DeliveredFrame(Frame, frozen=True, tag="delivered"):
    chat_id: Id
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
    try:
        # Only a ref that is one (text or an integer) is echoed.
        ref = msgspec.convert(raw.get("ref") if isinstance(raw, dict) else None, Ref | None)
    except msgspec.ValidationError:
        ref = None
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

    def wait(self, now: float) -> float:
        """Seconds from `now` until a send would be taken."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        return max(0.0, (1 - tokens) / self.rate)


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
