"""Hostile and broken WebSocket clients against a real `reverb serve` process.

Each test starts its own server (so it can pick the WebSocket settings it needs) and talks to it
over real sockets: the `websockets` client, or a raw TCP socket where a client must misbehave in
a way no library allows (never answering pings).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from tests.conftest import TEST_SECRET
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import Json, WsClient
from tests.helpers import events, group, register

pytestmark = pytest.mark.e2e

AUTH_TIMEOUT_S = "1"
CLOSE_WAIT_S = 10.0  # upper bound for any close the server is expected to make
QUIET_S = 0.5  # window in which nothing may arrive
MAX_FRAME = 64 * 1024
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


@dataclass
class Server:
    url: str
    http: httpx.AsyncClient
    sockets: list[WsClient] = field(default_factory=list)

    async def open(self, **kwargs: Any) -> WsClient:
        """A connected, not yet authenticated client (closed when the test ends)."""
        ws = await WsClient.open(self.url, **kwargs)
        self.sockets.append(ws)
        return ws

    async def ready(self, session: Json) -> WsClient:
        """A client that authenticated as `session`'s user and got `ready`."""
        ws = await self.open()
        await ws.send({"type": "auth", "token": session["access_token"]})
        first = await ws.recv()
        assert first["type"] == "ready", first
        assert first["user"]["id"] == session["user"]["id"]
        return ws


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, database_url: str, **settings: str) -> AsyncIterator[Server]:
    """A real server with these settings (auth timeout 1 s unless given), an HTTP client on it,
    and every WebSocket opened through it closed at the end."""
    settings = {"ws_auth_timeout_seconds": AUTH_TIMEOUT_S, **settings}
    with reverb_serve(tmp_path, server_env(database_url, **settings)) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            server = Server(url, http)
            try:
                yield server
            finally:
                for ws in server.sockets:
                    await ws.close()


async def reply(ws: WsClient, ref: str, timeout: float = CLOSE_WAIT_S) -> Json:
    """The server's answer (`ack` or `error`) to the frame sent with `ref`."""
    return await ws.until(lambda f: f.get("ref") == ref, timeout)


async def pongs(ws: WsClient) -> None:
    """The connection still works: a ping gets its pong."""
    await ws.send({"type": "ping", "ref": "still-there"})
    answer = await reply(ws, "still-there")
    assert answer["type"] == "pong", answer


def access_token(user_id: str, *, exp_offset_s: int) -> str:
    """An access token signed like the server's, expiring `exp_offset_s` from now."""
    now = int(time.time())
    claims = {
        "iss": "reverb",
        "aud": "reverb",
        "sub": user_id,
        "iat": now - 3600,
        "exp": now + exp_offset_s,
        "typ": "access",
        "sv": 0,
    }
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def assert_error(frame: Json, code: str, ref: str | None = None) -> None:
    assert frame["type"] == "error", frame
    assert frame["code"] == code, frame
    assert isinstance(frame["detail"], str) and frame["detail"], frame
    if ref is None:
        assert "ref" not in frame, frame
    else:
        assert frame["ref"] == ref, frame


# --- before auth ---------------------------------------------------------------------------------


