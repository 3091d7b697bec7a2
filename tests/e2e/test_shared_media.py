"""Two `reverb serve` processes on one database and one S3 bucket, each with a MEDIA_DIR of its
own (as on two machines): what is uploaded through one is served by the other, and what one
removes is gone from both (issue 12, shared media)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.server import reverb_serve, run_cli, server_env
from tests.s3_server import S3Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        server.create_bucket("shared")
        yield server
    finally:
        server.stop()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 40, 90)).save(buf, "PNG")
    return buf.getvalue()


def test_an_upload_through_one_replica_is_served_by_the_other(
    database_url: str, tmp_path: Path, s3: S3Server
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    store = {k.upper(): v for k, v in s3.settings("shared-media", bucket="shared").items()}
    env = {**server_env(database_url), **store, "MEDIA_DIR": "./media"}
    assert run_cli(one, "migrate", env=env).returncode == 0
    with (
        reverb_serve(one, env) as (url_one, _),
        reverb_serve(two, env) as (url_two, _),
        httpx.Client(base_url=url_one, timeout=30) as a,
        httpx.Client(base_url=url_two, timeout=30) as b,
    ):
        a.post(
            "/api/auth/register",
            json={"username": "ann", "email": "ann@example.com", "password": "password-1"},
        ).raise_for_status()
        token = a.post("/api/auth/login", json={"username": "ann", "password": "password-1"})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}

        data = png()
        up = a.post("/api/media", files={"file": ("p.png", data, "image/png")}, headers=auth)
        assert up.status_code == 201, up.text
        media = up.json()
        served = b.get(media["url"])
        assert served.status_code == 200 and served.content == data
        assert served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.headers["content-disposition"].startswith("inline")
        assert b.get(media["thumbnail_url"]).status_code == 200
        part = b.get(media["url"], headers={"Range": "bytes=0-7"})
        assert (part.status_code, part.content) == (206, data[:8])

        doc = b.post("/api/media", files={"file": ("n.txt", b"a note", "text/plain")}, headers=auth)
        assert doc.status_code == 201, doc.text
        note = a.get(doc.json()["url"])
        assert (note.status_code, note.content) == (200, b"a note")
        assert note.headers["content-disposition"].startswith("attachment")

        avatar = a.put(
            "/api/users/me/avatar", files={"file": ("me.png", data, "image/png")}, headers=auth
        )
        assert avatar.status_code == 200, avatar.text
        avatar_url = avatar.json()["avatar_url"]
        assert b.get(avatar_url).status_code == 200
        assert b.delete("/api/users/me/avatar", headers=auth).status_code == 200
        assert a.get(avatar_url).status_code == 404  # removed through two, gone from one

    # Neither replica kept a file on its own disk: only its (empty) scratch folder.
    for home in (one, two):
        assert [p.relative_to(home).as_posix() for p in (home / "media").rglob("*")] == [
            "media/.tmp"
        ]
