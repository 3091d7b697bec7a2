"""What is particular to where media live: byte ranges served from either store, and an S3
store that goes away (503 within seconds, nothing half-stored). The rest of the media suite runs
against the S3 store with --media s3."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings, serve_in_process
from tests.helpers import assert_problem, register
from tests.integration.test_media import (
    AVATAR,
    media_rows,
    picture,
    services,
    set_avatar,
    upload,
    uploaded,
)
from tests.s3_server import S3Server, stored

# A store that is away answers within this: the client's timeouts and retries (reverb.storage.s3)
# add up to about 5 s for a store that hangs, well under a second for one that is gone.
AWAY_WITHIN_S = 9.0


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        server.create_bucket()
        yield server
    finally:
        server.resume_if_paused()
        server.stop()


@pytest.mark.parametrize(
    ("header", "status", "span"),
    [
        ("bytes=0-9", 206, (0, 10)),
        ("bytes=95-", 206, (95, 100)),
        ("bytes=-7", 206, (93, 100)),
        ("bytes=90-500", 206, (90, 100)),
        ("bytes=0-99", 206, (0, 100)),
        ("bytes=-500", 206, (0, 100)),
    ],
)
async def test_byte_ranges_are_served(
    client: httpx.AsyncClient, header: str, status: int, span: tuple[int, int]
) -> None:
    a = await register(client)
    data = bytes(range(100))
    m = await uploaded(client, a, data, "d.bin", "application/octet-stream")
    r = await client.get(m["url"], headers={"Range": header})
    assert r.status_code == status, r.text
    start, end = span
    assert r.content == data[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/100"
    assert r.headers["content-length"] == str(end - start)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith("attachment")


async def test_a_range_of_absurd_numbers_is_ignored_not_a_500(client: httpx.AsyncClient) -> None:
    a = await register(client)
    m = await uploaded(client, a, b"0123456789", "d.bin", "application/octet-stream")
    r = await client.get(m["url"], headers={"Range": f"bytes={'9' * 5000}-"})
    assert r.status_code in (200, 400, 416), r.text


async def test_a_range_past_the_end_is_unsatisfiable_and_an_empty_file_is_served(
    client: httpx.AsyncClient,
) -> None:
    a = await register(client)
    m = await uploaded(client, a, b"0123456789", "d.bin", "application/octet-stream")
    r = await client.get(m["url"], headers={"Range": "bytes=10-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */10"
    empty = await uploaded(client, a, b"", "empty.txt", "text/plain")
    r = await client.get(empty["url"])
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")


async def test_an_s3_store_that_is_gone_answers_503_within_seconds(
    database_url: str, tmp_path: Path, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    folder = str(tmp_path / "media")
    settings = make_settings(database_url, media_dir=folder, **s3.settings(folder))
    async with serve_in_process(settings) as client:
        a = await register(client)
        m = await uploaded(client, a, picture("PNG", (64, 48)), "p.png", "image/png")
        r = await set_avatar(client, a, picture("PNG", (64, 64)), "me.png", "image/png")
        avatar_url: str = r.json()["avatar_url"]
        assert (await client.get(m["url"])).status_code == 200
        assert len(stored(settings)) == 3  # the file, its thumbnail, the avatar

        assert (await client.get("/readyz")).json()["checks"]["media"] == "ok"

        s3.stop()
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["media"] == "unavailable"
        actions: list[Callable[[], Awaitable[httpx.Response]]] = [
            lambda: upload(client, a, b"while away", "w.txt", "text/plain"),
            lambda: set_avatar(client, a, picture("PNG", (32, 32)), "new.png", "image/png"),
            lambda: client.get(m["url"]),
            lambda: client.get(m["thumbnail_url"]),
            lambda: client.get(avatar_url),
        ]
        for action in actions:
            started = time.monotonic()
            r = await action()
            assert time.monotonic() - started < AWAY_WITHIN_S
            body = assert_problem(r, 503, "service_unavailable")
            assert "media store" in body["detail"]
            assert r.headers["retry-after"] == "5"

        # Nothing half-stored: no row, no scratch file, the avatar unchanged.
        assert await media_rows(client) == 1
        assert os.listdir(Path(folder) / ".tmp") == []
        me = await client.get("/api/users/me", headers=a["headers"])
        assert me.json()["avatar_url"] == avatar_url
        # Removing an avatar is a change of the profile: it is made, and the file that can no
        # longer be removed is left behind in the store (named in the log).
        r = await client.delete(AVATAR, headers=a["headers"])
        assert (r.status_code, r.json()["avatar_url"]) == (200, None)

    # Logged as short lines (at most one every few seconds), not tracebacks; the file left
    # behind is named.
    away = [r for r in caplog.records if r.getMessage().startswith("media store unavailable")]
    assert away and all(r.exc_info is None for r in away)
    assert "Connection refused" in away[0].getMessage() or "error sending" in away[0].getMessage()
    assert any(avatar_url.removeprefix("/media/") in r.getMessage() for r in away)
    assert not [r for r in caplog.records if r.exc_info is not None]


async def test_an_s3_store_that_hangs_answers_503_within_seconds(
    database_url: str, tmp_path: Path, s3: S3Server
) -> None:
    folder = str(tmp_path / "media")
    settings = make_settings(database_url, media_dir=folder, **s3.settings(folder))
    async with serve_in_process(settings) as client:
        a = await register(client)
        m = await uploaded(client, a, b"some bytes", "s.txt", "text/plain")
        s3.pause()
        started = time.monotonic()
        r = await client.get(m["url"])
        assert time.monotonic() - started < AWAY_WITHIN_S
        assert_problem(r, 503, "service_unavailable")
        # Readiness answers within its own time limit, whatever the store does.
        started = time.monotonic()
        ready = await client.get("/readyz")
        assert time.monotonic() - started < AWAY_WITHIN_S
        assert ready.status_code == 503 and ready.json()["checks"]["media"] == "unavailable"
        s3.resume()
        back: Any = await client.get(m["url"])
        assert (back.status_code, back.content) == (200, b"some bytes")
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "media": "ok"}


async def test_a_stored_file_reads_back_in_pieces_from_either_store(
    client: httpx.AsyncClient,
) -> None:
    """The store's own reading (what S3 downloads are streamed from; a local file goes out
    through the OS), over the store the run uses."""
    a = await register(client)
    data = os.urandom(700 * 1024)  # several READ_CHUNKs
    m = await uploaded(client, a, data, "r.bin", "application/octet-stream")
    blob = await services(client).media.open(f"m/{m['id']}")
    assert blob is not None and blob.size == len(data)
    for start, end in [(0, len(data)), (5, 300_000), (len(data) - 1, len(data))]:
        got = b"".join([chunk async for chunk in await blob.read(start, end)])
        assert got == data[start:end]
    assert await services(client).media.open("m/" + "0" * 32) is None
