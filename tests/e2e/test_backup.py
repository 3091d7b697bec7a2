"""`reverb backup` while messages are being sent, `reverb restore` elsewhere: every message
acknowledged before the backup began is in the restored database with its seq, with the media
and the secret (so earlier tokens still verify)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import reverb_serve, run_cli, server_env

pytestmark = pytest.mark.e2e

# Bounds of the sending loop: enough messages to overlap the backup, never an endless loop.
MAX_MESSAGES = 3000
MAX_SECONDS = 60.0


def test_backup_while_sending_and_restore_elsewhere(tmp_path: Path) -> None:
    live, restored = tmp_path / "live", tmp_path / "restored"
    live.mkdir()
    restored.mkdir()
    # SQLite whichever database the suite runs on: the backup copies a SQLite file.
    env = {**server_env("sqlite:///./live.db"), "MEDIA_DIR": "./media"}
    env.pop("JWT_SECRET")  # the generated development secret is part of what is backed up
    acked: list[tuple[int, str]] = []
    with reverb_serve(live, env) as (url, _):
        http = httpx.Client(base_url=url, timeout=30)
        for name in ("ann", "ben"):
            http.post(
                "/api/auth/register",
                json={"username": name, "email": f"{name}@example.com", "password": "password-1"},
            ).raise_for_status()
        ann = http.post("/api/auth/login", json={"username": "ann", "password": "password-1"})
        auth = {"Authorization": f"Bearer {ann.json()['access_token']}"}
        ben_id = http.get("/api/users", params={"search": "ben"}, headers=auth).json()["items"][0]
        chat = http.post(
            "/api/chats",
            json={"type": "group", "name": "kept", "member_ids": [ben_id["id"]]},
            headers=auth,
        ).json()["id"]
        upload = http.post(
            "/api/media", files={"file": ("note.txt", b"kept file", "text/plain")}, headers=auth
        )
        assert upload.status_code == 201, upload.text
        media = upload.json()
        http.close()

        stop = threading.Event()

        def send() -> None:
            with httpx.Client(base_url=url, timeout=30, headers=auth) as sender:
                deadline = time.monotonic() + MAX_SECONDS
                for i in range(MAX_MESSAGES):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    r = sender.post(
                        "/api/messages",
                        json={"chat_id": chat, "content": f"m{i}", "client_id": f"c{i}"},
                    )
                    r.raise_for_status()
                    acked.append((r.json()["seq"], r.json()["content"]))

        sender = threading.Thread(target=send)
        sender.start()
        try:
            while len(acked) < 50 and sender.is_alive():
                time.sleep(0.01)  # polling the sender's progress
            before = list(acked)
            done = run_cli(live, "backup", str(tmp_path / "backup"), env=env)
            during = len(acked)
        finally:
            stop.set()
            sender.join()
        assert done.returncode == 0, done.stderr
        assert during > len(before), "the backup should overlap the sends"

    put = run_cli(restored, "restore", str(tmp_path / "backup"), env=env)
    assert put.returncode == 0, put.stderr
    again = run_cli(restored, "restore", str(tmp_path / "backup"), env=env)
    assert again.returncode == 1 and "--force" in again.stderr
    with reverb_serve(restored, env) as (url, _):
        # The restored secret: the token issued by the first server still verifies.
        pages: dict[int, str] = {}
        cursor: int | None = None
        with httpx.Client(base_url=url, timeout=30, headers=auth) as http:
            while True:
                params = {"limit": 100, **({"before": cursor} if cursor else {})}
                page = http.get(f"/api/messages/{chat}", params=params)
                assert page.status_code == 200, page.text
                pages.update({m["seq"]: m["content"] for m in page.json()["items"]})
                if not page.json()["has_more"]:
                    break
                cursor = page.json()["items"][0]["seq"]
            assert set(before) <= set(pages.items())
            # Whatever the snapshot holds is a prefix of the chat: no gap in seq.
            assert sorted(pages) == list(range(1, len(pages) + 1))
            kept = http.get(media["url"])
            assert kept.status_code == 200 and kept.content == b"kept file"


def test_backup_refuses_postgresql_and_points_to_pg_dump(tmp_path: Path) -> None:
    env = server_env("postgresql://postgres@127.0.0.1:5432/test")
    done = run_cli(tmp_path, "backup", str(tmp_path / "b"), env=env)
    assert done.returncode == 2 and "pg_dump" in done.stderr


def test_backup_with_media_on_s3_copies_the_database_and_names_the_bucket(
    tmp_path: Path,
) -> None:
    """The bucket is backed up by its own means: the backup neither copies nor needs it (no S3
    server runs here), and says so."""
    live = tmp_path / "live"
    live.mkdir()
    env = {
        **server_env("sqlite:///./live.db"),
        "MEDIA_STORE": "s3",
        "S3_BUCKET": "chat-media",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    assert run_cli(live, "migrate", env=env).returncode == 0
    done = run_cli(live, "backup", str(tmp_path / "b"), env=env)
    assert done.returncode == 0, done.stderr
    assert "backed up" in done.stdout
    assert "'chat-media'" in done.stdout and "not copied" in done.stdout
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["reverb-backup.json", "reverb.db"]
