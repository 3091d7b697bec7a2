"""The README's examples (Python over the raw WebSocket, and the JavaScript client), run as
written against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import reverb_serve, server_env
from tests.node import run_node

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_ORIGIN = "https://chat.example.com"


def _alice_and_bob(http: httpx.Client) -> str:
    """Alice and Bob, as the examples log in, and their direct chat's id."""
    for name in ("alice", "bob"):
        http.post(
            "/api/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": "wonderland-42"},
        ).raise_for_status()
    token = http.post(
        "/api/auth/login", json={"username": "alice", "password": "wonderland-42"}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    bob = http.get("/api/users", params={"search": "bob"}, headers=auth).json()["items"][0]
    chat: str = http.post(
        "/api/chats", json={"type": "direct", "user_id": bob["id"]}, headers=auth
    ).json()["id"]
    return chat


def test_the_python_example_runs(tmp_path: Path, database_url: str) -> None:
    section = README.read_text().split("## Real time: connecting to `/ws`", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("## JavaScript client", 1)[0], re.S)
    script = tmp_path / "chat.py"
    script.write_text(code)
    with reverb_serve(tmp_path, server_env(database_url)) as (url, _):
        with httpx.Client(base_url=url) as http:
            chat = _alice_and_bob(http)
        done = subprocess.run(
            [sys.executable, str(script), "alice", "wonderland-42", chat],
            env={"REVERB_ADDRESS": url.removeprefix("http://"), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["ack None", "message.created 1"]


def test_the_javascript_client_example_runs(tmp_path: Path, database_url: str) -> None:
    """The README's reverb-client.js example in Node, with the server's address for the
    example's, against a server where alice has a chat with bob."""
    section = README.read_text().split("## JavaScript client", 1)[1]
    code = re.findall(r"```js\n(.*?)```", section, re.S)[0]
    module = Path(__file__).resolve().parents[2] / "reverb" / "web" / "reverb-client.js"
    with reverb_serve(tmp_path, server_env(database_url)) as (url, _):
        with httpx.Client(base_url=url) as http:
            _alice_and_bob(http)  # the example sends into the first chat of alice's
        script = tmp_path / "example.mjs"
        script.write_text(
            code.replace(f"{EXAMPLE_ORIGIN}/web/reverb-client.js", module.as_uri()).replace(
                EXAMPLE_ORIGIN, url
            )
        )
        done = run_node([str(script)], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "socket online" in lines, lines
    assert any(line.startswith("stored ") and line.endswith(" 1") for line in lines), lines
    assert "422 validation_error" in lines, lines
