"""Uploads of images that decode big, at once, against a real `reverb serve` process: each
gets a clear answer, the server stays up, and its memory stays bounded (issue 11, part 1)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.server import reverb_process, server_env
from tests.helpers import register

pytestmark = pytest.mark.e2e

UPLOADS = 8
RSS_RISE_LIMIT_KIB = 300 * 1024


def grey_png() -> bytes:
    """37 KB on the wire, 6000 x 6600 = 39.6 million bytes once decoded."""
    buf = io.BytesIO()
    Image.new("L", (6000, 6600)).save(buf, "PNG", optimize=True)
    data = buf.getvalue()
    assert len(data) < 40_000
    return data


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def test_eight_big_decodes_at_once_get_clear_answers_in_bounded_memory(
    tmp_path: Path, database_url: str
) -> None:
    data = grey_png()
    env = server_env(database_url, media_dir=str(tmp_path / "media"))
    with reverb_process(tmp_path, env) as server:
        limits = httpx.Limits(max_connections=UPLOADS)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
            me = await register(http)
            files = {"file": ("grey.png", data, "image/png")}
            warm = await http.post(
                "/api/media",
                files={"file": ("w.png", grey_png_small(), "image/png")},
                headers=me["headers"],
            )
            assert warm.status_code == 201, warm.text
            before = status_kib(server.proc.pid, "VmRSS")
            answers = await asyncio.gather(
                *(
                    http.post("/api/media", files=files, headers=me["headers"])
                    for _ in range(UPLOADS)
                )
            )
            peak = status_kib(server.proc.pid, "VmHWM")
            for r in answers:
                assert r.status_code == 201 or (
                    400 <= r.status_code < 500
                    and r.headers["content-type"].startswith("application/problem+json")
                ), r.text
            stored = [r.json() for r in answers if r.status_code == 201]
            assert stored, "the image is within every limit: some uploads are stored"
            assert {(m["width"], m["height"]) for m in stored} == {(6000, 6600)}
            thumb = await http.get(stored[0]["thumbnail_url"])
            assert thumb.status_code == 200
            with Image.open(io.BytesIO(thumb.content)) as img:
                assert max(img.size) == 320
            assert (await http.get("/healthz")).status_code == 200
        assert server.proc.poll() is None
        assert peak - before <= RSS_RISE_LIMIT_KIB, (
            f"peak RSS rose by {(peak - before) // 1024} MiB"
        )


def grey_png_small() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64)).save(buf, "PNG")
    return buf.getvalue()
