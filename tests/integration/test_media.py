"""Media: uploads and how files are served, checks by decoding, metadata stripping, avatars,
attachments, and the clean-up of uploads never attached (API.md: Media, and Users for avatars)."""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import secrets
import struct
import time
import warnings
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image, ImageFile, PngImagePlugin
from sqlalchemy import func, select

from reverb.api.deps import Services
from reverb.config import Settings
from reverb.storage.tables import media as media_table
from reverb.storage.types import utcnow
from tests.conftest import make_settings, serve_in_process
from tests.e2e.server import run_cli, server_env
from tests.helpers import assert_problem, error_fields, events, group, register, send
from tests.s3_server import stored

MiB = 1024 * 1024
HEX32 = re.compile(r"[0-9a-f]{32}")
AVATAR_URL = re.compile(r"/media/(avatars/[0-9a-f]{32}\.webp)")
MEDIA_FIELDS = {"id", "url", "filename", "content_type", "size", "width", "height", "thumbnail_url"}
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
MARKER = "SECRET-EXIF-MARKER"
AVATAR = "/api/users/me/avatar"


# --- helpers -------------------------------------------------------------------------------


def services(client: httpx.AsyncClient) -> Services:
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    found: Services = app.state.services
    return found


def media_settings(client: httpx.AsyncClient) -> Settings:
    return services(client).settings


def assert_nothing_stored(settings: Settings) -> None:
    assert sorted(os.listdir(settings.media_dir)) == [".tmp"], stored(settings)
    assert_only(settings, set())


def assert_only(settings: Settings, keys: set[str]) -> None:
    """The store holds exactly `keys`, and no scratch file is left behind."""
    assert stored(settings) == keys
    assert os.listdir(Path(settings.media_dir) / ".tmp") == []


async def media_rows(client: httpx.AsyncClient) -> int:
    async with services(client).db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(media_table))).scalar_one()
    return int(count)


