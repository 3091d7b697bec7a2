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

import contextlib
import socket
import struct
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

SCOPE_KEY = "reverb.frames"
# How long a connection the server is closing (4013, 4429, 4401, a ping timeout, shutdown) may
# take to get its close frame out; then it is aborted, what it has not sent discarded. A client
# that reads gets the close within a round trip; one that has stopped reading never would.
CLOSE_GRACE_S = 5.0
# Data unacknowledged (or a receive window kept shut) this long and the kernel drops the
# connection: a live client acknowledges within a second or two even on a poor mobile network;
# one that has stopped reading is released without waiting for the ping timeout.
TCP_USER_TIMEOUT_S = 30.0
# The close code the application sees after a ping went unanswered (websockets uses it too).
CLOSE_PING_TIMEOUT = 1011
# The server is going away (a deploy): reconnect, to another process or to this one restarted.
CLOSE_SERVICE_RESTART = 1012


def set_user_timeout(sock: Any, seconds: float) -> bool:
    """TCP_USER_TIMEOUT on `sock`, where the platform has it (Linux); False where not."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None:
        return False
    sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
    return True


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
    """uvicorn's websockets protocol, offering the app a direct frame writer (`SCOPE_KEY`),
    with a TCP user timeout on its socket and dead peers released after a ping timeout."""

    # Set at shutdown: the application finishes what it has read, then closes with 1012.
    draining = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        set_user_timeout(transport.get_extra_info("socket"), TCP_USER_TIMEOUT_S)

    def shutdown(self) -> None:
        """uvicorn (on SIGTERM) closes every socket with 1012 at once, so sends already read
        and being stored lose their acks and clients resend after every deploy. Instead the
        application is told (a disconnect with 1012 behind the frames already read from the
        socket: it stops there), answers what it took, and closes with 1012 itself, which
        bounds the rest (the grace of any server close). uvicorn waits for the sockets to
        close (at most SHUTDOWN_TIMEOUT_SECONDS) before the lifespan shutdown."""
        if not self.handshake_complete or self.close_sent or self.disconnected:
            super().shutdown()
            return
        self.draining = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": CLOSE_SERVICE_RESTART})

    def keepalive_timeout(self) -> None:
        """uvicorn sends a close frame and closes the transport, which waits until what is
        buffered is sent: forever, for a peer that has stopped reading (and the kernel would
        go on trying from an orphaned socket). The peer has had the ping timeout to answer:
        what it has not read is discarded when the socket closes; the application is told now
        (its session ends and is counted), and the socket is aborted after the grace."""
        self._discard_unsent()
        super().keepalive_timeout()
        if not self.disconnected:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": CLOSE_PING_TIMEOUT})
            self.loop.call_later(CLOSE_GRACE_S, self.abort)

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
        """Drop the connection now, discarding what it has not sent."""
        if self.disconnected:
            return
        self._discard_unsent()
        self.transport.abort()

    def _discard_unsent(self) -> None:
        """With a zero linger, closing the socket resets the connection and the kernel drops
        what it still holds for the peer; a plain close would leave it sending that (to a peer
        that may never read) from an orphaned socket."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


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

    @property
    def draining(self) -> bool:
        """The server is shutting down: answer what was read, then close with 1012."""
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

    @property
    def draining(self) -> bool:
        return self._server.draining


def transport_for(ws: WebSocket) -> Transport:
    server = (ws.scope.get("extensions", {}).get(SCOPE_KEY) or {}).get("server")
    return _Direct(ws, server) if isinstance(server, FrameWriting) else AsgiTransport(ws)
