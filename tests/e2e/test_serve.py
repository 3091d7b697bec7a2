"""`reverb serve` as a real process, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from reverb import __version__
from reverb.config import async_database_url
from reverb.storage.db import Database
from reverb.storage.migrate import head_revision
from tests.conftest import TEST_SECRET
from tests.e2e.server import reverb_serve, run_cli

pytestmark = pytest.mark.e2e


def walk_through(url: str) -> None:
    """The README's curl walk-through: register, login, refresh, me, search, logout."""
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post(
            "/api/auth/register",
            json={
                "username": "alice",
                "email": "alice@example.com",
                "password": "wonderland-42",
                "display_name": "Alice",
            },
        )
        assert r.status_code == 201, r.text
        http.post(
            "/api/auth/register",
            json={"username": "bob", "email": "bob@example.com", "password": "builder-of-things"},
        ).raise_for_status()
        login = http.post(
            "/api/auth/login", json={"email": "alice@example.com", "password": "wonderland-42"}
        )
        assert login.status_code == 200
        refreshed = http.post(
            "/api/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
        )
        assert refreshed.status_code == 200
        auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        me = http.get("/api/users/me", headers=auth)
        assert me.json()["username"] == "alice" and me.json()["email"] == "alice@example.com"
        found = http.get("/api/users", params={"search": "bo"}, headers=auth).json()
        assert [u["username"] for u in found["items"]] == ["bob"]
        assert "email" not in found["items"][0]
        out = http.post(
            "/api/auth/logout", json={"refresh_token": refreshed.json()["refresh_token"]}
        )
        assert out.status_code == 204
        gone = http.post(
            "/api/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
        )
        assert gone.status_code == 401 and gone.json()["code"] == "invalid_token"
        assert http.get("/api/docs").status_code == 200
        assert http.get("/readyz").status_code == 200


def chat_walk_through(http: httpx.Client, auth: dict[str, str], bob_id: str) -> None:
    """The README's chat walk-through: create a group, send, page history, search."""
    group = http.post(
        "/api/chats",
        json={"type": "group", "name": "Tea party", "member_ids": [bob_id]},
        headers=auth,
    )
    assert group.status_code == 201, group.text
    chat_id = group.json()["id"]
    for i in range(1, 6):
        sent = http.post(
            "/api/messages",
            json={"chat_id": chat_id, "content": f"cup of tea number {i}", "client_id": f"tea-{i}"},
            headers=auth,
        )
        assert sent.status_code == 201 and sent.json()["seq"] == i
    newest = http.get(f"/api/messages/{chat_id}", params={"limit": 2}, headers=auth).json()
    assert [m["seq"] for m in newest["items"]] == [4, 5] and newest["has_more"]
    older = http.get(
        f"/api/messages/{chat_id}", params={"limit": 2, "before": 4}, headers=auth
    ).json()
    assert [m["seq"] for m in older["items"]] == [2, 3]
    hits = http.get("/api/messages/search", params={"q": "tea number 3"}, headers=auth).json()
    assert [m["content"] for m in hits["items"]] == ["cup of tea number 3"]
    chats = http.get("/api/chats", headers=auth).json()["items"]
    assert chats[0]["id"] == chat_id and chats[0]["last_message"]["seq"] == 5


def test_zero_configuration_serves_on_sqlite(tmp_path: Path) -> None:
    with reverb_serve(tmp_path) as (url, _):
        walk_through(url)
    assert (tmp_path / "reverb.db").exists()
    secret = (tmp_path / "reverb.db.jwt-secret").read_text()
    # A restart keeps the generated secret, so sessions survive it.
    with reverb_serve(tmp_path) as (url, _):
        assert (tmp_path / "reverb.db.jwt-secret").read_text() == secret
        r = httpx.post(
            f"{url}/api/auth/login", json={"username": "alice", "password": "wonderland-42"}
        )
        assert r.status_code == 200


def test_walk_through_on_the_test_database_with_json_logs(
    tmp_path: Path, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "JWT_SECRET": TEST_SECRET, "LOG_FORMAT": "json"}
    with reverb_serve(tmp_path, env) as (url, log_path):
        walk_through(url)
        r = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "e2e-trace-1"})
        assert r.headers["x-request-id"] == "e2e-trace-1"
    # Read once the process has stopped, so every line is flushed.
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "reverb.access"]
    assert any(e.get("request_id") == "e2e-trace-1" and e["route"] == "/healthz" for e in access)
    # Each request as fields: method, path, status, duration, client, user (when signed in).
    me = next(e for e in access if e["path"] == "/api/users/me")
    assert me["method"] == "GET" and me["status"] == 200 and me["client"] == "127.0.0.1"
    assert isinstance(me["duration_ms"], float) and len(me["user_id"]) == 32
    assert next(e for e in access if e["path"] == "/healthz")["user_id"] is None
    assert "wonderland-42" not in log_path.read_text()


