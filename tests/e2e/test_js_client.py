"""The JavaScript client (reverb/web/reverb-client.js) under Node's test runner, against a real
`reverb serve` process: the files in tests/js run with the server's URL in REVERB_URL."""

from __future__ import annotations

import asyncio
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import base_env, reverb_process, running_process, server_env
from tests.helpers import PASSWORD, bearer, until
from tests.node import run_node
from tests.ports import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
JS_TESTS = sorted(str(p) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
# Bounded: the files take about 30 s here; a hang must not eat CI's time.
TIMEOUT_S = 240
# The shortest access token the server allows, so a test sees one expire and be renewed.
ACCESS_TOKEN_TTL_S = "10"
LIMITED_MESSAGES = "5 per second"


def test_the_javascript_client_against_a_real_server(tmp_path: Path, database_url: str) -> None:
    assert JS_TESTS, "no tests/js/*.test.mjs"
    env = server_env(database_url, access_token_ttl_seconds=ACCESS_TOKEN_TTL_S)
    # A second server on the same database, with the default-like message limit made small, for
    # sends refused as rate_limited and tried again.
    limited_env = {**env, "RATE_LIMIT_MESSAGES": LIMITED_MESSAGES}
    with reverb_process(tmp_path, env) as server, reverb_process(tmp_path, limited_env) as limited:
        done = run_node(
            ["--test", "--test-reporter=spec", *JS_TESTS],
            cwd=ROOT,
            env={
                **base_env(),
                "REVERB_URL": server.url,
                "REVERB_LIMITED_URL": limited.url,
                "REVERB_ACCESS_TOKEN_TTL_S": ACCESS_TOKEN_TTL_S,
            },
            timeout=TIMEOUT_S,
        )
        out = done.stdout + done.stderr
        logs = server.log_path.read_text() + limited.log_path.read_text()
        assert done.returncode == 0, out + "\n--- server logs ---\n" + logs
    # The spec reporter's summary: every test ran, none skipped or left as todo (a test that
    # cannot run fails instead).
    counts = dict(re.findall(r"^\S (tests|pass|fail|skipped|todo|cancelled) (\d+)$", out, re.M))
    assert counts.get("fail") == "0" and int(counts.get("pass", 0)) > 0, out
    assert counts["pass"] == counts["tests"], out


def test_the_javascript_client_across_a_server_restart(tmp_path: Path, database_url: str) -> None:
    """The server stops (closing its sockets with 1012) and a new process starts on the same
    port and database: the client reconnects, resumes with `since`, and its send made in
    between is stored once."""
    env = server_env(database_url)
    port = free_port()
    mark = tmp_path / "online"

    def serve(port: int) -> list[str]:
        return [sys.executable, "-m", "reverb", "serve", "--port", str(port)]

    with ThreadPoolExecutor(1) as pool:
        with running_process(tmp_path, env, serve, port=port) as first:
            with httpx.Client(base_url=first.url, timeout=30) as http:
                alice, bob, chat = _pair(http)
                for i in range(2):
                    _post(http, bob, chat, f"before {i}")
            node = pool.submit(
                run_node,
                [str(ROOT / "tests" / "js" / "restart_client.mjs")],
                cwd=ROOT,
                env={
                    **base_env(),
                    "REVERB_URL": first.url,
                    "REVERB_LOGIN": alice["user"]["username"],
                    "REVERB_PASSWORD": PASSWORD,
                    "REVERB_CHAT": chat,
                    "REVERB_MARK": str(mark),
                    "REVERB_EXPECTED_SEQ": "6",
                },
                timeout=TIMEOUT_S,
            )
            asyncio.run(until(mark.exists, "the client to see the first two messages", 60))
        with running_process(tmp_path, env, serve, port=port) as second:
            with httpx.Client(base_url=second.url, timeout=30) as http:
                for i in range(3):
                    _post(http, bob, chat, f"after {i}")
            done = node.result(timeout=TIMEOUT_S)
            with httpx.Client(base_url=second.url, timeout=30) as http:
                history = http.get(f"/api/messages/{chat}", headers=alice["headers"]).json()
    assert done.returncode == 0, done.stdout + done.stderr
    contents = [m["content"] for m in history["items"]]
    assert contents.count("during the restart") == 1, contents
    assert len(contents) == 6, contents


def _pair(http: httpx.Client) -> tuple[dict[str, Any], dict[str, Any], str]:
    sessions = []
    for name in ("alice", "bob"):
        r = http.post(
            "/api/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        )
        assert r.status_code == 201, r.text
        session: dict[str, Any] = r.json()
        session["headers"] = bearer(session["access_token"])
        sessions.append(session)
    alice, bob = sessions
    r = http.post(
        "/api/chats",
        json={"type": "direct", "user_id": bob["user"]["id"]},
        headers=alice["headers"],
    )
    assert r.status_code == 201, r.text
    return alice, bob, str(r.json()["id"])


def _post(http: httpx.Client, sender: dict[str, Any], chat: str, content: str) -> None:
    r = http.post(
        "/api/messages", json={"chat_id": chat, "content": content}, headers=sender["headers"]
    )
    assert r.status_code == 201, r.text
