"""uvicorn's WebSocket protocol (the sans-I/O websockets one), plus a way to write a whole
pre-encoded frame straight to the socket.

A chat event goes to every connection of a chat with the same bytes. Through ASGI each copy is
a message dict, a text re-encode and a frame built per connection; here the frame is built
once per event and each connection's transport gets the same bytes. The app finds the writer
in the connection scope under `reverb.frames`; it declines (returns False) whenever the plain
path must be used: compression negotiated, the socket not open, or the peer not reading (so
uvicorn's flow control still applies).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

SCOPE_KEY = "reverb.frames"


class FrameCache:
    """Text -> its unmasked, uncompressed text frame, for the texts being fanned out now.
    Keyed by the text object itself: the hub hands the same string to every connection."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self._last_text: object = object()  # matches no text
        self._last_frame = b""

    def frame(self, text: str) -> bytes:
        if text is self._last_text:  # the hub writes one event to all its connections in a row
            return self._last_frame
        hit = self._items.get(id(text))
        if hit is not None and hit[0] is text:
            self._last_text, self._last_frame = hit
            return hit[1]
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
        # Keeping the text alive keeps its id from being reused while it is cached.
        self._items[id(text)] = (text, frame)
        self._last_text, self._last_frame = text, frame
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return frame


FRAMES = FrameCache()


class ReverbWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.scope["extensions"][SCOPE_KEY] = {
            "write": self.write_text_frame,
            "write_many": self.write_text_frames,
        }

    def _can_write(self) -> bool:
        return not (
            not self.handshake_complete
            or self.close_sent
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or not self.writable.is_set()
            or self.transport.is_closing()
        )

    def write_text_frame(self, text: str) -> bool:
        """Write `text` as one frame now, or return False to have it sent the ASGI way."""
        if not self._can_write():
            return False
        self.transport.write(FRAMES.frame(text))
        return True

    def write_text_frames(self, texts: list[str]) -> bool:
        """Write each text as a frame, all in one write (a replay: texts no other connection
        shares, so not cached), or return False."""
        if not self._can_write():
            return False
        self.transport.write(
            b"".join(Frame(Opcode.TEXT, t.encode()).serialize(mask=False) for t in texts)
        )
        return True