def picture(
    fmt: str, size: tuple[int, int] = (640, 480), mode: str = "RGB", **params: Any
) -> bytes:
    img = Image.new(mode, size)
    if mode == "RGB":
        img.paste((200, 120, 40), (0, 0, size[0] // 2, size[1]))
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def noisy_png(side: int = 200) -> bytes:
    """A PNG whose pixel data is large and incompressible, so that half of it is truncated
    in the middle of its image data."""
    pixels = random.Random(7).randbytes(side * side * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(buf, "PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (IHDR patched, CRC fixed)."""
    data = bytearray(picture("PNG", (8, 8), mode="1"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(bytes(data))) as img:  # the header reads back as claimed
            assert img.size == (width, height)
    return bytes(data)


def animation(frames: int) -> bytes:
    images = [Image.new("RGB", (4, 4), (255 * (i % 2), 0, 0)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as img:
        assert getattr(img, "n_frames", 1) == frames
    return data


def jpeg_with_metadata(size: tuple[int, int] = (640, 480)) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = MARKER  # ImageDescription
    exif[0x013B] = MARKER  # Artist
    buf = io.BytesIO()
    Image.new("RGB", size, "teal").save(buf, "JPEG", exif=exif, comment=MARKER.encode())
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as img:
        assert img.getexif()[0x013B] == MARKER
    return data


def assert_no_metadata(data: bytes) -> None:
    assert MARKER.encode() not in data
    with Image.open(io.BytesIO(data)) as img:
        assert len(img.getexif()) == 0
        assert not {"exif", "comment", "xmp", "icc_profile"} & set(img.info), img.info


async def upload(
    client: httpx.AsyncClient,
    who: dict[str, Any],
    data: bytes,
    filename: str = "file.bin",
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    return await client.post(
        "/api/media", files={"file": (filename, data, content_type)}, headers=who["headers"]
    )


async def uploaded(
    client: httpx.AsyncClient,
    who: dict[str, Any],
    data: bytes,
    filename: str = "file.bin",
    content_type: str = "application/octet-stream",
) -> dict[str, Any]:
    r = await upload(client, who, data, filename, content_type)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def set_avatar(
    client: httpx.AsyncClient,
    who: dict[str, Any],
    data: bytes,
    filename: str = "me.png",
    content_type: str = "image/png",
) -> httpx.Response:
    return await client.put(
        AVATAR, files={"file": (filename, data, content_type)}, headers=who["headers"]
    )


def raw_multipart(filename: bytes, data: bytes, content_type: bytes) -> tuple[bytes, str]:
    """A multipart body written by hand, so the filename reaches the server byte for byte."""
    boundary = "reverb-test-boundary"
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n',
            b"Content-Type: " + content_type + b"\r\n\r\n",
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return body, f"multipart/form-data; boundary={boundary}"


def assert_served(r: httpx.Response, content_type: str, *, inline: bool, size: int) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == content_type
    assert r.headers["content-length"] == str(size) == str(len(r.content))
    assert "immutable" in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].split(";")[0] == ("inline" if inline else "attachment")


# --- uploading and serving -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
async def test_an_image_upload_is_served_inline_with_a_thumbnail(
    client: httpx.AsyncClient, fmt: str
) -> None:
    a = await register(client)
    data = picture(fmt)
    r = await upload(client, a, data, f"holiday.{fmt.lower()}", MIME[fmt])
    assert r.status_code == 201, r.text
    m = r.json()
    assert set(m) == MEDIA_FIELDS
    assert HEX32.fullmatch(m["id"])
    assert m == {
        "id": m["id"],
        "url": f"/media/{m['id']}",
        "filename": f"holiday.{fmt.lower()}",
        "content_type": MIME[fmt],
        "size": len(data),
        "width": 640,
        "height": 480,
        "thumbnail_url": f"/media/{m['id']}/thumbnail",
    }

    # No bearer token: an <img> cannot send one, the URL is the capability.
    f = await client.get(m["url"])
    assert_served(f, MIME[fmt], inline=True, size=len(data))
    assert f.content == data

    thumb = await client.get(m["thumbnail_url"])
    assert_served(thumb, "image/webp", inline=True, size=len(thumb.content))
    with Image.open(io.BytesIO(thumb.content)) as t:
        assert t.format == "WEBP"
        assert t.size == (320, 240)

    part = await client.get(m["url"], headers={"Range": "bytes=0-9"})
    assert part.status_code == 206, part.text
    assert part.content == data[:10]
    assert part.headers["content-length"] == "10"
    assert part.headers["content-range"] == f"bytes 0-9/{len(data)}"


@pytest.mark.parametrize(
    ("size", "thumb"),
    [
        pytest.param((2000, 500), (320, 80), id="wide"),
        pytest.param((300, 1000), (96, 320), id="tall"),
        pytest.param((100, 50), (100, 50), id="small-is-not-enlarged"),
    ],
)
async def test_a_thumbnail_fits_in_320_by_320(
    client: httpx.AsyncClient, size: tuple[int, int], thumb: tuple[int, int]
) -> None:
    a = await register(client)
    m = await uploaded(client, a, picture("PNG", size), "p.png", "image/png")
    assert (m["width"], m["height"]) == size
    r = await client.get(m["thumbnail_url"])
    assert r.status_code == 200
    with Image.open(io.BytesIO(r.content)) as t:
        assert (t.format, t.size) == ("WEBP", thumb)


@pytest.mark.parametrize("claimed", ["application/octet-stream", "text/html", "image/gif"])
async def test_the_decoded_type_wins_over_the_claimed_one(
    client: httpx.AsyncClient, claimed: str
) -> None:
    a = await register(client)
    data = picture("PNG", (40, 30))
    m = await uploaded(client, a, data, "x", claimed)
    assert (m["content_type"], m["width"], m["height"]) == ("image/png", 40, 30)
    assert_served(await client.get(m["url"]), "image/png", inline=True, size=len(data))


NOT_IMAGES = [
    pytest.param("notes.txt", "text/plain", b"hello, world\n", "text/plain", id="text"),
    pytest.param(
        "report.pdf",
        "application/pdf",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer <<>>\n%%EOF\n",
        "application/pdf",
        id="pdf",
    ),
    pytest.param(
        "logo.svg",
        "image/svg+xml",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
        b"<script>alert(2)</script></svg>",
        "image/svg+xml",
        id="svg",
    ),
    pytest.param(
        "page.html",
        "text/html; charset=utf-8",
        b"<!doctype html><html><script>alert(document.cookie)</script></html>",
        "text/html",
        id="html",
    ),
    pytest.param("blob", "not a type", b"\x00\x01\x02", "application/octet-stream", id="bad-type"),
]


@pytest.mark.parametrize(("filename", "claimed", "data", "served_as"), NOT_IMAGES)
async def test_anything_but_a_raster_image_is_served_as_a_download(
    client: httpx.AsyncClient, filename: str, claimed: str, data: bytes, served_as: str
) -> None:
    a = await register(client)
    m = await uploaded(client, a, data, filename, claimed)
    assert set(m) == MEDIA_FIELDS
    assert (m["width"], m["height"], m["thumbnail_url"]) == (None, None, None)
    assert (m["content_type"], m["size"], m["filename"]) == (served_as, len(data), filename)

    r = await client.get(m["url"])
    assert_served(r, served_as, inline=False, size=len(data))
    assert r.content == data
    assert "sandbox" in r.headers["content-security-policy"]
    assert f"filename*=UTF-8''{filename}" in r.headers["content-disposition"]
    assert_problem(await client.get(f"{m['url']}/thumbnail"), 404, "not_found")


@pytest.mark.parametrize(
    ("filename", "claimed", "data"),
    [
        pytest.param("todo.txt", "text/plain", b"P1 is the top priority\nP2 next\n", id="text"),
        pytest.param(
            "doc.ps",
            "application/postscript",
            b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
            id="postscript",
        ),
    ],
)
async def test_a_file_that_merely_starts_like_an_image_format_is_stored(
    client: httpx.AsyncClient, filename: str, claimed: str, data: bytes
) -> None:
    a = await register(client)
    r = await upload(client, a, data, filename, claimed)
    assert r.status_code == 201, r.text
    assert r.json()["width"] is None


MALFORMED = [
    pytest.param(b"abc", "multipart/form-data", id="no-boundary"),
    pytest.param(
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
        "multipart/form-data; boundary=x",
        id="unterminated",
        # Starlette's parser leaves the spooled file of a part that never ends unclosed (it is
        # closed when collected): a ResourceWarning, not the app's doing.
        marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    ),
    pytest.param(
        b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\nnot a file\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
        id="string-field",
    ),
    pytest.param(
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a\r\nb.txt"\r\n\r\n'
        b"abc\r\n--x--\r\n",
        "multipart/form-data; boundary=x",
        id="broken-part-header",
    ),
    pytest.param(b"--x--\r\n", "multipart/form-data; boundary=x", id="no-parts"),
]


@pytest.mark.parametrize(("body", "content_type"), MALFORMED)
async def test_a_malformed_multipart_body_is_refused(
    client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    a = await register(client)
    r = await client.post(
        "/api/media", content=body, headers={**a["headers"], "content-type": content_type}
    )
    assert_problem(r, 422, "validation_error")
    assert_nothing_stored(media_settings(client))


async def test_an_upload_needs_a_file_field_a_multipart_body_and_a_login(
    client: httpx.AsyncClient,
) -> None:
    a = await register(client)
    r = await client.post(
        "/api/media", files={"picture": ("a.txt", b"a", "text/plain")}, headers=a["headers"]
    )
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"file"}
    r = await client.post(
        "/api/media",
        files={"file": ("a.txt", b"a", "text/plain"), "file2": ("b.txt", b"b", "text/plain")},
        headers=a["headers"],
    )
    assert_problem(r, 422, "validation_error")
    r = await client.post("/api/media", json={"file": "a.txt"}, headers=a["headers"])
    assert_problem(r, 415, "unsupported_media_type")
    r = await client.post("/api/media", files={"file": ("a.txt", b"a", "text/plain")})
    assert_problem(r, 401, "not_authenticated")
    assert_nothing_stored(media_settings(client))
    assert await media_rows(client) == 0


async def test_a_long_claimed_content_type_is_no_server_error(client: httpx.AsyncClient) -> None:
    a = await register(client)
    claimed = "a" * 64 + "/" + "b" * 64
    r = await upload(client, a, b"data", "x.bin", claimed)
    assert r.status_code in (201, 415, 422), r.text
    if r.status_code == 201:
        assert (await client.get(r.json()["url"])).status_code == 200


# --- size limits ---------------------------------------------------------------------------


async def test_the_upload_limit_is_enforced_while_reading(database_url: str) -> None:
    media = make_settings(database_url, max_upload_bytes=1000)
    async with serve_in_process(media) as client:
        a = await register(client)
        for size in (2000, 1001):
            r = await upload(client, a, b"x" * size, "big.txt", "text/plain")
            assert_problem(r, 413, "payload_too_large")

        head = (
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        consumed = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal consumed
            consumed += len(head)
            yield head
            for _ in range(1600):  # 100 MiB, if anything read that far
                chunk = b"\0" * 65536
                consumed += len(chunk)
                yield chunk

        declared = 10 * 1024**3
        r = await client.post(
            "/api/media",
            content=body(),
            headers={
                **a["headers"],
                "content-type": "multipart/form-data; boundary=x",
                "content-length": str(declared),
            },
        )
        assert_problem(r, 413, "payload_too_large")
        assert consumed < MiB, consumed  # refused from its header: nothing read

        # Without a Content-Length (chunked) the limit holds while the body streams in.
        consumed = 0
        r = await client.post(
            "/api/media",
            content=body(),
            headers={**a["headers"], "content-type": "multipart/form-data; boundary=x"},
        )
        assert_problem(r, 413, "payload_too_large")
        assert consumed < MiB, consumed

        assert_nothing_stored(media)
        assert await media_rows(client) == 0

        m = await uploaded(client, a, b"y" * 1000, "exact.txt", "text/plain")
        assert m["size"] == 1000
        assert_only(media, {f"m/{m['id']}"})


# --- images are checked by decoding --------------------------------------------------------


REFUSED = [
    pytest.param(b"<html><script>alert(1)</script></html>", "image/png", 415, id="html-as-png"),
    pytest.param(b"just some text\n", "image/jpeg", 415, id="text-as-jpeg"),
    pytest.param(b"GIF89a but not really", "image/gif", 415, id="fake-gif-magic"),
    pytest.param(picture("BMP", (20, 20)), "image/bmp", 415, id="bmp"),
    pytest.param(picture("TIFF", (20, 20)), "image/tiff", 415, id="tiff"),
    pytest.param(png_claiming(7000, 7000), "image/png", 422, id="49-megapixels"),
    pytest.param(animation(301), "image/gif", 422, id="301-frames"),
]


@pytest.mark.parametrize(("data", "claimed", "status"), REFUSED)
async def test_an_image_that_does_not_decode_is_refused(
    client: httpx.AsyncClient, data: bytes, claimed: str, status: int
) -> None:
    a = await register(client)
    r = await upload(client, a, data, "image", claimed)
    body = assert_problem(
        r, status, "unsupported_media_type" if status == 415 else "validation_error"
    )
    if status == 422:
        assert error_fields(body) == {"file"}
    assert_nothing_stored(media_settings(client))
    assert await media_rows(client) == 0


async def test_a_truncated_png_is_refused(client: httpx.AsyncClient) -> None:
    a = await register(client)
    whole = noisy_png()
    r = await upload(client, a, whole[: len(whole) // 2], "half.png", "image/png")
    assert r.status_code in (415, 422), r.text
    assert_problem(
        r, r.status_code, "unsupported_media_type" if r.status_code == 415 else "validation_error"
    )
    assert_nothing_stored(media_settings(client))
    assert await media_rows(client) == 0


async def test_a_decompression_bomb_is_refused_from_its_header(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await register(client)
    bomb = png_claiming(10_000, 10_000)  # 100 MP claimed, 8x8 pixels of data
    decoded: list[str] = []
    load = ImageFile.ImageFile.load

    def spying_load(self: ImageFile.ImageFile) -> Any:
        decoded.append(str(self.format))
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    await uploaded(client, a, picture("PNG", (8, 8)), "ok.png", "image/png")
    assert decoded, "the spy sees the pixels of an accepted image being decoded"
    decoded.clear()
    before = stored(media_settings(client))

    started = time.monotonic()
    r = await upload(client, a, bomb, "bomb.png", "image/png")
    elapsed = time.monotonic() - started
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"file"}
    assert decoded == []  # refused before any pixel was decoded
    assert elapsed < 5, elapsed
    assert_only(media_settings(client), before)
    assert await media_rows(client) == 1


async def test_an_animation_of_300_frames_is_accepted(client: httpx.AsyncClient) -> None:
    a = await register(client)
    m = await uploaded(client, a, animation(300), "anim.gif", "image/gif")
    assert (m["content_type"], m["width"], m["height"]) == ("image/gif", 4, 4)


# --- metadata ------------------------------------------------------------------------------


async def test_an_avatar_keeps_no_exif(client: httpx.AsyncClient) -> None:
    a = await register(client)
    data = jpeg_with_metadata()
    r = await set_avatar(client, a, data, "me.jpg", "image/jpeg")
    assert r.status_code == 200, r.text
    served = await client.get(r.json()["avatar_url"])
    assert_served(served, "image/webp", inline=True, size=len(served.content))
    assert_no_metadata(served.content)


async def test_a_thumbnail_keeps_no_metadata(client: httpx.AsyncClient) -> None:
    a = await register(client)
    m = await uploaded(client, a, jpeg_with_metadata(), "photo.jpg", "image/jpeg")
    thumb = await client.get(m["thumbnail_url"])
    assert thumb.status_code == 200
    assert_no_metadata(thumb.content)

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", MARKER)
    m = await uploaded(client, a, picture("PNG", pnginfo=text), "p.png", "image/png")
    thumb = await client.get(m["thumbnail_url"])
    assert thumb.status_code == 200
    assert_no_metadata(thumb.content)


# --- avatars -------------------------------------------------------------------------------


async def test_avatars_are_square_webp_and_replaced_files_are_removed(
    client: httpx.AsyncClient,
) -> None:
    a, b = await register(client), await register(client)
    media = media_settings(client)
    assert a["user"]["avatar_url"] is None
    previous: str | None = None
    for fmt, size, side in [
        ("PNG", (800, 300), 300),
        ("JPEG", (1200, 900), 512),
        ("WEBP", (100, 200), 100),
        ("GIF", (600, 600), 512),
    ]:
        r = await set_avatar(client, a, picture(fmt, size), f"me.{fmt.lower()}", MIME[fmt])
        assert r.status_code == 200, r.text
        me = r.json()
        assert me["id"] == a["user"]["id"] and me["email"] == a["user"]["email"]
        url = me["avatar_url"]
        match = AVATAR_URL.fullmatch(url)
        assert match, url
        assert url != previous

        served = await client.get(url)
        assert_served(served, "image/webp", inline=True, size=len(served.content))
        with Image.open(io.BytesIO(served.content)) as img:
            assert (img.format, img.size) == ("WEBP", (side, side))
        assert (await client.get("/api/users/me", headers=a["headers"])).json()["avatar_url"] == url
        seen = await client.get(f"/api/users/{a['user']['id']}", headers=b["headers"])
        assert seen.json()["avatar_url"] == url

        if previous is not None:  # the replaced file is gone
            assert_problem(await client.get(previous), 404, "not_found")
        assert_only(media, {match.group(1)})
        previous = url

    r = await client.delete(AVATAR, headers=a["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["avatar_url"] is None
    assert previous is not None
    assert_problem(await client.get(previous), 404, "not_found")
    assert_only(media, set())
    assert (await client.get("/api/users/me", headers=a["headers"])).json()["avatar_url"] is None

    r = await client.delete(AVATAR, headers=a["headers"])  # again: nothing to remove
    assert (r.status_code, r.json()["avatar_url"]) == (200, None)


def avatar_form(data: bytes, filename: str = "me.png", content_type: str = "image/png") -> Any:
    return {"files": {"file": (filename, data, content_type)}}


REFUSED_AVATARS = [
    pytest.param(
        avatar_form(picture("PNG", (64, 64)) + b"\0" * (5 * MiB)),
        413,
        "payload_too_large",
        id="over-5-MiB",
    ),
    pytest.param(
        avatar_form(picture("PNG", (5000, 100), mode="1")), 422, "validation_error", id="5000x100"
    ),
    pytest.param(
        avatar_form(picture("PNG", (100, 4097), mode="1")), 422, "validation_error", id="100x4097"
    ),
    pytest.param(
        avatar_form(png_claiming(10_000, 10_000)), 422, "validation_error", id="100-megapixels"
    ),
    pytest.param(
        avatar_form(b"hello\n", "me.txt", "text/plain"), 415, "unsupported_media_type", id="text"
    ),
    pytest.param(
        avatar_form(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "me.svg", "image/svg+xml"),
        415,
        "unsupported_media_type",
        id="svg",
    ),
    pytest.param(
        avatar_form(picture("BMP", (20, 20)), "me.bmp", "image/bmp"),
        415,
        "unsupported_media_type",
        id="bmp",
    ),
    pytest.param(avatar_form(noisy_png()[:5000]), 422, "validation_error", id="truncated"),
    pytest.param(
        {"files": {"picture": ("me.png", picture("PNG"), "image/png")}},
        422,
        "validation_error",
        id="no-file-field",
    ),
    pytest.param({"json": {"file": "me.png"}}, 415, "unsupported_media_type", id="json"),
    pytest.param(
        {"content": picture("PNG"), "headers": {"content-type": "image/png"}},
        415,
        "unsupported_media_type",
        id="raw-png-body",
    ),
]


@pytest.mark.parametrize(("request_args", "status", "code"), REFUSED_AVATARS)
async def test_a_refused_avatar_changes_nothing(
    client: httpx.AsyncClient, request_args: dict[str, Any], status: int, code: str
) -> None:
    a = await register(client)
    media = media_settings(client)
    r = await set_avatar(client, a, picture("PNG", (64, 64)))
    assert r.status_code == 200, r.text
    url = r.json()["avatar_url"]
    match = AVATAR_URL.fullmatch(url)
    assert match

    args = dict(request_args)
    args["headers"] = {**args.get("headers", {}), **a["headers"]}
    body = assert_problem(await client.put(AVATAR, **args), status, code)
    if status == 422 and request_args.get("files"):
        assert error_fields(body) == {"file"}, body
    assert (await client.get("/api/users/me", headers=a["headers"])).json()["avatar_url"] == url
    assert_only(media, {match.group(1)})


async def test_avatar_limits_are_inclusive_and_need_a_login(client: httpx.AsyncClient) -> None:
    a = await register(client)
    r = await client.put(AVATAR, files={"file": ("me.png", picture("PNG"), "image/png")})
    assert_problem(r, 401, "not_authenticated")
    assert_nothing_stored(media_settings(client))
    r = await set_avatar(client, a, picture("PNG", (4096, 10), mode="1"))
    assert r.status_code == 200, r.text
    padded = picture("PNG", (64, 64))
    padded += b"\0" * (5 * MiB - len(padded))  # exactly 5 MiB: trailing bytes after IEND
    r = await set_avatar(client, a, padded)
    assert r.status_code == 200, r.text


async def test_concurrent_avatar_replacements_leave_one_file(client: httpx.AsyncClient) -> None:
    a = await register(client)
    media = media_settings(client)
    for _ in range(3):
        replies = await asyncio.gather(
            *(set_avatar(client, a, picture("PNG", (64 + i, 64))) for i in range(4))
        )
        assert [r.status_code for r in replies] == [200] * 4
        url = (await client.get("/api/users/me", headers=a["headers"])).json()["avatar_url"]
        match = AVATAR_URL.fullmatch(url)
        assert match, url
        assert_only(media, {match.group(1)})


# --- stored names and ids ------------------------------------------------------------------


HOSTILE_NAMES = [
    (b"../../etc/passwd", "passwd"),
    (b"/abs/path.txt", "path.txt"),
    (b"C:\\evil\\x.txt", "x.txt"),
    (b"..\\..\\evil.txt", "evil.txt"),
    ("../r\u00e9sum\u00e9/\u202egnp.txt".encode(), "gnp.txt"),
]


async def test_client_filenames_never_name_a_stored_file(database_url: str, tmp_path: Path) -> None:
    box = tmp_path / "box"
    folder = box / "media"
    settings = make_settings(database_url, media_dir=str(folder))
    assert not Path("/abs").exists()
    outside = set(tmp_path.rglob("*"))
    async with serve_in_process(settings) as client:
        a = await register(client)
        keys: set[str] = set()
        for raw, tail in HOSTILE_NAMES:
            data = b"contents of " + raw
            body, content_type = raw_multipart(raw, data, b"text/plain")
            r = await client.post(
                "/api/media", content=body, headers={**a["headers"], "content-type": content_type}
            )
            assert r.status_code == 201, (raw, r.text)
            m = r.json()
            name = m["filename"]
            assert name and not {"/", "\\", "\x00"} & set(name), name
            assert name.endswith(tail), (raw, name)
            keys.add(f"m/{m['id']}")

            f = await client.get(m["url"])
            assert_served(f, "text/plain", inline=False, size=len(data))
            assert f.content == data
            disposition = f.headers["content-disposition"]
            assert not {"/", "\\", "\x00", '"', "\r", "\n"} & set(disposition), disposition
        # A name with NUL in it is not text: refused, nothing stored.
        body, content_type = raw_multipart(b"a\x00b.txt", b"data", b"text/plain")
        r = await client.post(
            "/api/media", content=body, headers={**a["headers"], "content-type": content_type}
        )
        assert error_fields(assert_problem(r, 422, "validation_error")) == {"file"}

    assert_only(settings, keys)
    assert os.listdir(box) == ["media"]
    # (The SQLite database of the test lives in tmp_path too, with its journal files.)
    created = {p for p in set(tmp_path.rglob("*")) - outside if not p.name.startswith("reverb.db")}
    # Only the media folder and its own files appeared, none next to the database or above.
    assert all(folder in p.parents or p in (box, folder) for p in created), created
    assert not (tmp_path / "etc").exists()
    assert not Path("/abs").exists()
    assert not (Path.cwd() / "C:\\evil\\x.txt").exists()


async def test_media_ids_are_random_and_unguessable(client: httpx.AsyncClient) -> None:
    a = await register(client)
    ids = [
        (await uploaded(client, a, b"same bytes", "same.txt", "text/plain"))["id"] for _ in range(5)
    ]
    assert all(HEX32.fullmatch(i) for i in ids)  # 32 hex digits: 128 bits
    assert len(set(ids)) == len(ids)
    assert_problem(await client.get(f"/media/{secrets.token_hex(16)}"), 404, "not_found")
    assert_problem(await client.get(f"/media/{secrets.token_hex(16)}/thumbnail"), 404, "not_found")
    assert_problem(await client.get(f"/media/{ids[0].upper()}"), 404, "not_found")
    assert_problem(await client.get(f"/media/{ids[0][:-1]}"), 404, "not_found")


async def test_paths_that_climb_out_of_the_media_folder_are_not_found(
    database_url: str, tmp_path: Path
) -> None:
    box = tmp_path / "box"
    folder = box / "media"
    (box / "secret.txt").parent.mkdir(parents=True)
    (box / "secret.txt").write_text("TOP-SECRET")
    async with serve_in_process(make_settings(database_url, media_dir=str(folder))) as client:
        a = await register(client)
        m = await uploaded(client, a, b"mine", "mine.txt", "text/plain")
        (folder / "avatars").mkdir(exist_ok=True)
        for path in [
            "/media/../../etc/passwd",
            "/media/..%2F..%2F..%2Fetc%2Fpasswd",
            "/media/%2e%2e/%2e%2e/etc/passwd",
            "/media/..%2Fsecret.txt",
            "/media/avatars/..%2F..%2Fsecret.txt",
            "/media/avatars/%2e%2e%2f%2e%2e%2fsecret.txt",
            "/media/avatars/%2e%2e",
            "/media/avatars/.tmp",
            "/media/avatars/..%2Fm%2F" + m["id"],
            "/media/avatars/%2Fetc%2Fpasswd",
            "/media/avatars/..%5C..%5Csecret.txt",
            "/media/" + m["id"] + "%2F..%2F..%2F..%2Fsecret.txt",
            "/media/.tmp",
            "/media/m",
        ]:
            r = await client.get(path)
            assert r.status_code == 404, (path, r.status_code, r.text)
            assert b"TOP-SECRET" not in r.content
            assert b"root:" not in r.content
        # NUL is not text: refused as such, wherever it is.
        for path in ["/media/" + m["id"] + "%00", "/media/avatars/x%00.webp"]:
            assert_problem(await client.get(path), 422, "validation_error")


# --- attachments ---------------------------------------------------------------------------


async def post_message(
    client: httpx.AsyncClient, who: dict[str, Any], chat: str, content: str, ids: list[str]
) -> httpx.Response:
    return await client.post(
        "/api/messages",
        json={"chat_id": chat, "content": content, "attachment_ids": ids},
        headers=who["headers"],
    )


async def history(client: httpx.AsyncClient, who: dict[str, Any], chat: str) -> list[Any]:
    r = await client.get(f"/api/messages/{chat}", headers=who["headers"])
    assert r.status_code == 200, r.text
    items: list[Any] = r.json()["items"]
    return items


async def test_a_message_carries_its_attachments(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    photo = await uploaded(client, a, picture("PNG", (64, 48)), "p.png", "image/png")
    doc = await uploaded(client, a, b"minutes", "minutes.txt", "text/plain")

    r = await post_message(client, a, chat, "", [photo["id"], doc["id"]])
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["content"] == ""
    by_id = sorted([photo, doc], key=lambda x: x["id"])
    assert sorted(m["attachments"], key=lambda x: x["id"]) == by_id

    assert await history(client, b, chat) == [m]
    log = await events(client, b, chat)
    assert log == [{"type": "message.created", "chat_id": chat, "seq": 1, "message": m}]

    # Files stay reachable by their URL for everyone the message reaches.
    assert (await client.get(photo["url"])).content == picture("PNG", (64, 48))

    # A deleted message shows no attachments.
    assert (
        await client.delete(f"/api/messages/{m['id']}", headers=a["headers"])
    ).status_code == 204
    [gone] = await history(client, b, chat)
    assert (gone["deleted"], gone["content"], gone["attachments"]) == (True, "", [])


async def test_attachments_that_are_not_yours_to_attach_are_refused(
    client: httpx.AsyncClient,
) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    first = await uploaded(client, a, b"first", "1.txt", "text/plain")
    await send(client, a, chat, "with a file", attachment_ids=[first["id"]])
    mine = await uploaded(client, a, b"mine", "mine.txt", "text/plain")
    theirs = await uploaded(client, b, b"theirs", "theirs.txt", "text/plain")
    eleven = [(await uploaded(client, a, b"n", f"{i}.txt", "text/plain"))["id"] for i in range(11)]
    log_before = await events(client, a, chat)
    history_before = await history(client, a, chat)

    for who, content, ids in [
        (a, "look", [theirs["id"]]),  # someone else's upload
        (a, "look", [mine["id"], theirs["id"]]),  # one bad one spoils the lot
        (b, "look", [mine["id"]]),  # b attaching a's upload
        (a, "again", [first["id"]]),  # already attached
        (a, "", [first["id"]]),
        (a, "ghost", [secrets.token_hex(16)]),  # does not exist
        (a, "ghost", ["not-an-id"]),
        (a, "ghost", ["../../etc/passwd"]),
        (a, "many", eleven),  # 11 attachments
    ]:
        r = await post_message(client, who, chat, content, ids)
        body = assert_problem(r, 422, "validation_error")
        assert error_fields(body) == {"attachment_ids"}, (ids, body)

    r = await post_message(client, a, chat, "   ", [])
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"content"}
    r = await client.post(
        "/api/messages", json={"chat_id": chat, "content": ""}, headers=a["headers"]
    )
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"content"}

    assert await events(client, a, chat) == log_before
    assert await history(client, a, chat) == history_before

    # Nothing was attached by the refused sends: the uploads can still be attached.
    m = await send(client, a, chat, "", attachment_ids=[mine["id"]])
    assert [x["id"] for x in m["attachments"]] == [mine["id"]]
    m = await send(client, a, chat, "ten", attachment_ids=eleven[:10])
    assert sorted(x["id"] for x in m["attachments"]) == sorted(eleven[:10])
    m = await send(client, b, chat, "", attachment_ids=[theirs["id"], theirs["id"]])
    assert [x["id"] for x in m["attachments"]] == [theirs["id"]]


async def test_one_upload_attached_by_two_concurrent_sends_goes_to_one_message(
    client: httpx.AsyncClient,
) -> None:
    a, b, c = await register(client), await register(client), await register(client)
    chats = [await group(client, a, b), await group(client, a, c)]
    for _ in range(3):
        f = await uploaded(client, a, b"shared", "s.txt", "text/plain")
        replies = await asyncio.gather(
            *(post_message(client, a, ch, "", [f["id"]]) for ch in chats)
        )
        assert sorted(r.status_code for r in replies) == [201, 422], [r.text for r in replies]
    logs = [await events(client, a, ch) for ch in chats]
    # The refused sends left nothing behind: three messages in all, each with its file.
    assert sum(len(log) for log in logs) == 3
    assert all(len(e["message"]["attachments"]) == 1 for log in logs for e in log)


# --- garbage collection --------------------------------------------------------------------


async def test_uploads_never_attached_are_collected(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    media = services(client).media
    kept_in = media_settings(client)
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    loose = await uploaded(client, a, picture("PNG", (64, 48)), "loose.png", "image/png")
    kept = await uploaded(client, a, picture("PNG", (48, 64)), "kept.png", "image/png")
    await send(client, a, chat, "", attachment_ids=[kept["id"]])
    kept_files = {f"m/{kept['id']}", f"m/{kept['id']}.thumb"}
    assert_only(kept_in, kept_files | {f"m/{loose['id']}", f"m/{loose['id']}.thumb"})

    assert await media.collect_garbage(before=utcnow() - timedelta(hours=1)) == 0  # too recent
    assert await media.collect_garbage(before=utcnow() + timedelta(minutes=1)) == 1
    assert_only(kept_in, kept_files)
    assert await media.get(loose["id"]) is None
    assert_problem(await client.get(loose["url"]), 404, "not_found")
    assert_problem(await client.get(loose["thumbnail_url"]), 404, "not_found")
    assert (await client.get(kept["url"])).status_code == 200
    assert (await client.get(kept["thumbnail_url"])).status_code == 200
    assert (await history(client, b, chat))[0]["attachments"] == [kept]

    late = await uploaded(client, a, picture("GIF", (30, 20)), "late.gif", "image/gif")
    assert await media_rows(client) == 2
    result = run_cli(
        tmp_path,
        "media",
        "gc",
        "--older-than",
        "0",
        env=server_env(database_url, media_dir=str(kept_in.media_dir)),
    )
    assert result.returncode == 0, result.stderr
    assert "removed 1 upload(s)" in result.stdout, result.stdout
    assert_only(kept_in, kept_files)
    assert_problem(await client.get(late["url"]), 404, "not_found")
    assert await media_rows(client) == 1


async def test_dimensions_are_those_of_the_upright_image(client: httpx.AsyncClient) -> None:
    """A phone photo stored sideways with EXIF orientation 6 is reported as it is shown."""
    a = await register(client)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (400, 100), "blue").save(buf, "JPEG", exif=exif.tobytes())
    r = await client.post(
        "/api/media",
        files={"file": ("side.jpg", buf.getvalue(), "image/jpeg")},
        headers=a["headers"],
    )
    assert r.status_code == 201, r.text
    assert (r.json()["width"], r.json()["height"]) == (100, 400)
    thumb = await client.get(r.json()["thumbnail_url"])
    assert (
        Image.open(io.BytesIO(thumb.content)).size[0]
        < Image.open(io.BytesIO(thumb.content)).size[1]
    )
