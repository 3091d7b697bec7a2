"""`reverb users ...` beside a running server: accounts created, listed, disabled, enabled and
given a new password from the command line, with the server acting on it at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import reverb_serve, run_cli, server_env
from tests.e2e.wsclient import WsClient
from tests.services import REDIS_TEST_URL

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


def login(url: str, who: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/auth/login", json={"username": who, "password": password})


def test_accounts_managed_from_the_command_line(tmp_path: Path, database_url: str) -> None:
    # With REDIS_URL the command's revocations reach the running server's sockets at once.
    env = server_env(database_url, redis_url=REDIS_TEST_URL)

    def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        done = run_cli(tmp_path, "users", *args, env=env, stdin=stdin)
        return done.returncode, done.stdout, done.stderr

    with reverb_serve(tmp_path, env) as (url, _):
        code, out, err = cli(
            "create", "Alice", "Alice@Example.com", "--password-stdin", stdin=PASSWORD
        )
        assert code == 0, err
        user_id, username, email, state, _created = out.strip().split("\t")
        assert (username, email, state) == ("alice", "alice@example.com", "active")
        session = login(url, "alice", PASSWORD)
        assert session.status_code == 200 and session.json()["user"]["id"] == user_id

        # The API's own rules, in one line each.
        code, _, err = cli(
            "create", "alice", "other@example.com", "--password-stdin", stdin=PASSWORD
        )
        assert code == 1 and err.strip() == "reverb: that username is taken"
        code, _, err = cli("create", "b!", "b@example.com", "--password-stdin", stdin=PASSWORD)
        assert code == 1 and err.startswith("reverb: username:") and "\n" not in err.strip()
        code, _, err = cli("create", "bob", "bob@example.com", "--password-stdin", stdin="short")
        assert code == 1 and "at least 8 characters" in err
        code, _, err = cli("disable", "nobody")
        assert code == 1 and "no user" in err

        async def disable_while_connected() -> None:
            token = session.json()["access_token"]
            ws = await WsClient.ready(url, token)
            try:
                code, out, err = await asyncio.to_thread(cli, "disable", "alice@example.com")
                assert code == 0 and out.split("\t")[3] == "disabled", err
                await ws.until(lambda f: f["type"] == "session.revoked")
            finally:
                await ws.close()
            r = httpx.get(f"{url}/api/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401

        asyncio.run(disable_while_connected())
        refused = login(url, "alice", PASSWORD)
        assert refused.status_code == 403 and refused.json()["code"] == "account_disabled"
        # A wrong password still says only that: the account's state is not told to a guesser.
        assert login(url, "alice", "not the password").json()["code"] == "invalid_credentials"
        old_refresh = session.json()["refresh_token"]
        again = httpx.post(f"{url}/api/auth/refresh", json={"refresh_token": old_refresh})
        assert again.status_code == 401

        code, out, _ = cli("list", "--search", "ali")
        assert code == 0 and [line.split("\t")[3] for line in out.splitlines()] == ["disabled"]
        code, _, err = cli("enable", user_id)
        assert code == 0, err
        assert login(url, "alice", PASSWORD).status_code == 200

        new = "a brand new password"
        code, _, err = cli("set-password", "alice", "--password-stdin", stdin=new)
        assert code == 0, err
        assert login(url, "alice", PASSWORD).status_code == 401
        assert login(url, "alice", new).status_code == 200