async def test_no_auth_frame_in_time_closes_4408(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        ws = await srv.open()
        started = time.monotonic()
        assert await ws.closed_with(CLOSE_WAIT_S) == 4408
        assert time.monotonic() - started >= 0.8  # the timeout ran out; not an instant refusal
        assert ws.received == []


@pytest.mark.parametrize("token", ["not-a-jwt", "", "x" * 5000, None, 42])
async def test_bad_token_closes_4401(tmp_path: Path, database_url: str, token: object) -> None:
    async with serve(tmp_path, database_url) as srv:
        ws = await srv.open()
        frame: Json = {"type": "auth"} if token is None else {"type": "auth", "token": token}
        await ws.send(frame)
        assert await ws.closed_with(CLOSE_WAIT_S) == 4401
        assert ws.received == []


async def test_refresh_token_is_not_an_access_token(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice = await register(srv.http)
        ws = await srv.open()
        await ws.send({"type": "auth", "token": alice["refresh_token"]})
        assert await ws.closed_with(CLOSE_WAIT_S) == 4401
        assert ws.received == []


async def test_expired_access_token_closes_4401(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice = await register(srv.http)
        user_id = alice["user"]["id"]
        # The same claims with a future `exp` are accepted: only the expiry differs.
        ok = await srv.ready({**alice, "access_token": access_token(user_id, exp_offset_s=600)})
        await pongs(ok)
        ws = await srv.open()
        await ws.send({"type": "auth", "token": access_token(user_id, exp_offset_s=-60)})
        assert await ws.closed_with(CLOSE_WAIT_S) == 4401
        assert ws.received == []


async def test_frame_before_auth_is_refused_but_kept_open(
    tmp_path: Path, database_url: str
) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice = await register(srv.http)
        ws = await srv.open()
        await ws.send({"type": "ping", "ref": "early"})
        assert_error(await ws.recv(), "not_authenticated", "early")
        await ws.send({"type": "auth", "token": alice["access_token"], "ref": "login"})
        ready = await ws.recv()
        assert ready["type"] == "ready" and ready["user"]["id"] == alice["user"]["id"], ready
        await pongs(ws)


# --- bad frames after auth -----------------------------------------------------------------------


async def test_invalid_json_is_invalid_frame(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        ws = await srv.ready(await register(srv.http))
        await ws.conn.send('{"type": "ping", "ref": "x"')  # truncated
        assert_error(await ws.recv(), "invalid_frame")
        await pongs(ws)


async def test_unknown_type_is_invalid_frame_with_ref(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        ws = await srv.ready(await register(srv.http))
        await ws.send({"type": "message.explode", "ref": "u1"})
        assert_error(await ws.recv(), "invalid_frame", "u1")
        await pongs(ws)


async def test_missing_fields_are_invalid_frame_with_ref(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice, bob = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, alice, bob)
        ws = await srv.ready(alice)
        await ws.send({"type": "message.send", "chat_id": chat, "client_id": "c1", "ref": "m1"})
        assert_error(await ws.recv(), "invalid_frame", "m1")
        await pongs(ws)
        assert await events(srv.http, alice, chat) == []


async def test_binary_frame_is_invalid_frame(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        ws = await srv.ready(await register(srv.http))
        await ws.conn.send(b'{"type": "ping", "ref": "bin"}')
        assert_error(await ws.recv(), "invalid_frame")
        await pongs(ws)


async def test_content_too_long_is_refused_and_not_stored(
    tmp_path: Path, database_url: str
) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice, bob = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, alice, bob)
        ws = await srv.ready(alice)
        frame = {"type": "message.send", "chat_id": chat, "client_id": "long"}
        await ws.send({**frame, "content": "x" * 4001, "ref": "too-long"})
        assert_error(await reply(ws, "too-long"), "content_too_long", "too-long")
        await pongs(ws)
        assert await events(srv.http, alice, chat) == []
        # The limit itself is allowed, under the same client id (nothing was kept of the refusal).
        await ws.send({**frame, "content": "y" * 4000, "ref": "at-limit"})
        ack = await reply(ws, "at-limit")
        assert ack["type"] == "ack" and ack["message"]["content"] == "y" * 4000, ack
        assert [e["seq"] for e in await events(srv.http, alice, chat)] == [1]


async def test_blank_content_is_validation_error(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice, bob = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, alice, bob)
        ws = await srv.ready(alice)
        send = {"type": "message.send", "chat_id": chat, "client_id": "blank", "ref": "b1"}
        await ws.send({**send, "content": " \n\t "})
        assert_error(await reply(ws, "b1"), "validation_error", "b1")
        await pongs(ws)
        assert await events(srv.http, alice, chat) == []


async def test_deeply_nested_json_is_invalid_frame(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        ws = await srv.ready(await register(srv.http))
        nested = "[" * 30000 + "]" * 30000
        assert len(nested.encode()) < MAX_FRAME
        await ws.conn.send(nested)
        assert_error(await ws.recv(), "invalid_frame")
        await pongs(ws)


async def test_frame_over_64_kib_closes_1009(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice, bob = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, alice, bob)
        ws = await srv.ready(alice)
        await ws.send(
            {
                "type": "message.send",
                "chat_id": chat,
                "client_id": "big",
                "content": "z" * MAX_FRAME,
            }
        )
        assert await ws.closed_with(CLOSE_WAIT_S) == 1009
        assert await events(srv.http, alice, chat) == []


async def test_invalid_utf8_closes_1007(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url) as srv:
        ws = await srv.ready(await register(srv.http))
        await ws.conn.send(b"\xff\xfe", text=True)
        assert await ws.closed_with(CLOSE_WAIT_S) == 1007


# --- chats the user is not in --------------------------------------------------------------------


async def test_frames_into_a_foreign_chat_are_chat_not_found(
    tmp_path: Path, database_url: str
) -> None:
    async with serve(tmp_path, database_url) as srv:
        outsider, bob, carol = [await register(srv.http) for _ in range(3)]
        chat = await group(srv.http, bob, carol)
        members = [await srv.ready(bob), await srv.ready(carol)]
        # Bob hears Carol come online; after that the members' sockets have nothing pending.
        await members[0].until(
            lambda f: f["type"] == "presence" and f["user_id"] == carol["user"]["id"]
        )
        assert await members[0].quiet(QUIET_S) == []
        assert await members[1].quiet(QUIET_S) == []

        ws = await srv.ready(outsider)
        attempts: list[Json] = [
            {"type": "message.send", "content": "let me in", "client_id": "in"},
            {"type": "typing"},
            {"type": "read", "seq": 0},
            {"type": "delivered", "seq": 0},
        ]
        # Someone else's chat, one that does not exist, and what cannot be a chat id at all.
        for target, code in [
            (chat, "chat_not_found"),
            ("0" * 32, "chat_not_found"),
            ("no-such-chat", "invalid_frame"),
        ]:
            for i, attempt in enumerate(attempts):
                ref = f"{target}-{i}"
                await ws.send({**attempt, "chat_id": target, "ref": ref})
                assert_error(await reply(ws, ref), code, ref)

        assert await events(srv.http, bob, chat) == []
        for member in members:
            assert await member.quiet(QUIET_S) == []
        assert await ws.quiet(QUIET_S) == []
        await pongs(ws)


async def test_repeated_typing_into_a_foreign_chat_is_still_chat_not_found(
    tmp_path: Path, database_url: str
) -> None:
    async with serve(tmp_path, database_url) as srv:
        outsider, bob, carol = [await register(srv.http) for _ in range(3)]
        chat = await group(srv.http, bob, carol)
        ws = await srv.ready(outsider)
        for ref in ("t1", "t2"):  # the second within the 2 s typing window
            await ws.send({"type": "typing", "chat_id": chat, "ref": ref})
            assert_error(await reply(ws, ref), "chat_not_found", ref)


# --- flooding ------------------------------------------------------------------------------------


FLOOD_SETTINGS = {"rate_limit_messages": "5 per second"}
FLOOD_FRAMES = 60
WARNING_FRAMES = 9  # the burst of 5, then refusals well short of the 20 that end a connection


def flood_frame(chat: str, i: int) -> Json:
    return {
        "type": "message.send",
        "chat_id": chat,
        "content": f"flood {i}",
        "client_id": f"flood-{i}",
        "ref": f"f{i}",
    }


async def flood(ws: WsClient, chat: str, frames: range) -> int | None:
    """Send these frames without waiting, then read until the server closes: the close code
    (None: the socket ended without a close frame, 1006). TimeoutError if it never closes."""
    with contextlib.suppress(ConnectionClosed):  # the server may close mid-flood
        for i in frames:
            await ws.send(flood_frame(chat, i))
    return await ws.closed_with(CLOSE_WAIT_S)


async def test_flooding_sender_is_rate_limited_and_others_are_not(
    tmp_path: Path, database_url: str
) -> None:
    async with serve(tmp_path, database_url, **FLOOD_SETTINGS) as srv:
        alice, bob = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, alice, bob)
        flooder, steady = await srv.ready(alice), await srv.ready(bob)

        async def keep_sending() -> list[Json]:
            acks = []
            for i in range(8):
                ref = f"s{i}"
                await steady.send(
                    {
                        "type": "message.send",
                        "chat_id": chat,
                        "content": f"steady {i}",
                        "client_id": f"steady-{i}",
                        "ref": ref,
                    }
                )
                acks.append(await reply(steady, ref))
                await asyncio.sleep(0.25)  # pacing: well under 5 a second; not a race cover
            return acks

        async def abuse() -> tuple[list[Json], float]:
            # First over the limit by a little: every frame is answered, acks then refusals.
            started = time.monotonic()
            for i in range(WARNING_FRAMES):
                await flooder.send(flood_frame(chat, i))
            answers = [await reply(flooder, f"f{i}") for i in range(WARNING_FRAMES)]
            seconds = time.monotonic() - started
            # Then persistently: the server hangs up (its close code is the next test's business).
            await flood(flooder, chat, range(WARNING_FRAMES, FLOOD_FRAMES))
            return answers, seconds

        (answers, warning_s), steady_acks = await asyncio.gather(abuse(), keep_sending())

        kinds = [f["type"] for f in answers]
        first_error = kinds.index("error")  # ValueError: never limited
        most_accepted = 5 + 5 * warning_s + 1  # the burst, the refill while it ran, timing
        # The burst was served first; on a slow machine the bucket refills while it is read.
        assert 1 <= first_error <= most_accepted, (kinds, warning_s)
        assert kinds.count("ack") <= most_accepted, (kinds, warning_s)
        for f in answers:
            if f["type"] == "error":
                assert_error(f, "rate_limited", f["ref"])
            else:
                assert f["type"] == "ack" and f["message"]["client_id"] == f"flood-{f['ref'][1:]}"

        # The other member was never limited, during the flood or after it.
        assert [a["type"] for a in steady_acks] == ["ack"] * 8, steady_acks
        assert steady.conn.state is State.OPEN
        await pongs(steady)

        log = await events(srv.http, bob, chat)
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        stored = {e["message"]["client_id"] for e in log}
        assert {f["message"]["client_id"] for f in answers if f["type"] == "ack"} <= stored
        assert {f"steady-{i}" for i in range(8)} <= stored
        # The persistent flood added at most a few refills' worth (it ends within CLOSE_WAIT_S).
        flood_stored = {c for c in stored if c.startswith("flood-")}
        assert len(flood_stored) <= kinds.count("ack") + 5 * CLOSE_WAIT_S, flood_stored


async def test_flooding_sender_is_closed_with_4429(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url, **FLOOD_SETTINGS) as srv:
        alice, bob = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, alice, bob)
        ws = await srv.ready(alice)
        assert await flood(ws, chat, range(FLOOD_FRAMES)) == 4429
        kinds = [f["type"] for f in ws.received if f["type"] in ("ack", "error")]
        assert kinds[0] == "ack" and "error" in kinds, kinds


async def test_a_marker_flood_is_refused_then_closed_and_the_markers_hold(
    tmp_path: Path, database_url: str
) -> None:
    async with serve(tmp_path, database_url) as srv:
        alice, bob = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, alice, bob)
        for n in range(3):
            await srv.http.post(
                "/api/messages",
                json={"chat_id": chat, "content": f"m{n}"},
                headers=alice["headers"],
            )
        ws = await srv.ready(bob)
        with contextlib.suppress(ConnectionClosed):  # the server may close mid-flood
            for i in range(400):
                await ws.send({"type": "read", "chat_id": chat, "seq": 1 + i % 3, "ref": i})
        assert await ws.closed_with(CLOSE_WAIT_S) == 4429
        answers = [f for f in ws.received if f["type"] in ("ack", "error")]
        assert answers[0] == {"type": "ack", "ref": 0}
        refused = [f for f in answers if f["type"] == "error"]
        assert refused and all(f["code"] == "rate_limited" for f in refused)

        # What was accepted is written (within an instant: markers are written in batches).
        async def bobs_read_marker() -> int:
            r = await srv.http.get(f"/api/chats/{chat}/members", headers=alice["headers"])
            return int(
                next(m for m in r.json()["items"] if m["user"]["id"] == bob["user"]["id"])[
                    "last_read_seq"
                ]
            )

        async with asyncio.timeout(CLOSE_WAIT_S):
            while await bobs_read_marker() != 3:
                await asyncio.sleep(0.05)  # poll interval, bounded by the timeout above


# --- heartbeat -----------------------------------------------------------------------------------


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each complete server frame in `data` (server frames are unmasked)."""
    frames = []
    i = 0
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if length == 126:
            (length,) = struct.unpack("!H", data[i : i + 2])
            i += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[i : i + 8])
            i += 8
        if i + length > len(data):
            break
        frames.append((opcode, data[i : i + length]))
        i += length
    return frames


async def test_client_that_never_answers_pings_is_dropped(
    tmp_path: Path, database_url: str
) -> None:
    settings = {
        "ws_ping_interval_seconds": "0.5",
        "ws_ping_timeout_seconds": "0.5",
        "ws_auth_timeout_seconds": "30",  # so that only the missing pongs can end it
    }
    async with serve(tmp_path, database_url, **settings) as srv:
        parts = urlsplit(srv.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    "GET /ws HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n"
                    "\r\n"
                ).encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101"), head
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
            fields = dict(
                line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
            )
            headers = {k.lower(): v for k, v in fields.items()}
            assert headers["sec-websocket-accept"] == accept.decode(), head

            # Never write another byte: no pong, no auth. Read until the server hangs up.
            started = time.monotonic()
            data = b""
            async with asyncio.timeout(CLOSE_WAIT_S):
                with contextlib.suppress(ConnectionResetError):
                    while chunk := await reader.read(65536):
                        data += chunk
            dropped_after = time.monotonic() - started
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

        frames = _server_frames(data)
        opcodes = [op for op, _ in frames]
        assert 0x9 in opcodes, frames  # the server pinged
        assert 0x1 not in opcodes, frames  # and never got as far as `ready`
        assert dropped_after >= 0.5, dropped_after  # not before a ping could go unanswered
        assert dropped_after < 5, dropped_after
        # Its last word is a close frame: 1011 (keepalive ping timeout).
        assert frames[-1][0] == 0x8, frames
        assert struct.unpack("!H", frames[-1][1][:2]) == (1011,), frames


async def test_client_that_answers_pings_stays_connected(tmp_path: Path, database_url: str) -> None:
    settings = {"ws_ping_interval_seconds": "0.5", "ws_ping_timeout_seconds": "0.5"}
    async with serve(tmp_path, database_url, **settings) as srv:
        ws = await srv.ready(await register(srv.http))
        # Four ping intervals pass (the time passing is what is under test).
        assert await ws.quiet(2.0) == []
        assert ws.conn.state is State.OPEN
        await pongs(ws)


# --- origins -------------------------------------------------------------------------------------


async def test_upgrade_from_unlisted_origin_is_403(tmp_path: Path, database_url: str) -> None:
    async with serve(tmp_path, database_url, cors_origins="https://ok.example") as srv:
        alice = await register(srv.http)
        with pytest.raises(InvalidStatus) as refused:
            await srv.open(origin="https://evil.example")
        assert refused.value.response.status_code == 403

        ws = await srv.open(origin="https://ok.example")
        await ws.send({"type": "auth", "token": alice["access_token"]})
        assert (await ws.recv())["type"] == "ready"
        await pongs(ws)

        # Native clients send no Origin at all; CORS is a browser matter, so they may connect.
        native = await srv.open(origin=None)
        await native.send({"type": "auth", "token": alice["access_token"]})
        assert (await native.recv())["type"] == "ready"