def test_login_limit_is_shared_between_processes(tmp_path: Path, database_url: str) -> None:
    env = {
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_SECRET,
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": "2",
    }
    with reverb_serve(tmp_path, env) as (a, _), reverb_serve(tmp_path, env) as (b, _):
        httpx.post(
            f"{a}/api/auth/register",
            json={"username": "zoe", "email": "zoe@example.com", "password": "zoe-password"},
        ).raise_for_status()
        wrong = {"username": "zoe", "password": "not-her-password"}
        assert httpx.post(f"{a}/api/auth/login", json=wrong).status_code == 401
        assert httpx.post(f"{b}/api/auth/login", json=wrong).status_code == 401
        r = httpx.post(f"{a}/api/auth/login", json={"username": "zoe", "password": "zoe-password"})
        assert r.status_code == 429 and "retry-after" in r.headers


def test_cli_version_help_and_migrate(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "--version").stdout.strip() == f"reverb {__version__}"
    helped = run_cli(tmp_path, "--help")
    assert helped.returncode == 0 and "serve" in helped.stdout and "migrate" in helped.stdout
    migrated = run_cli(tmp_path, "migrate", env={"DATABASE_URL": "sqlite:///./fresh.db"})
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "fresh.db").exists()


def test_cli_refuses_bad_configuration(tmp_path: Path) -> None:
    prod = run_cli(tmp_path, "serve", env={"REVERB_ENV": "production"})
    assert prod.returncode == 2
    assert "JWT_SECRET" in prod.stderr
    weak = run_cli(tmp_path, "serve", env={"REVERB_ENV": "production", "JWT_SECRET": "short"})
    assert weak.returncode == 2 and "at least 32 bytes" in weak.stderr
    url = run_cli(tmp_path, "serve", env={"DATABASE_URL": "mysql://x@y/z"})
    assert url.returncode == 2 and "DATABASE_URL" in url.stderr
    workers = run_cli(tmp_path, "serve", "--workers", "2")
    assert workers.returncode == 2 and "REDIS_URL" in workers.stderr
    values = run_cli(tmp_path, "serve", env={"PORT": "abc", "WS_QUEUE_SIZE": "-5"})
    assert values.returncode == 2
    assert one_line(values.stderr).startswith("reverb: configuration error: PORT: ")
    assert "(got 'abc')" in values.stderr and "WS_QUEUE_SIZE: " in values.stderr
    bucketless = run_cli(tmp_path, "serve", env={"MEDIA_STORE": "s3"})
    assert bucketless.returncode == 2
    assert one_line(bucketless.stderr) == (
        "reverb: configuration error: MEDIA_STORE=s3 needs S3_BUCKET (the bucket media are "
        "stored in)"
    )
    half = {"MEDIA_STORE": "s3", "S3_BUCKET": "b", "S3_SECRET_ACCESS_KEY": "hidden-value"}
    keyless = run_cli(tmp_path, "serve", env=half)
    assert keyless.returncode == 2 and "hidden-value" not in keyless.stderr
    assert "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together" in one_line(keyless.stderr)


def one_line(stderr: str) -> str:
    """What a refused start printed: one line, no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("reverb: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


PRODUCTION = {"REVERB_ENV": "production", "JWT_SECRET": TEST_SECRET}


def set_revision(url: str, revision: str) -> None:
    async def run() -> None:
        db = Database(async_database_url(url))
        try:
            async with db.transaction() as tx:
                await tx.conn.execute(
                    text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
        finally:
            await db.close()

    asyncio.run(run())


def test_production_refuses_a_database_behind_the_newest_migration(
    tmp_path: Path, database_url: str
) -> None:
    set_revision(database_url, "0002")
    try:
        behind = run_cli(tmp_path, "serve", env={**PRODUCTION, "DATABASE_URL": database_url})
    finally:
        set_revision(database_url, str(head_revision()))
    assert behind.returncode == 1
    line = one_line(behind.stderr)
    assert "is at migration 0002" in line and "reverb migrate" in line


def test_serve_migrate_prepares_an_empty_database(tmp_path: Path) -> None:
    env = {**PRODUCTION, "DATABASE_URL": "sqlite:///./empty.db"}
    refused = run_cli(tmp_path, "serve", env=env)
    assert refused.returncode == 1
    assert "has no Reverb schema yet" in one_line(refused.stderr)
    with reverb_serve(tmp_path, env, "--migrate") as (url, _):
        assert httpx.get(f"{url}/readyz").status_code == 200


def test_an_unreachable_database_at_start_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {**PRODUCTION, "DATABASE_URL": f"postgresql://postgres:pw@127.0.0.1:{closed}/none"}
    for command in ("serve", "migrate"):
        done = run_cli(tmp_path, command, env=env)
        assert done.returncode == 1
        line = one_line(done.stderr)
        assert (
            f"cannot reach the database at postgresql+asyncpg://postgres:***@127.0.0.1:{closed}/none"
            in line
        )
        assert "pw@" not in done.stderr
