"""Real-time delivery over real WebSocket connections to real server processes: ordering,
resume without gaps, live membership, receipts, typing, presence, revocation."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from reverb.domain.events import LOGGED_TYPES
from tests.e2e.server import reverb_serve, server_env, server_process
from tests.e2e.wsclient import Json, WsClient, raw_connect, raw_send_text
from tests.helpers import events, group, register, send
from tests.services import REDIS_TEST_URL

pytestmark = pytest.mark.e2e

# Ordering tests send frames back to back; the default rate limit would refuse most of them.
FAST = {"rate_limit_messages": "10000 per second"}


@contextmanager
def servers(tmp_path: Path, database_url: str, n: int = 1, **settings: str) -> Iterator[list[str]]:
    """n real server processes on the test database; with n > 1 they share the test Redis."""
    env = server_env(database_url, **settings)
    if n > 1:
        env.setdefault("REDIS_URL", REDIS_TEST_URL)
    with ExitStack() as stack:
        yield [stack.enter_context(reverb_serve(tmp_path, env))[0] for _ in range(n)]


@asynccontextmanager
async def api(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


def seqs(frames: list[Json]) -> list[int]:
    return [int(f["seq"]) for f in frames]


# --- ordering ---


async def _ordering(urls: list[str]) -> None:
    async with api(urls[0]) as http:
        users = [await register(http) for _ in range(4)]
        chat = await group(http, users[0], *users[1:])
    clients = [
        await WsClient.ready(urls[i % len(urls)], u["access_token"]) for i, u in enumerate(users)
    ]

    async def burst(i: int) -> None:
        for n in range(50):
            await clients[i].send(
                {
                    "type": "message.send",
                    "chat_id": chat,
                    "content": f"{i}-{n}",
                    "client_id": f"{i}-{n}",
                    "ref": n,
                }
            )

    await asyncio.gather(*(burst(i) for i in range(4)))
    for c in clients:
        got = await c.logged(chat, 200, timeout=30)
        assert seqs(got) == list(range(1, 201))
        assert len({f["message"]["id"] for f in got}) == 200
        acks = [f for f in c.received if f["type"] == "ack"]
        assert len(acks) <= 50
    for c in clients:
        assert [
            f for f in await c.quiet(0.3) if f.get("chat_id") == chat and f["type"] in LOGGED_TYPES
        ] == []
        await c.close()


def test_ordering_one_process(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 1, **FAST) as urls:
        asyncio.run(_ordering(urls))


async def _negotiated_extensions(url: str) -> str | None:
    async with api(url) as http:
        user = await register(http)
    client = await WsClient.ready(url, user["access_token"])  # offers permessage-deflate
    assert client.conn.response is not None
    extensions = client.conn.response.headers.get("Sec-WebSocket-Extensions")
    await client.close()
    return extensions


def test_events_are_written_uncompressed_by_default(tmp_path: Path, database_url: str) -> None:
    # Uncompressed, one frame per event goes to every member (the direct frame writer).
    with servers(tmp_path, database_url, 1, **FAST) as urls:
        assert asyncio.run(_negotiated_extensions(urls[0])) is None
        asyncio.run(_ordering(urls))


def test_ordering_with_compression(tmp_path: Path, database_url: str) -> None:
    # With permessage-deflate each connection's frames go the ASGI way: same guarantees.
    with servers(tmp_path, database_url, 1, ws_compression="true", **FAST) as urls:
        assert "permessage-deflate" in (asyncio.run(_negotiated_extensions(urls[0])) or "")
        asyncio.run(_ordering(urls))


def test_ordering_under_plain_uvicorn(tmp_path: Path, database_url: str) -> None:
    # Started as `uvicorn reverb.app:factory`: frames go the ASGI way, same guarantees.
    env = server_env(database_url, **FAST)
    argv = [sys.executable, "-m", "uvicorn", "reverb.app:factory", "--factory", "--port"]
    with server_process(tmp_path, env, lambda port: [*argv, str(port)]) as (url, _):
        asyncio.run(_ordering([url]))


def test_ordering_two_processes_with_redis(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 2, **FAST) as urls:
        asyncio.run(_ordering(urls))


# --- resume ---


async def _resume(urls: list[str]) -> None:
    a_url, b_url = urls[0], urls[-1]
    async with api(a_url) as http:
        a, b, c = await register(http), await register(http), await register(http)
        chat = await group(http, a, b)
        bob = await WsClient.ready(a_url, b["access_token"])
        first = await send(http, a, chat, "before")
        assert seqs(await bob.logged(chat, 1)) == [1]
        await bob.close()

        # Away: every kind of logged change happens.
        m2 = await send(http, a, chat, "while away")
        await http.patch(
            f"/api/messages/{m2['id']}", json={"content": "edited"}, headers=a["headers"]
        )
        await http.put(f"/api/messages/{first['id']}/reactions/🎉", headers=a["headers"])
        await http.delete(f"/api/messages/{first['id']}/reactions/🎉", headers=a["headers"])
        await http.delete(f"/api/messages/{first['id']}", headers=a["headers"])
        await http.patch(f"/api/chats/{chat}", json={"name": "renamed"}, headers=a["headers"])
        await http.post(
            f"/api/chats/{chat}/members", json={"user_id": c["user"]["id"]}, headers=a["headers"]
        )
        await http.patch(
            f"/api/chats/{chat}/members/{c['user']['id']}",
            json={"role": "admin"},
            headers=a["headers"],
        )
        log = await events(http, a, chat)
        assert len(log) == 9

        # Back, on the other process when there are two: exactly the missed events, then live ones.
        bob = await WsClient.ready(b_url, b["access_token"], since={chat: 1})
        missed = await bob.logged(chat, 8)
        assert missed == log[1:]
        await send(http, a, chat, "live again")
        assert seqs(await bob.logged(chat, 1)) == [10]
        assert [
            f
            for f in await bob.quiet(0.3)
            if f.get("chat_id") == chat and f["type"] in LOGGED_TYPES
        ] == []
        await bob.close()


def test_resume_one_process(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 1) as urls:
        asyncio.run(_resume(urls))


def test_resume_on_another_process(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 2) as urls:
        asyncio.run(_resume(urls))


async def _resume_while_sending(urls: list[str]) -> None:
    async with api(urls[0]) as http:
        a, b = await register(http), await register(http)
        chat = await group(http, a, b)
        for i in range(30):
            await send(http, a, chat, f"early {i}")
        sender = await WsClient.ready(urls[0], a["access_token"])
        total = 300

        async def keep_sending() -> None:
            for n in range(30, total):
                await sender.send(
                    {
                        "type": "message.send",
                        "chat_id": chat,
                        "content": f"m{n}",
                        "client_id": f"m{n}",
                    }
                )

        task = asyncio.create_task(keep_sending())
        # Reconnect in the middle of the stream, on the other process when there are two.
        await asyncio.sleep(0)  # let the first frames go out; correctness does not depend on it
        bob = await WsClient.ready(urls[-1], b["access_token"], since={chat: 10})
        got = await bob.logged(chat, total - 10, timeout=60)
        await task
        assert seqs(got) == list(range(11, total + 1))
        assert [
            f
            for f in await bob.quiet(0.3)
            if f.get("chat_id") == chat and f["type"] in LOGGED_TYPES
        ] == []
        await bob.close()
        await sender.close()


def test_resume_while_events_are_committed(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 2, **FAST) as urls:
        asyncio.run(_resume_while_sending(urls))


# --- membership ---


async def _membership(url: str) -> None:
    async with api(url) as http:
        a, b, c, d = [await register(http) for _ in range(4)]
        chat = await group(http, a, b)
        bob = await WsClient.ready(url, b["access_token"])
        carol = await WsClient.ready(url, c["access_token"])

        # Added: carol hears of the chat, then of her arrival, without reconnecting.
        await http.post(
            f"/api/chats/{chat}/members", json={"user_id": c["user"]["id"]}, headers=a["headers"]
        )
        created = await carol.until(lambda f: f["type"] == "chat.created")
        assert created["chat"]["id"] == chat and created["chat"]["my_role"] == "member"
        added = await carol.logged(chat, 1)
        assert added[0]["type"] == "member.added" and added[0]["user"]["id"] == c["user"]["id"]
        await send(http, a, chat, "welcome")
        assert (await carol.logged(chat, 1))[0]["message"]["content"] == "welcome"

        # Removed: bob's last event of the chat is his own removal.
        assert seqs(await bob.logged(chat, 2)) == [1, 2]
        await http.delete(f"/api/chats/{chat}/members/{b['user']['id']}", headers=a["headers"])
        removed = await bob.logged(chat, 1)
        assert removed[0]["type"] == "member.removed" and removed[0]["user_id"] == b["user"]["id"]
        await send(http, a, chat, "after bob")
        await carol.logged(chat, 2)  # carol sees the removal and the message
        assert [f for f in await bob.quiet(0.5) if f.get("chat_id") == chat] == []
        await bob.close()

        # Resuming a chat one has left: its removal, nothing after.
        bob = await WsClient.ready(url, b["access_token"], since={chat: 1})
        again = await bob.logged(chat, 1)
        assert again[0]["type"] == "member.removed" and again[0]["seq"] == removed[0]["seq"]
        assert [f for f in await bob.quiet(0.5) if f.get("chat_id") == chat] == []

        # A new direct chat reaches the peer at once.
        r = await http.post(
            "/api/chats", json={"type": "direct", "user_id": b["user"]["id"]}, headers=d["headers"]
        )
        direct = r.json()["id"]
        created = await bob.until(lambda f: f["type"] == "chat.created")
        assert created["chat"]["id"] == direct and created["chat"]["peer"]["id"] == d["user"]["id"]
        await send(http, d, direct, "hello bob")
        assert (await bob.logged(direct, 1))[0]["message"]["content"] == "hello bob"
        await bob.close()
        await carol.close()


def test_membership_is_live(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 1) as urls:
        asyncio.run(_membership(urls[0]))


# --- across processes ---


async def _across(urls: list[str]) -> None:
    one, two = urls
    async with api(one) as http:
        a, b, c = await register(http), await register(http), await register(http)
        chat = await group(http, a, b, c)
        bob = await WsClient.ready(two, b["access_token"])
        carl = await WsClient.ready(two, c["access_token"])
        alice = await WsClient.ready(one, a["access_token"])
        # REST on one process, socket on the other.
        await send(http, a, chat, "over rest")
        assert (await bob.logged(chat, 1))[0]["message"]["content"] == "over rest"
        # Socket to socket.
        await alice.send(
            {
                "type": "message.send",
                "chat_id": chat,
                "content": "over ws",
                "client_id": "x",
                "ref": "r",
            }
        )
        ack = await alice.until(lambda f: f["type"] == "ack")
        assert ack["ref"] == "r" and ack["message"]["seq"] == 2
        assert (await bob.logged(chat, 1))[0]["message"]["content"] == "over ws"
        # Read receipts cross too.
        await bob.send({"type": "read", "chat_id": chat, "seq": 2, "ref": 1})
        receipt = await alice.until(lambda f: f["type"] == "read")
        assert (receipt["user_id"], receipt["seq"]) == (b["user"]["id"], 2)
        # Removal on one process stops delivery on the other at once.
        assert seqs(await carl.logged(chat, 2)) == [1, 2]
        await http.delete(f"/api/chats/{chat}/members/{c['user']['id']}", headers=a["headers"])
        assert (await carl.logged(chat, 1))[0]["type"] == "member.removed"
        await send(http, a, chat, "without carl")
        assert (await bob.logged(chat, 2))[1]["message"]["content"] == "without carl"
        assert [f for f in await carl.quiet(0.3) if f.get("chat_id") == chat] == []
        await carl.close()
        # Revocation: a password change on one process closes the sockets on the other.
        r = await http.post(
            "/api/users/me/password",
            json={"current_password": "correct horse battery", "new_password": "another horse"},
            headers=b["headers"],
        )
        assert r.status_code == 204
        await bob.until(lambda f: f["type"] == "session.revoked")
        assert await bob.closed_with() == 4401
        await alice.close()


def test_events_cross_processes(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 2) as urls:
        asyncio.run(_across(urls))


# --- receipts, typing, presence, logout-all ---


async def _signals(url: str) -> None:
    async with api(url) as http:
        a, b = await register(http), await register(http)
        chat = await group(http, a, b)
        bob = await WsClient.ready(url, b["access_token"])
        alice = await WsClient.ready(url, a["access_token"])
        online = await bob.until(lambda f: f["type"] == "presence")
        assert (online["user_id"], online["status"]) == (a["user"]["id"], "online")
        user = (await http.get(f"/api/users/{a['user']['id']}", headers=b["headers"])).json()
        assert user["status"] == "online"

        # Typing is coalesced: two frames within 2 s give one event, and not to the typist.
        await alice.send({"type": "typing", "chat_id": chat})
        await alice.send({"type": "typing", "chat_id": chat, "ref": "t"})
        assert (await alice.until(lambda f: f["type"] == "ack"))["ref"] == "t"
        typing = await bob.until(lambda f: f["type"] == "typing")
        assert typing == {"type": "typing", "chat_id": chat, "user_id": a["user"]["id"]}
        assert [f for f in await bob.quiet(0.5) if f["type"] == "typing"] == []
        assert [f for f in alice.received if f["type"] == "typing"] == []

        await send(http, a, chat, "one")
        await bob.send({"type": "delivered", "chat_id": chat, "seq": 1})
        delivered = await alice.until(lambda f: f["type"] == "delivered")
        assert (delivered["user_id"], delivered["seq"]) == (b["user"]["id"], 1)
        members = (await http.get(f"/api/chats/{chat}/members", headers=a["headers"])).json()[
            "items"
        ]
        assert {m["user"]["id"]: m["last_delivered_seq"] for m in members}[b["user"]["id"]] == 1

        # Offline when the last connection closes, with last_seen_at (coalesced: within 5 s).
        await alice.close()
        offline = await bob.until(
            lambda f: f["type"] == "presence" and f["status"] == "offline", timeout=10
        )
        assert offline["user_id"] == a["user"]["id"] and offline["last_seen_at"]

        # Logging out everywhere closes the user's sockets.
        r = await http.post("/api/auth/logout-all", headers=b["headers"])
        assert r.status_code == 204
        await bob.until(lambda f: f["type"] == "session.revoked")
        assert await bob.closed_with() == 4401


def test_receipts_typing_presence_and_revocation(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 1) as urls:
        asyncio.run(_signals(urls[0]))


# --- a slow consumer ---


async def _slow_consumer(url: str) -> None:
    async with api(url) as http:
        a, fast_user, slow_user = [await register(http) for _ in range(3)]
        chat = await group(http, a, fast_user, slow_user)
        # A client that stops reading; its tiny receive window backs the server's socket up fast.
        slow = raw_connect(url, rcvbuf=4096)
        raw_send_text(
            slow, orjson.dumps({"type": "auth", "token": slow_user["access_token"]}).decode()
        )
        fast = await WsClient.ready(url, fast_user["access_token"])
        sender = await WsClient.ready(url, a["access_token"])
        total = 1500  # ~6 MB: more than the kernel will buffer for a stalled socket (4 MB)
        big = "x" * 3990
        # The fast readers read all along; the slow one never does.
        fast_got = asyncio.create_task(fast.logged(chat, total, timeout=60))
        sender_got = asyncio.create_task(sender.logged(chat, total, timeout=60))
        for n in range(total):
            await sender.send(
                {
                    "type": "message.send",
                    "chat_id": chat,
                    "content": f"{n} {big}",
                    "client_id": str(n),
                }
            )
        assert seqs(await fast_got) == list(range(1, total + 1))
        assert seqs(await sender_got) == list(range(1, total + 1))
        metrics = (await http.get("/metrics")).text
        assert 'reverb_ws_closes_total{code="4013"} 1.0' in metrics
        # It is aborted a grace period after its 4013: what was in flight (the close frame
        # among it) is discarded, so reading again ends in a reset, not a close frame (the rest
        # of that is in test_dead_sockets.py).
        with pytest.raises(ConnectionResetError):
            await asyncio.to_thread(_read_to_end, slow)
        slow.close()
        await fast.close()
        await sender.close()


def _read_to_end(sock: socket.socket) -> bytes:
    """Everything until the server closes (or resets); the last 4 KiB of it."""
    tail = b""
    sock.settimeout(30)
    while chunk := sock.recv(65536):
        tail = (tail + chunk)[-4096:]
    return tail


def test_slow_consumer_is_dropped_and_others_keep_going(tmp_path: Path, database_url: str) -> None:
    with servers(tmp_path, database_url, 1, ws_queue_size="20", **FAST) as urls:
        asyncio.run(_slow_consumer(urls[0]))
