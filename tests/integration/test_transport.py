"""The transport module on a real uvicorn server and a real WebSocket client: the direct
frame writer under `FrameWriting`, the ASGI way under uvicorn's own protocol, the same frames
either way; declining when it must; abort."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from reverb.realtime.transport import AsgiTransport, FrameWriting, Transport, transport_for
from tests.ports import free_port

WAIT_S = 10.0
BIG = "x" * 70_000  # a 64-bit length field
TEXTS = ["plain", "héllo 👋🏽 中文", "", "\u2028\x00end", BIG]
DATA = [text.encode() for text in TEXTS]  # what the transport is given: UTF-8 bytes


@dataclass
class Probe:
    """What the app saw: which transport it got, and what write_now/abort answered."""

    transports: list[Transport] = field(default_factory=list)
    answers: list[bool] = field(default_factory=list)
    filled: asyncio.Event = field(default_factory=asyncio.Event)


def app_for(probe: Probe) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        transport = transport_for(ws)
        probe.transports.append(transport)
        try:
            while True:
                command = await ws.receive_text()
                if command == "each":
                    for data in DATA:
                        done = transport.write_now(data)
                        probe.answers.append(done)
                        if not done:
                            await transport.send(data)
                elif command == "many":
                    done = transport.write_many_now(DATA)
                    probe.answers.append(done)
                    if not done:
                        for data in DATA:
                            await transport.send(data)
                elif command == "fill":
                    # Bounded: the socket stops taking frames long before this many.
                    for _ in range(5_000):
                        if not transport.write_now(DATA[-1]):
                            break
                        probe.answers.append(True)
                    probe.filled.set()
                elif command == "abort":
                    probe.answers.append(transport.abort())
                    if not probe.answers[-1]:
                        await transport.close(4000, "no abort here")
                    return
                elif command == "close":
                    await transport.close(4000, "bye")
                    return
        except WebSocketDisconnect:
            return

    return app


@contextlib.asynccontextmanager
async def server(ws: Any, **options: Any) -> AsyncIterator[tuple[str, Probe]]:
    probe = Probe()
    port = free_port()
    # As `reverb serve` runs it (compression is a setting, off by default).
    options.setdefault("ws_per_message_deflate", False)
    config = uvicorn.Config(
        app_for(probe),
        host="127.0.0.1",
        port=port,
        ws=ws,
        lifespan="off",
        log_config=None,
        **options,
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    try:
        async with asyncio.timeout(WAIT_S):
            while not srv.started:
                await asyncio.sleep(0.01)  # poll interval, bounded by the timeout above
        yield f"ws://127.0.0.1:{port}/", probe
    finally:
        srv.should_exit = True
        await task


async def received(client: ClientConnection, n: int) -> list[str]:
    async with asyncio.timeout(WAIT_S):
        return [str(await client.recv()) for _ in range(n)]


SERVERS = [(FrameWriting, True), ("websockets-sansio", False)]


@pytest.mark.parametrize(("ws", "direct"), SERVERS)
async def test_the_same_frames_arrive_one_by_one_or_all_at_once(ws: Any, direct: bool) -> None:
    async with server(ws) as (url, probe), connect(url, max_size=None) as client:
        await client.send("each")
        assert await received(client, len(TEXTS)) == TEXTS
        await client.send("many")
        assert await received(client, len(TEXTS)) == TEXTS
        assert isinstance(probe.transports[0], AsgiTransport)
        assert probe.answers == [direct] * (len(TEXTS) + 1)


async def test_with_compression_negotiated_frames_go_the_plain_way() -> None:
    async with (
        server(FrameWriting, ws_per_message_deflate=True) as (url, probe),
        connect(url, max_size=None, compression="deflate") as client,
    ):
        await client.send("each")
        assert await received(client, len(TEXTS)) == TEXTS
        assert probe.answers == [False] * len(TEXTS)


async def test_a_peer_that_does_not_read_is_declined_then_gets_everything() -> None:
    async with (
        server(FrameWriting) as (url, probe),
        connect(url, max_size=None, max_queue=1) as client,
    ):
        await client.send("fill")
        async with asyncio.timeout(WAIT_S):
            await probe.filled.wait()
        written = len(probe.answers)
        assert 0 < written < 5_000  # it declined once the socket stopped taking frames
        assert await received(client, written) == [BIG] * written


@pytest.mark.parametrize(("ws", "direct"), SERVERS)
async def test_abort_drops_the_connection_without_a_close_frame(ws: Any, direct: bool) -> None:
    async with server(ws) as (url, probe), connect(url) as client:
        await client.send("abort")
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT_S):
                await client.recv()
        assert probe.answers == [direct]
        # Aborted: no close frame came. Otherwise the server closed as it could.
        assert (closed.value.rcvd is None) is direct
