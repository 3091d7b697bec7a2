"""Rate limits hold across server processes when they share Redis."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import WsClient
from tests.helpers import assert_problem, group, register
from tests.services import REDIS_TEST_URL

pytestmark = pytest.mark.e2e


async def _one_budget(urls: list[str]) -> None:
    async with (
        httpx.AsyncClient(base_url=urls[0]) as one,
        httpx.AsyncClient(base_url=urls[1]) as two,
    ):
        a, b = await register(one), await register(one)
        chat = await group(one, a, b)
        for i in range(10):  # alternately on each process: one budget of 10
            http = (one, two)[i % 2]
            r = await http.post(
                "/api/messages", json={"chat_id": chat, "content": f"m{i}"}, headers=a["headers"]
            )
            assert r.status_code == 201, r.text
        for http in (one, two):
            r = await http.post(
                "/api/messages", json={"chat_id": chat, "content": "over"}, headers=a["headers"]
            )
            assert_problem(r, 429, "rate_limited")
            assert int(r.headers["Retry-After"]) >= 1
        ws = await WsClient.ready(urls[1], a["access_token"])
        try:
            await ws.send(
                {
                    "type": "message.send",
                    "chat_id": chat,
                    "content": "ws",
                    "client_id": "w",
                    "ref": 1,
                }
            )
            refused = await ws.until(lambda f: f.get("ref") == 1)
            assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
        finally:
            await ws.close()
        # The other user's budget is their own, on either process.
        r = await two.post(
            "/api/messages", json={"chat_id": chat, "content": "b"}, headers=b["headers"]
        )
        assert r.status_code == 201, r.text


def test_two_processes_with_redis_share_one_budget(tmp_path: Path, database_url: str) -> None:
    env = server_env(database_url, redis_url=REDIS_TEST_URL, rate_limit_messages="10 per hour")
    with ExitStack() as stack:
        urls = [stack.enter_context(reverb_serve(tmp_path, env))[0] for _ in range(2)]
        asyncio.run(_one_budget(urls))
