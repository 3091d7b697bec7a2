"""A real WebSocket client for the tests (the `websockets` library), with small helpers."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from reverb.domain.events import LOGGED_TYPES

Json = dict[str, Any]
DEFAULT_WAIT_S = 10.0


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/ws"


class WsClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.received: list[Json] = []

    @classmethod
    async def open(cls, http_url: str, **kwargs: Any) -> WsClient:
        return cls(await connect(ws_url(http_url), **kwargs))

    @classmethod
    async def ready(
        cls, http_url: str, token: str, since: dict[str, int] | None = None
    ) -> WsClient:
        """Connect, authenticate and wait for `ready`."""
        client = await cls.open(http_url)
        await client.send({"type": "auth", "token": token, **({"since": since} if since else {})})
        first = await client.recv()
        assert first["type"] == "ready", first
        return client

    async def send(self, frame: Json) -> None:
        await self.conn.send(orjson.dumps(frame).decode())

    async def recv(self, timeout: float = DEFAULT_WAIT_S) -> Json:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        frame: Json = orjson.loads(raw)
        self.received.append(frame)
        return frame

    async def until(self, pred: Callable[[Json], bool], timeout: float = DEFAULT_WAIT_S) -> Json:
        """The first frame matching `pred`, reading (and keeping) the ones before it."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if pred(frame):
                return frame

    async def logged(self, chat_id: str, count: int, timeout: float = DEFAULT_WAIT_S) -> list[Json]:
        """The next `count` logged events of a chat (other frames are kept but skipped)."""
        out: list[Json] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            f = await self.recv(max(0.01, deadline - time.monotonic()))
            if f.get("chat_id") == chat_id and f["type"] in LOGGED_TYPES:
                out.append(f)
        return out

    async def quiet(self, seconds: float = 0.3) -> list[Json]:
        """Frames that arrive within `seconds` (used to assert that nothing more comes)."""
        out: list[Json] = []
        try:
            while True:
                out.append(await self.recv(seconds))
        except TimeoutError:
            return out

    async def closed_with(self, timeout: float = DEFAULT_WAIT_S) -> int | None:
        """Read until the server closes; the close code."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                await self.recv(max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        await self.conn.close()


def raw_connect(
    http_url: str, *, rcvbuf: int | None = None, timeout: float = 10.0
) -> socket.socket:
    """A bare TCP socket that has done the WebSocket handshake and nothing else: it answers no
    ping and reads only what the test asks for (a client that has stalled)."""
    host, port = http_url.removeprefix("http://").split(":")
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)  # byte by byte: nothing after the headers is consumed
        if not chunk:
            raise ConnectionError("closed during the handshake")
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def raw_send_text(sock: socket.socket, text: str) -> None:
    """One masked text frame (clients must mask, RFC 6455 §5.3)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x81])
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", n)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
