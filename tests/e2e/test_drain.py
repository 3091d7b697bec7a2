"""SIGTERM drains (issue 11, part 8): the server stops reading new frames, answers the sends
it had already taken (each stored send gets its ack), closes every socket with 1012, and exits
with status 0. A real `reverb serve` process, stopped by its PID while clients are mid-burst."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from reverb.config import async_database_url
from reverb.storage.db import Database
from reverb.storage.tables import messages
from tests.e2e.server import reverb_process, server_env
from tests.e2e.wsclient import WsClient
from tests.helpers import group, register

pytestmark = pytest.mark.e2e

CLIENTS = 4
BURST = 300  # sends each, all at once: more than the server stores before the signal lands
EXIT_WITHIN_S = 30.0
SEND_PACE_S = 0.003


async def collect(ws: WsClient, acked: set[str]) -> int | None:
    """Read until the server closes: the client ids acknowledged go to `acked`; the close
    code is returned."""
    try:
        while True:
            frame = await ws.recv(timeout=EXIT_WITHIN_S)
            if frame["type"] == "ack":
                acked.add(frame["message"]["client_id"])
            else:
                assert frame["type"] == "message.created", frame
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def stored_client_ids(database_url: str, sender_id: str) -> set[str]:
    db = Database(async_database_url(database_url))
    try:
        async with db.read() as conn:
            rows = await conn.execute(
                select(messages.c.client_id).where(messages.c.sender_id == sender_id)
            )
            return {str(r[0]) for r in rows}
    finally:
        await db.close()


async def test_sigterm_answers_every_stored_send_then_closes_1012_and_exits_0(
    tmp_path: Path, database_url: str
) -> None:
    env = server_env(database_url)
    with reverb_process(tmp_path, env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            users = [await register(http) for _ in range(CLIENTS)]
            chats = [await group(http, u) for u in users]
        sockets = [await WsClient.ready(server.url, u["access_token"]) for u in users]
        acked: list[set[str]] = [set() for _ in users]
        readers = [
            asyncio.create_task(collect(ws, got)) for ws, got in zip(sockets, acked, strict=True)
        ]

        async def burst() -> None:
            try:
                for i in range(BURST):
                    for k, (ws, chat) in enumerate(zip(sockets, chats, strict=True)):
                        frame = {"type": "message.send", "chat_id": chat, "content": f"m{i}"}
                        await ws.send({**frame, "client_id": f"{k}-{i}", "ref": i})
                    # Paced: the bursts last about a second, longer than the server takes to
                    # begin its shutdown (uvicorn looks at its signal flag every 0.1 s).
                    await asyncio.sleep(SEND_PACE_S)
            except ConnectionClosed:
                pass  # the server has closed: the rest is never sent

        sending = asyncio.create_task(burst())
        # The signal lands while the bursts are still being sent and stored.
        async with asyncio.timeout(EXIT_WITHIN_S):
            while not any(acked):
                await asyncio.sleep(0.005)  # poll interval, bounded by the timeout above
        server.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*readers)
        await sending
        status = await asyncio.to_thread(server.proc.wait, EXIT_WITHIN_S)

    assert status == 0
    assert codes == [1012] * CLIENTS
    for user, got in zip(users, acked, strict=True):
        stored = await stored_client_ids(database_url, user["user"]["id"])
        assert stored, "some sends were stored before the shutdown"
        assert stored == got, (len(stored), len(got), sorted(stored - got)[:5])
    assert sum(len(got) for got in acked) < CLIENTS * BURST, "the signal came mid-burst"
