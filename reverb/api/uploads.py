"""Reading a multipart upload with its size limit enforced while the body streams in: a body
over the limit is refused with 413 before it has been read, not after it was buffered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import Message

from reverb import text
from reverb.errors import ErrorCode, ReverbError, invalid

# Room for the multipart framing around the file (boundaries and part headers).
FRAMING_BYTES = 16 * 1024
COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    path: Path
    size: int
    filename: str | None
    content_type: str | None


def _too_large(limit: int) -> ReverbError:
    return ReverbError(ErrorCode.PAYLOAD_TOO_LARGE, f"the file is over {limit} bytes", 413)


async def read_upload(request: Request, *, limit: int, scratch: Path) -> Upload:
    """Stream the multipart field `file` into `scratch`. On any refusal `scratch` is removed."""
    try:
        return await _read(request, limit, scratch)
    except BaseException:
        await anyio.Path(scratch).unlink(missing_ok=True)
        raise


async def _read(request: Request, limit: int, scratch: Path) -> Upload:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FRAMING_BYTES:
        raise _too_large(limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ReverbError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "send the file as multipart/form-data, field 'file'",
            415,
        )
    received = 0

    async def counting_receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit + FRAMING_BYTES:
            raise _too_large(limit)
        return message

    counted = Request(request.scope, counting_receive)
    try:
        form = await counted.form(max_files=1, max_fields=4)
    except ClientDisconnect:
        raise invalid("the upload was cut off", field="file") from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise invalid("send the file in the multipart field 'file'", field="file")
        for value in (file.filename, file.content_type):
            if value is not None and not text.is_text(value):
                raise invalid(
                    "the file's name and type must not contain NUL characters", field="file"
                )
        size = await anyio.to_thread.run_sync(_copy, file.file, scratch, limit)
        return Upload(scratch, size, file.filename, file.content_type)
    finally:
        await form.close()


def _copy(source: BinaryIO, dest: Path, limit: int) -> int:
    size = 0
    with dest.open("wb") as out:
        while chunk := source.read(COPY_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            out.write(chunk)
    return size
