"""Uploading and serving files. Files are served by their unguessable id, without a bearer
token (an <img> cannot send one): the URL is the capability."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response, StreamingResponse

from reverb.api import limits
from reverb.api.deps import REQUIRE_VERIFIED, CurrentUser, ServicesDep
from reverb.api.problems import responses
from reverb.api.schemas import Text
from reverb.api.structs import Answer, returns
from reverb.api.uploads import read_upload
from reverb.domain.wire import MediaView
from reverb.errors import ErrorCode, not_found
from reverb.services.images import RASTER
from reverb.services.media import media_key, thumbnail_key
from reverb.services.views import media_view
from reverb.storage.files import Blob

router = APIRouter(tags=["media"])

MULTIPART: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "additionalProperties": False,
                }
            }
        },
    }
}
INLINE_TYPES = frozenset(RASTER.values())
# The URL of a file never changes what it serves.
IMMUTABLE = "public, max-age=31536000, immutable"


@router.post(
    "/api/media",
    status_code=201,
    openapi_extra=MULTIPART,
    responses={**returns(MediaView, 201), **responses(401, 403, 413, 415, 422, 429, 503)},
    dependencies=[*REQUIRE_VERIFIED, limits.WRITES, limits.UPLOADS],
)
async def upload(request: Request, user: CurrentUser, services: ServicesDep) -> Answer:
    """Any file up to MAX_UPLOAD_BYTES; images (PNG, JPEG, WebP, GIF) get their size and a
    thumbnail (422 when decoding one would take more than IMAGE_DECODE_BUDGET_BYTES). At most
    RATE_LIMIT_UPLOADS uploads per user (429 `rate_limited` with Retry-After). Attach it
    to a message with `attachment_ids`."""
    media = services.media
    got = await read_upload(
        request, limit=services.settings.max_upload_bytes, scratch=media.scratch()
    )
    row = await media.upload(
        me=user,
        source=got.path,
        size=got.size,
        filename=got.filename,
        content_type=got.content_type,
    )
    return Answer(media_view(row), status_code=201)


# One range, in the forms browsers and media players send: `bytes=A-B`, `bytes=A-`, `bytes=-N`.
# At most 19 digits (any file size fits): a longer number is no range of ours, and ignored, and
# int() never sees thousands of digits (which it refuses, and which cost time to convert).
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte span (end exclusive) a Range header asks for, answered 206 as for a local file
    even when it covers everything; None for the whole file (no header, or one not served in
    parts: several ranges, other units). Raises when the span lies past the end."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        start, end = max(size - int(last), 0), size
    elif last and int(last) < int(first):
        return None  # not a valid range, which RFC 9110 says to ignore
    else:
        start, end = int(first), min(int(last) + 1, size) if last else size
    if start >= end:
        raise _Unsatisfiable
    return start, end


class _Unsatisfiable(Exception):
    pass


async def _file(
    blob: Blob | None, request: Request, content_type: str, filename: str | None
) -> Response:
    if blob is None:
        raise not_found(ErrorCode.NOT_FOUND, "file")
    inline = content_type in INLINE_TYPES
    disposition = "inline" if inline else "attachment"
    if filename:
        disposition += f"; filename*=UTF-8''{quote(filename, safe='')}"
    headers = {
        "Cache-Control": IMMUTABLE,
        "Content-Disposition": disposition,
    }
    if not inline:
        # Should a browser render it anyway, it runs nothing and loads nothing.
        headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    if blob.local_path is not None:  # a file here: sent by the OS, ranges and all
        return FileResponse(blob.local_path, media_type=content_type, headers=headers)
    # Anywhere else (S3): streamed through, so the URLs, headers and rules stay the same.
    headers["Accept-Ranges"] = "bytes"
    try:
        span = _range(request.headers.get("range"), blob.size)
    except _Unsatisfiable:
        headers["Content-Range"] = f"bytes */{blob.size}"
        return Response(status_code=416, headers=headers)
    start, end = span or (0, blob.size)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    headers["Content-Length"] = str(end - start)
    if start == end:  # an empty file
        return Response(b"", media_type=content_type, headers=headers)
    try:
        chunks = await blob.read(start, end)
    except FileNotFoundError:  # removed since it was opened
        raise not_found(ErrorCode.NOT_FOUND, "file") from None
    return StreamingResponse(chunks, status_code=status, media_type=content_type, headers=headers)


@router.get("/media/{media_id}", responses=responses(404, 422, 503), response_class=FileResponse)
async def get_file(media_id: Text, request: Request, services: ServicesDep) -> Response:
    row = await services.media.get(media_id)
    blob = await services.media.open(media_key(row.id)) if row else None
    return await _file(
        blob, request, row.content_type if row else "", row.filename if row else None
    )


@router.get(
    "/media/{media_id}/thumbnail",
    responses=responses(404, 422, 503),
    response_class=FileResponse,
)
async def get_thumbnail(media_id: Text, request: Request, services: ServicesDep) -> Response:
    row = await services.media.get(media_id)
    blob = await services.media.open(thumbnail_key(row.id)) if row and row.has_thumbnail else None
    return await _file(blob, request, "image/webp", None)


@router.get(
    "/media/avatars/{name}", responses=responses(404, 422, 503), response_class=FileResponse
)
async def get_avatar(name: Text, request: Request, services: ServicesDep) -> Response:
    try:
        blob = await services.media.open(f"avatars/{name}")
    except ValueError:
        blob = None
    return await _file(blob, request, "image/webp", None)
