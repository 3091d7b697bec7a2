"""Writing to one WebSocket: the only module that knows how frames reach a socket.

`Transport` is what a connection writes through: a frame now if the socket takes it at once
(`write_now`, `write_many_now`), a frame that may wait for the peer (`send`), a close, and
`abort` (drop the socket, discarding what it has not sent). `transport_for` picks one:

- Under `reverb serve` (or uvicorn started with `--ws reverb.realtime.transport:FrameWriting`)
  the server is `FrameWriting`, uvicorn's sans-I/O websockets protocol plus a direct writer: a
  chat event's frame is built once and the same bytes are written to every socket, instead of
  an ASGI message, a text re-encode and a frame per connection. It declines (False) whenever
  the plain path must be used: compression negotiated, the socket not open, or the peer not
  reading, so flow control still applies.
- Under any other server (e.g. `uvicorn reverb.app:factory`), frames go the ASGI way: the same
  behaviour, without the shortcut.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

SCOPE_KEY = "reverb.frames"


def text_frame(data: bytes) -> bytes:
    """`data` (UTF-8 JSON) as one unmasked, uncompressed server text frame."""
    return Frame(Opcode.TEXT, data).serialize(mask=False)


class FrameCache:
    """An event's bytes -> their frame, for the events being fanned out now. Keyed by the bytes
    object itself: the hub hands the same bytes (an envelope's, encoded once) to every
    connection, so each event's frame is built once."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self._last_data: object = object()  # matches no data
        self._last_frame = b""

    def frame(self, data: bytes) -> bytes:
        if data is self._last_data:  # the hub writes one event to all its connections in a row
            return self._last_frame
        hit = self._items.get(id(data))
        if hit is not None and hit[0] is data:
            self._last_data, self._last_frame = hit
            return hit[1]
        frame = text_frame(data)
        # Keeping the data alive keeps its id from being reused while it is cached.
        self._items[id(data)] = (data, frame)
        self._last_data, self._last_frame = data, frame
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return frame


FRAMES = FrameCache()


class FrameWriting(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, offering the app a direct frame writer (`SCOPE_KEY`)."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # ASGI extensions are dicts by convention (and by its types).
        self.scope["extensions"][SCOPE_KEY] = {"server": self}

    def can_write_now(self) -> bool:
        return not (
            not self.handshake_complete
            or self.close_sent
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or not self.writable.is_set()
            or self.transport.is_closing()
        )

    def write_frames(self, frames: bytes) -> bool:
        """Write already-built frames; only when `can_write_now`."""
        self.transport.write(frames)
        return True

    def abort(self) -> None:
        self.transport.abort()


class Transport(ABC):
    """One socket's output."""

    def write_now(self, data: bytes) -> bool:
        """Write `data` (UTF-8 JSON) as a text frame at once, or return False (then `send` it)."""
        return False

    def write_many_now(self, items: list[bytes]) -> bool:
        """Write each as a text frame, all at once (in one write where possible), or False."""
        return False

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Write `data` (UTF-8 JSON) as a text frame, waiting while the peer does not read."""

    @abstractmethod
    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (after what is being sent)."""

    def abort(self) -> bool:
        """Drop the connection at once, discarding what it has not sent; False where the
        server offers no way to (then the caller's own grace period is the bound)."""
        return False


class AsgiTransport(Transport):
    """The ASGI way, under any server."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        # ASGI carries a text frame's payload as str.
        await self._ws.send_text(data.decode())

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code=code, reason=reason)


class _Direct(AsgiTransport):
    def __init__(self, ws: WebSocket, server: FrameWriting) -> None:
        super().__init__(ws)
        self._server = server

    def write_now(self, data: bytes) -> bool:
        return self._server.can_write_now() and self._server.write_frames(FRAMES.frame(data))

    def write_many_now(self, items: list[bytes]) -> bool:
        # A replay: events no other connection shares, so not cached.
        return self._server.can_write_now() and self._server.write_frames(
            b"".join(text_frame(d) for d in items)
        )

    def abort(self) -> bool:
        self._server.abort()
        return True


def transport_for(ws: WebSocket) -> Transport:
    server = (ws.scope.get("extensions", {}).get(SCOPE_KEY) or {}).get("server")
    return _Direct(ws, server) if isinstance(server, FrameWriting) else AsgiTransport(ws)
