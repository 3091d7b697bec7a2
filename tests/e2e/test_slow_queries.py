"""A slow statement or a wait for the database's write lock must not hold up the server's other
work: a real server process, real sockets, a real database file (or PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from bench.seed import bulk_history
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import Json, WsClient
from tests.helpers import group, register

pytestmark = pytest.mark.e2e

# Every seeded message matches every word of SEARCH, so the search ranks and sorts them all:
# several seconds on either database, against a few milliseconds for a delivery.
BIG_CHAT = 300_000
SEARCH = "long conversation about benchmarks"
RECEIVERS = 10
SOCKETS_EACH = 10  # 100 sockets in all
# Round trips (send, ack, the message on all 100 sockets) that must complete while the search
# runs. A server whose loop waits for the search completes at most the one or two that begin
# before the search does.
DURING_SEARCH = 10


class _RawGet:
    """A GET written to the server's socket at once: when `send` returns, the request has been
    handed to the kernel, so work started after it is work the server is asked to do after."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def send(cls, url: str, path: str, token: str) -> _RawGet:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        return cls(reader, writer)

    async def answer(self) -> Json:
        head = await self._reader.readuntil(b"\r\n\r\n")
        arrived = time.monotonic()
        body = await self._reader.read()
        return {"status": int(head.split()[1]), "body": body, "arrived": arrived}

    def close(self) -> None:
        self._writer.close()


async def _set_up(url: str) -> tuple[dict[str, Any], str, list[dict[str, Any]], str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        sender = await register(http)
        receivers = [await register(http) for _ in range(RECEIVERS)]
        big = await group(http, sender, name="archive")
        live = await group(http, sender, *receivers, name="live")
    return sender, big, receivers, live


async def _deliveries_during_search(
    url: str, sender: dict[str, Any], receivers: list[dict[str, Any]], live: str
) -> None:
    sockets = [
        await WsClient.ready(url, r["access_token"]) for r in receivers for _ in range(SOCKETS_EACH)
    ]
    talker = await WsClient.ready(url, sender["access_token"])
    try:
        await _measure(sockets, talker, url, sender, live)
    finally:
        for s in [*sockets, talker]:
            await s.close()


async def _measure(
    sockets: list[WsClient], talker: WsClient, url: str, sender: dict[str, Any], live: str
) -> None:
    n = 0

    async def round_trip() -> None:
        nonlocal n
        n += 1
        frame = {"type": "message.send", "chat_id": live, "content": f"m{n}", "client_id": str(n)}
        await talker.send({**frame, "ref": n})
        ack = await talker.until(lambda f: f["type"] in ("ack", "error") and f.get("ref") == n)
        assert ack["type"] == "ack", ack
        seq = ack["message"]["seq"]
        await asyncio.gather(
            *(
                s.until(
                    lambda f: (
                        f["type"] == "message.created"
                        and f.get("chat_id") == live
                        and f["seq"] == seq
                    )
                )
                for s in sockets
            )
        )

    await round_trip()  # every socket is live before the search begins
    request = await _RawGet.send(
        url, f"/api/messages/search?q={quote(SEARCH)}", sender["access_token"]
    )
    answer = asyncio.create_task(request.answer())
    completed: list[float] = []
    try:
        while not answer.done():
            await round_trip()
            completed.append(time.monotonic())
        search = await answer
    finally:
        answer.cancel()
        request.close()
    assert search["status"] == 200, search
    assert len(orjson.loads(search["body"])["items"]) > 0
    during = [t for t in completed if t < search["arrived"]]
    assert len(during) >= DURING_SEARCH, (len(during), len(completed))


def test_a_slow_search_holds_up_no_delivery(tmp_path: Path, database_url: str) -> None:
    # The sender sends far faster than a person: the send limit is not under test (and is
    # raised for every test server).
    env = server_env(database_url)
    with reverb_serve(tmp_path, env) as (url, _log):
        sender, big, receivers, live = asyncio.run(_set_up(url))
        bulk_history(database_url, big, sender["user"]["id"], BIG_CHAT)
        asyncio.run(_deliveries_during_search(url, sender, receivers, live))


async def _reads_while_locked(url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        a = await register(http)
        chat = await group(http, a)
        history = f"/api/messages/{chat}"
        assert (await http.get(history, headers=a["headers"])).status_code == 200

        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        try:
            body = {"chat_id": chat, "content": "waits for the lock", "client_id": "w1"}
            write = asyncio.create_task(http.post("/api/messages", json=body, headers=a["headers"]))
            # Reads answer, one after the other, while the write waits for the lock (it cannot
            # finish while the lock is held; a server whose loop waited with it would answer
            # none of them before the write gave up).
            for _ in range(5):
                r = await http.get(history, headers=a["headers"])
                assert r.status_code == 200, r.text
                assert r.json()["items"] == []
                assert (await http.get("/healthz")).status_code == 200
                assert not write.done()
        finally:
            other.execute("ROLLBACK")
            other.close()
        stored = await write
        assert stored.status_code == 201, stored.text
        r = await http.get(history, headers=a["headers"])
        assert [m["content"] for m in r.json()["items"]] == ["waits for the lock"]


def test_a_write_waiting_for_another_process_lock_holds_up_no_read(tmp_path: Path) -> None:
    # SQLite's own lock, so a SQLite file whichever database the suite runs on (the server
    # migrates it at start, as in development).
    path = str(tmp_path / "locked.db")
    with reverb_serve(tmp_path, server_env(f"sqlite:///{path}")) as (url, _log):
        asyncio.run(_reads_while_locked(url, path))
