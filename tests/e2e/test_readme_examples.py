"""The README's Python WebSocket example, run as written against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import reverb_serve, server_env

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_python_example_runs(tmp_path: Path, database_url: str) -> None:
    section = README.read_text().split("## Real time: connecting to `/ws`", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("Browser JavaScript", 1)[0], re.S)
    script = tmp_path / "chat.py"
    script.write_text(code)
    with reverb_serve(tmp_path, server_env(database_url)) as (url, _):
        with httpx.Client(base_url=url) as http:
            for name in ("alice", "bob"):
                http.post(
                    "/api/auth/register",
                    json={
                        "username": name,
                        "email": f"{name}@example.com",
                        "password": "wonderland-42",
                    },
                ).raise_for_status()
            token = http.post(
                "/api/auth/login", json={"username": "alice", "password": "wonderland-42"}
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            bob = http.get("/api/users", params={"search": "bob"}, headers=auth).json()["items"][0]
            chat = http.post(
                "/api/chats", json={"type": "direct", "user_id": bob["id"]}, headers=auth
            ).json()["id"]
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
