"""The load generator's WebSocket client: picows (Cython) under uvloop, so the client costs
little next to the server it measures. One `Peer` per connection; frames with a `ref` answer
a request, every other frame goes to the scenario's `on_event`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

OnEvent = Callable[["Peer", dict[str, Any], int], None]


def _ignore(_peer: Peer, _event: dict[str, Any], _t: int) -> None:
    return None


class Peer(WSListener):
    def __init__(self, on_event: OnEvent = _ignore) -> None:
        self.on_event = on_event
        self.transport: WSTransport | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._next_ref = 0
        self.tag: object = None  # the scenario's own data about this connection

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.monotonic_ns()
        if frame.msg_type == WSMsgType.TEXT:
            event = orjson.loads(frame.get_payload_as_bytes())
            ref = event.get("ref")
            if ref is not None and (waiter := self.pending.pop(ref, None)) is not None:
                if not waiter.done():
                    waiter.set_result(event)
                return
            self.on_event(self, event, now)
        elif frame.msg_type == WSMsgType.CLOSE:
            code = frame.get_close_code()
            if not self.closed.done():
                self.closed.set_result(code.value)
            transport.send_close(code)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(1006)
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("disconnected"))
        self.pending.clear()

    def send(self, frame: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))

    def request(self, frame: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send with a fresh ref; the future gets the frame that answers it."""
        self._next_ref += 1
        ref = self._next_ref
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = waiter
        self.send({**frame, "ref": ref})
        return waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.send_close()
            self.transport.disconnect()


async def connect(url: str, auth: dict[str, Any], on_event: OnEvent = _ignore) -> Peer:
    """Open, authenticate and wait for `ready`."""
    _, peer = await ws_connect(lambda: Peer(on_event), url, websocket_handshake_timeout=30)
    if not isinstance(peer, Peer):  # closed again during the handshake
        raise ConnectionError("the server closed the connection during the handshake")
    answer = await asyncio.wait_for(peer.request(auth), 60)
    if answer.get("type") != "ready":
        peer.close()
        raise ConnectionError(f"auth refused: {answer}")
    return peer
