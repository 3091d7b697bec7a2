"""Uploading and serving files. Files are served by their unguessable id, without a bearer
token (an <img> cannot send one): the URL is the capability."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import FileResponse

from reverb.api import limits
from reverb.api.deps import CurrentUser, ServicesDep
from reverb.api.problems import responses
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
    responses=responses(401, 413, 415, 422, 429),
    dependencies=[limits.WRITES],
)
async def upload(request: Request, user: CurrentUser, services: ServicesDep) -> MediaView:
    """Any file up to MAX_UPLOAD_BYTES; images (PNG, JPEG, WebP, GIF) get their size and a
    thumbnail. Attach it to a message with `attachment_ids`."""
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
    return media_view(row)


def _file(path: Any, content_type: str, filename: str | None) -> FileResponse:
    inline = content_type in INLINE_TYPES
    disposition = "inline" if inline else "attachment"
    if filename:
        disposition += f"; filename*=UTF-8''{quote(filename, safe='')}"
    headers = {
        "Cache-Control": IMMUTABLE,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": disposition,
    }
    if not inline:
        # Should a browser render it anyway, it runs nothing and loads nothing.
        headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return FileResponse(path, media_type=content_type, headers=headers)


@router.get("/media/{media_id}", responses=responses(404), response_class=FileResponse)
async def get_file(media_id: str, services: ServicesDep) -> FileResponse:
    row = await services.media.get(media_id)
    path = services.media.path(media_key(row.id)) if row else None
    if row is None or path is None:
        raise not_found(ErrorCode.NOT_FOUND, "file")
    return _file(path, row.content_type, row.filename)


@router.get("/media/{media_id}/thumbnail", responses=responses(404), response_class=FileResponse)
async def get_thumbnail(media_id: str, services: ServicesDep) -> FileResponse:
    row = await services.media.get(media_id)
    path = services.media.path(thumbnail_key(row.id)) if row and row.has_thumbnail else None
    if path is None:
        raise not_found(ErrorCode.NOT_FOUND, "file")
    return _file(path, "image/webp", None)


@router.get("/media/avatars/{name}", responses=responses(404), response_class=FileResponse)
async def get_avatar(name: str, services: ServicesDep) -> FileResponse:
    try:
        path = services.media.path(f"avatars/{name}")
    except ValueError:
        path = None
    if path is None:
        raise not_found(ErrorCode.NOT_FOUND, "file")
    return _file(path, "image/webp", None)
