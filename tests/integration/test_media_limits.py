"""What an upload may cost the server: the memory its decoded pixels take (checked from the
header, before decoding), and how many uploads one user may make (issue 11, part 1)."""

from __future__ import annotations

import io

from PIL import Image

from reverb.services.images import bytes_per_pixel, decoded_bytes
from tests.conftest import make_settings, serve_in_process
from tests.helpers import assert_problem, register
from tests.integration.test_media import (
    assert_nothing_stored,
    media_rows,
    png_claiming,
    set_avatar,
    upload,
)

BUDGET = 10_000_000


def png(mode: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, "PNG")
    return buf.getvalue()


def test_decoded_bytes_follow_how_pillow_holds_pixels() -> None:
    assert bytes_per_pixel("1") == bytes_per_pixel("L") == bytes_per_pixel("P") == 1
    assert bytes_per_pixel("I;16") == 2
    # Two to four 8-bit bands take 4 bytes (RGB is padded); 32-bit single bands 4.
    assert {bytes_per_pixel(m) for m in ("LA", "RGB", "RGBA", "CMYK", "I", "F")} == {4}
    assert decoded_bytes("L", 6000, 6600) == 39_600_000
    assert decoded_bytes("P", 100, 100, frames=2) == 80_000  # frames composed in RGBA, two held


async def test_the_decode_budget_counts_bytes_not_only_pixels(database_url: str) -> None:
    settings = make_settings(database_url, image_decode_budget_bytes=BUDGET)
    async with serve_in_process(settings) as client:
        a = await register(client)
        # The same 9 million pixels: one byte each fits, four bytes each do not.
        grey = await upload(client, a, png("L", (3000, 3000)), "grey.png", "image/png")
        assert grey.status_code == 201, grey.text
        assert (grey.json()["width"], grey.json()["height"]) == (3000, 3000)
        colour = await upload(client, a, png("RGB", (3000, 3000)), "rgb.png", "image/png")
        body = assert_problem(colour, 422, "validation_error")
        assert "36000000 bytes to decode" in body["detail"] and str(BUDGET) in body["detail"]
        avatar = await set_avatar(client, a, png("RGB", (2000, 2000)))
        assert_problem(avatar, 422, "validation_error")
        assert await media_rows(client) == 1


async def test_an_image_over_the_budget_is_refused_before_it_is_decoded(
    database_url: str,
) -> None:
    """A header claiming 6000x6600 over a few bytes of pixels: decoding would find it broken,
    but the answer is the budget's, so no decoding was tried."""
    settings = make_settings(database_url, image_decode_budget_bytes=BUDGET)
    async with serve_in_process(settings) as client:
        a = await register(client)
        r = await upload(client, a, png_claiming(6000, 6600), "claims.png", "image/png")
        body = assert_problem(r, 422, "validation_error")
        assert "39600000 bytes to decode (6000x6600, 1)" in body["detail"]
        assert await media_rows(client) == 0
        assert_nothing_stored(settings)


async def test_uploads_are_limited_per_user_with_retry_after(database_url: str) -> None:
    settings = make_settings(database_url, rate_limit_uploads="3 per minute")
    async with serve_in_process(settings) as client:
        a, b = await register(client), await register(client)
        for i in range(2):
            r = await upload(client, a, f"file {i}".encode(), "f.txt", "text/plain")
            assert r.status_code == 201, r.text
        r = await set_avatar(client, a, png("RGB", (64, 64)))  # an avatar counts as an upload
        assert r.status_code == 200, r.text
        refused = await upload(client, a, b"one too many", "f.txt", "text/plain")
        assert_problem(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert_problem(await set_avatar(client, a, png("RGB", (64, 64))), 429, "rate_limited")
        other = await upload(client, b, b"someone else", "f.txt", "text/plain")
        assert other.status_code == 201, other.text  # per user
        assert await media_rows(client) == 3
