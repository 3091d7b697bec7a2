"""Uploading and serving files. Files are served by their unguessable id, without a bearer
token (an <img> cannot send one): the URL is the capability."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import FileResponse

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
    responses={**returns(MediaView, 201), **responses(401, 403, 413, 415, 422, 429)},
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


def _file(path: Any, content_type: str, filename: str | None) -> FileResponse:
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
    return FileResponse(path, media_type=content_type, headers=headers)


@router.get("/media/{media_id}", responses=responses(404, 422), response_class=FileResponse)
async def get_file(media_id: Text, services: ServicesDep) -> FileResponse:
    row = await services.media.get(media_id)
    path = services.media.path(media_key(row.id)) if row else None
    if row is None or path is None:
        raise not_found(ErrorCode.NOT_FOUND, "file")
    return _file(path, row.content_type, row.filename)


@router.get(
    "/media/{media_id}/thumbnail", responses=responses(404, 422), response_class=FileResponse
)
async def get_thumbnail(media_id: Text, services: ServicesDep) -> FileResponse:
    row = await services.media.get(media_id)
    path = services.media.path(thumbnail_key(row.id)) if row and row.has_thumbnail else None
    if path is None:
        raise not_found(ErrorCode.NOT_FOUND, "file")
    return _file(path, "image/webp", None)


@router.get("/media/avatars/{name}", responses=responses(404, 422), response_class=FileResponse)
async def get_avatar(name: Text, services: ServicesDep) -> FileResponse:
    try:
        path = services.media.path(f"avatars/{name}")
    except ValueError:
        path = None
    if path is None:
        raise not_found(ErrorCode.NOT_FOUND, "file")
    return _file(path, "image/webp", None)
