"""Clients that stop reading are released (issue 11, part 7): after a 4013 (too slow) or an
unanswered ping the server aborts the socket after a short grace, discarding what it could not
send; the connections gauge drops and the close is logged with the user and the code.

A real `reverb serve` process; the dead client is a bare TCP socket with a tiny receive window
that authenticates and then never reads again (nor answers pings).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.server import Running, reverb_process, server_env
from tests.e2e.wsclient import Json, WsClient, raw_connect, raw_send_text
from tests.helpers import group, register, until

pytestmark = pytest.mark.e2e

TCP_ESTABLISHED = 1
# The grace (5 s) plus room for a loaded machine: the bound within which the socket must go.
RELEASED_WITHIN_S = 15.0
BIG = "x" * 3990
GAUGE = re.compile(r"^reverb_ws_connections (\S+)$", re.MULTILINE)


def tcp_state(sock: socket.socket) -> int:
    """The kernel's state of the connection (struct tcp_info's first byte), read without
    reading any data: ESTABLISHED until the server's reset (or FIN) arrives."""
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0])


def drain(sock: socket.socket) -> None:
    """Read until the end of the stream (bounded by the socket's timeout)."""
    while sock.recv(65536):
        pass


async def gauge(http: httpx.AsyncClient) -> float:
    match = GAUGE.search((await http.get("/metrics")).text)
    assert match, "the connections gauge is exported"
    return float(match.group(1))


async def wait_for_gauge(http: httpx.AsyncClient, value: float) -> None:
    seen = await gauge(http)
    for _ in range(200):  # bounded: at most 200 reads of /metrics, 50 ms apart
        if seen == value:
            return
        await asyncio.sleep(0.05)
        seen = await gauge(http)
    assert seen == value, f"the connections gauge stays at {seen}, not {value}"


def acked(ref: int) -> Callable[[Json], bool]:
    return lambda frame: frame["type"] == "ack" and frame.get("ref") == ref


def ws_lines(log: Path, start: str) -> list[dict[str, Any]]:
    """The JSON log lines whose message starts with `start` ("ws closed", "ws connected")."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg", "").startswith(start):
                out.append(entry)
    return out


async def stall_and_flood(server: Running, *, total: int, expect_close: int) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        a, dead_user = await register(http), await register(http)
        chat = await group(http, a, dead_user)
        before = await gauge(http)
        dead = raw_connect(server.url, rcvbuf=4096)
        try:
            raw_send_text(
                dead, orjson.dumps({"type": "auth", "token": dead_user["access_token"]}).decode()
            )
            sender = await WsClient.ready(server.url, a["access_token"])
            await wait_for_gauge(http, before + 2)  # both authenticated and counted
            # 4 KB messages into the chat (6 MB and more), more than the kernel buffers for a
            # socket nobody reads; each send waits for its ack, so the sender's own socket is
            # read (and answers pings).
            for n in range(total):
                frame = {"type": "message.send", "chat_id": chat, "content": f"{n} {BIG}"}
                await sender.send({**frame, "client_id": str(n), "ref": n})
                await sender.until(acked(n))
            await until(
                lambda: tcp_state(dead) != TCP_ESTABLISHED,
                "the server drops the socket at TCP level",
                timeout=RELEASED_WITHIN_S,
            )
            # Aborted: what was unsent (the close frame among it) is discarded; the client meets a
            # reset, not the end of a stream.
            dead.settimeout(5)
            with pytest.raises(ConnectionResetError):
                drain(dead)
            await sender.close()
            await wait_for_gauge(http, before)
        finally:
            dead.close()
        dead_id = dead_user["user"]["id"]
        lines = [e for e in ws_lines(server.log_path, "ws closed") if e.get("user_id") == dead_id]
        assert [e["code"] for e in lines] == [expect_close], lines
        opened = [e for e in ws_lines(server.log_path, "ws connected") if e["user_id"] == dead_id]
        assert [e["client"] for e in opened] == ["127.0.0.1"]


def env(database_url: str, **settings: str) -> dict[str, str]:
    """Sends unlimited (the flood is the test's), JSON logs (the close line is read back)."""
    return server_env(database_url, log_format="json", **settings)


async def test_a_slow_consumer_is_aborted_after_its_4013(tmp_path: Path, database_url: str) -> None:
    with reverb_process(tmp_path, env(database_url, ws_queue_size="20")) as server:
        await stall_and_flood(server, total=1500, expect_close=4013)


async def test_a_client_that_stops_answering_pings_is_aborted(
    tmp_path: Path, database_url: str
) -> None:
    """No 4013 here (the queue is big enough): the unanswered ping is what ends it, with data
    still unsent. Unanswered at about 5 s: by then the kernel buffers are full."""
    settings = env(
        database_url,
        ws_queue_size="100000",
        ws_ping_interval_seconds="3",
        ws_ping_timeout_seconds="2",
    )
    with reverb_process(tmp_path, settings) as server:
        await stall_and_flood(server, total=3000, expect_close=1011)


def test_accepted_sockets_get_a_tcp_user_timeout() -> None:
    from reverb.realtime.transport import TCP_USER_TIMEOUT_S, set_user_timeout

    with socket.socket() as sock:
        assert set_user_timeout(sock, TCP_USER_TIMEOUT_S)
        (ms,) = struct.unpack("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 4))
        assert ms == TCP_USER_TIMEOUT_S * 1000
