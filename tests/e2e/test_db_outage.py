"""PostgreSQL stopped under a real `reverb serve` mid-traffic, then started again: 503s and
`service_unavailable`, never a 500 or a traceback, and every acknowledged message stored once."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reverb.realtime.protocol import CLOSE_TRY_AGAIN_LATER
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import WsClient
from tests.helpers import assert_problem, events, group, register
from tests.pg_cluster import PgCluster, pg_cluster  # noqa: F401

pytestmark = pytest.mark.e2e

Session = dict[str, Any]
# Each request during the outage is answered within the connect timeout (5 s) and some slack.
MAX_ANSWER_S = 7.0
OUTAGE_ANSWERS = 5  # refusals of each kind seen before the database comes back


@dataclass
class Traffic:
    """What the clients were told about each send, by client id."""

    acked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    statuses: Counter[object] = field(default_factory=Counter)
    slowest: float = 0.0
    ids: itertools.count[int] = field(default_factory=itertools.count)


async def rest_send(http: httpx.AsyncClient, who: Session, chat: str, t: Traffic) -> int:
    client_id = f"rest-{next(t.ids)}"
    started = time.monotonic()
    r = await http.post(
        "/api/messages",
        json={"chat_id": chat, "content": client_id, "client_id": client_id},
        headers=who["headers"],
    )
    t.slowest = max(t.slowest, time.monotonic() - started)
    t.statuses[r.status_code] += 1
    if r.status_code == 201:
        t.acked.add(client_id)
    else:
        body = assert_problem(r, 503, "service_unavailable")
        assert int(r.headers["Retry-After"]) >= 1, body
        t.refused.add(client_id)
    return r.status_code


async def ws_send(ws: WsClient, chat: str, t: Traffic, client_id: str | None = None) -> str:
    client_id = client_id or f"ws-{next(t.ids)}"
    frame = {"type": "message.send", "chat_id": chat, "content": client_id, "client_id": client_id}
    started = time.monotonic()
    await ws.send({**frame, "ref": client_id})
    answer = await ws.until(lambda f: f.get("ref") == client_id)
    t.slowest = max(t.slowest, time.monotonic() - started)
    kind = answer["type"] if answer["type"] == "ack" else answer["code"]
    t.statuses[kind] += 1
    if kind == "ack":
        t.acked.add(client_id)
    else:
        assert kind == "service_unavailable", answer
        t.refused.add(client_id)
    return str(kind)


async def _outage(url: str, cluster: PgCluster) -> None:
    t = Traffic()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        a, b = await register(http), await register(http)
        chat = await group(http, a, b)
        ws = await WsClient.ready(url, a["access_token"])
        leaving = await WsClient.ready(url, b["access_token"])
        for _ in range(5):
            assert await rest_send(http, a, chat, t) == 201
            assert await ws_send(ws, chat, t) == "ack"

        await asyncio.to_thread(cluster.stop)
        rest_503 = ws_refused = 0
        for _ in range(200):  # bounded: each answer takes at most MAX_ANSWER_S
            rest_503 += await rest_send(http, a, chat, t) == 503
            ws_refused += await ws_send(ws, chat, t) == "service_unavailable"
            if min(rest_503, ws_refused) >= OUTAGE_ANSWERS:
                break
        assert min(rest_503, ws_refused) >= OUTAGE_ANSWERS, t.statuses
        # A user going offline meanwhile: their last-seen time cannot be stored (quietly).
        await leaving.close()
        # A socket authenticating meanwhile: told to come back later.
        late = await WsClient.open(url)
        await late.send({"type": "auth", "token": b["access_token"]})
        assert await late.closed_with() == CLOSE_TRY_AGAIN_LATER
        r = await http.get(f"/api/messages/{chat}", headers=a["headers"])
        assert_problem(r, 503, "service_unavailable")
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200

        await asyncio.to_thread(cluster.start)
        # Back without restarting Reverb: the same socket and the same client send again.
        recovered = False
        for _ in range(100):
            if await rest_send(http, a, chat, t) == 201:
                recovered = True
                break
            await asyncio.sleep(0.1)  # pacing between retries, bounded by the loop
        assert recovered, t.statuses
        assert await ws_send(ws, chat, t) == "ack"
        # Clients retry what was refused, with the same client id: stored once in all.
        for client_id in sorted(t.refused):
            if client_id.startswith("ws-"):
                assert await ws_send(ws, chat, t, client_id) == "ack"
            else:
                r = await http.post(
                    "/api/messages",
                    json={"chat_id": chat, "content": client_id, "client_id": client_id},
                    headers=a["headers"],
                )
                assert r.status_code in (200, 201), r.text
                t.acked.add(client_id)
        await ws.close()
        b_ws = await WsClient.ready(url, b["access_token"])
        await b_ws.close()

        log = await events(http, b, chat)
    assert 500 not in t.statuses and "internal_error" not in t.statuses, t.statuses
    assert t.slowest < MAX_ANSWER_S, t.slowest
    created = [e["message"]["client_id"] for e in log if e["type"] == "message.created"]
    assert Counter(created) == Counter(t.acked | t.refused)  # each exactly once
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))  # no gap: nothing half-made


def test_database_outage_is_answered_503_and_recovers(
    tmp_path: Path,
    pg_cluster: PgCluster,  # noqa: F811
) -> None:
    env = server_env(pg_cluster.url)
    with reverb_serve(tmp_path, env) as (url, log_path):
        asyncio.run(_outage(url, pg_cluster))
        text = log_path.read_text()
    assert "Traceback" not in text, text[-5000:]
    assert '" 500' not in text
    outage_lines = [line for line in text.splitlines() if "database unavailable" in line]
    assert 1 <= len(outage_lines) <= 10, outage_lines  # rate-limited, not one per request
