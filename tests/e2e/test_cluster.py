"""docker-compose.yml's topology, run without containers by scripts/cluster's module: two
production replicas behind Caddy running deploy/Caddyfile. Through the proxy: REST, a WebSocket
on each replica (the replicas' own metrics say which), and messages crossing between them live.
Directly: both replicas answer, and the Dockerfile's HEALTHCHECK command passes against them."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy_files import ROOT, healthcheck_command
from tests.e2e.server import base_env, server_env
from tests.e2e.wsclient import WsClient
from tests.helpers import direct, events, register
from tests.ports import free_port
from tests.services import REDIS_TEST_URL

pytestmark = pytest.mark.e2e

START_S = 90.0  # migrate, two replicas one after the other, Caddy; far less on a quiet machine
STOP_S = 30.0


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """The cluster's process, started as scripts/cluster starts it; stopped by its PID."""
    log = tmp_path / "cluster.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.cluster", "--port", "0", "--workdir", str(tmp_path)],
            cwd=ROOT,
            env={
                **base_env(),
                **server_env(database_url),
                "DATABASE_URL": database_url,
                "REDIS_URL": REDIS_TEST_URL,
            },
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert proc.stdout is not None
        try:
            try:
                line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), START_S)
            except TimeoutError:
                pytest.fail(f"the cluster did not start:\n{log.read_text()}")
            assert line, f"the cluster exited with {proc.poll()}:\n{log.read_text()}"
            urls: dict[str, Any] = json.loads(line)
            yield {**urls, "process": proc}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


async def ws_connections(http: httpx.AsyncClient, replica: str) -> float:
    r = await http.get(f"{replica}/metrics")
    assert r.status_code == 200, r.text
    found = re.search(r"^reverb_ws_connections (\S+)$", r.text, re.MULTILINE)
    assert found is not None, r.text
    return float(found.group(1))


async def test_two_replicas_behind_the_proxy(cluster: dict[str, Any]) -> None:
    proxy: str = cluster["proxy"]
    replicas: list[str] = cluster["replicas"]
    assert len(replicas) == 2 and proxy not in replicas

    # Each upstream serves on its own, and the image's health check command says so.
    async with httpx.AsyncClient(timeout=10.0) as raw:
        for replica in replicas:
            assert (await raw.get(f"{replica}/healthz")).status_code == 200
    for port, healthy in [(r.rsplit(":", 1)[1], True) for r in replicas] + [
        (str(free_port()), False)
    ]:
        check = subprocess.run(
            [sys.executable, *healthcheck_command()[1:]],
            env={**base_env(), "PORT": port},
            capture_output=True,
            timeout=10,
            check=False,
        )
        assert (check.returncode == 0) is healthy, (port, check.stderr)

    async with httpx.AsyncClient(base_url=proxy, timeout=10.0) as http:
        # REST through the proxy.
        a, b = await register(http), await register(http)
        chat = await direct(http, a, b)

        # A WebSocket through the proxy for each; least_conn sends the second to the replica
        # not holding the first. The replicas' own gauges show where each one landed.
        alice = await WsClient.ready(proxy, a["access_token"])
        on: dict[str, float] = {}

        async def where() -> None:
            for replica in replicas:
                on[replica] = await ws_connections(http, replica)

        await where()
        assert sorted(on.values()) == [0.0, 1.0], on
        first = next(r for r, n in on.items() if n == 1.0)
        bob = await WsClient.ready(proxy, b["access_token"])
        await where()
        assert list(on.values()) == [1.0, 1.0], on  # one on each replica
        assert first in on

        # Live, both ways, across the replicas (through Redis).
        await alice.send(
            {"type": "message.send", "chat_id": chat, "content": "hi bob", "client_id": "1"}
        )
        ack = await alice.until(lambda f: f["type"] == "ack")
        heard = await bob.until(lambda f: f["type"] == "message.created")
        assert heard["message"]["content"] == "hi bob"
        assert heard["seq"] == ack["message"]["seq"]
        await bob.send(
            {"type": "message.send", "chat_id": chat, "content": "hi alice", "client_id": "2"}
        )
        # Alice hears her own message too; the next one after it is Bob's.
        reply = await alice.until(
            lambda f: f["type"] == "message.created" and f["seq"] > ack["message"]["seq"]
        )
        assert reply["message"]["content"] == "hi alice"
        assert reply["seq"] == ack["message"]["seq"] + 1

        # The history through the proxy holds both, in order.
        log = [e for e in await events(http, a, chat) if e["type"] == "message.created"]
        assert [e["message"]["content"] for e in log] == ["hi bob", "hi alice"]

        # Media on the shared directory: uploaded through the proxy, served by both replicas.
        r = await http.post(
            "/api/media",
            files={"file": ("note.txt", b"shared media", "text/plain")},
            headers=a["headers"],
        )
        assert r.status_code == 201, r.text
        for replica in replicas:
            got = await http.get(f"{replica}{r.json()['url']}", headers=b["headers"])
            assert got.status_code == 200 and got.content == b"shared media", replica

        await alice.close()
        await bob.close()

    # Stopping the cluster stops every process it started.
    proc: subprocess.Popen[bytes] = cluster["process"]
    proc.terminate()
    assert await asyncio.to_thread(proc.wait, STOP_S) == 128 + signal.SIGTERM
    async with httpx.AsyncClient(timeout=5.0) as raw:
        for url in [proxy, *replicas]:
            with pytest.raises(httpx.ConnectError):
                await raw.get(f"{url}/healthz")
