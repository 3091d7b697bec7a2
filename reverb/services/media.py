"""Uploads, avatars and the clean-up of uploads never attached."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import anyio
import anyio.to_thread

from reverb.config import Settings
from reverb.domain.users import User
from reverb.errors import ErrorCode, ReverbError
from reverb.services import images
from reverb.services.access_cache import AccessCache
from reverb.storage import media as media_store
from reverb.storage import users as user_store
from reverb.storage.db import Database
from reverb.storage.files import Blob, BlobStore
from reverb.storage.media import MediaRow
from reverb.storage.types import utcnow

log = logging.getLogger(__name__)

# Fits the 127-character column: 1 + 62 + "/" + 1 + 62.
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")


def media_key(media_id: str) -> str:
    return f"m/{media_id}"


def thumbnail_key(media_id: str) -> str:
    return f"m/{media_id}.thumb"


def clean_filename(name: str | None) -> str:
    """The client's name, kept only as a label: no directories, no control characters."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return base[:255] or "file"


def clean_content_type(claimed: str | None) -> str:
    value = (claimed or "").split(";")[0].strip().lower()
    return value if _MIME.fullmatch(value) else "application/octet-stream"


def _discard(*paths: Path | None) -> None:
    """Remove scratch files, whatever happened to them (moved into the store, or not)."""
    for path in paths:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def too_large(limit: int) -> ReverbError:
    return ReverbError(ErrorCode.PAYLOAD_TOO_LARGE, f"the file is over {limit} bytes", 413)


@dataclass(slots=True)
class MediaService:
    db: Database
    files: BlobStore
    settings: Settings
    # The authenticated user of a request comes from here: told of avatar changes.
    sessions: AccessCache = field(default_factory=AccessCache)
    # Decodes run on threads of their own, IMAGE_DECODE_CONCURRENCY at a time in this process
    # (not on the shared pool of 40), so decoded pixels in memory stay within that many times
    # the decode budget however many uploads arrive at once.
    _decoding: anyio.CapacityLimiter | None = field(default=None, init=False)

    def scratch(self) -> Path:
        return self.files.scratch()

    async def _inspect(
        self, source: Path, *, claimed_image: bool, max_side: int | None = None
    ) -> images.ImageInfo | None:
        return await anyio.to_thread.run_sync(
            lambda: images.inspect(
                source,
                max_pixels=self.settings.max_image_pixels,
                max_decoded_bytes=self.settings.image_decode_budget_bytes,
                claimed_image=claimed_image,
                max_side=max_side,
            )
        )

    async def _decode(
        self, render: Callable[[Path, Path], tuple[int, int]], source: Path, dest: Path
    ) -> tuple[int, int]:
        if self._decoding is None:  # made on first use: it belongs to the running event loop
            self._decoding = anyio.CapacityLimiter(self.settings.image_decode_concurrency)
        return await anyio.to_thread.run_sync(render, source, dest, limiter=self._decoding)

    async def upload(
        self, *, me: User, source: Path, size: int, filename: str | None, content_type: str | None
    ) -> MediaRow:
        """Store an upload that `source` holds (the file is consumed either way)."""
        thumb: Path | None = None
        try:
            if size > self.settings.max_upload_bytes:
                raise too_large(self.settings.max_upload_bytes)
            claimed = clean_content_type(content_type)
            claimed_image = claimed.startswith("image/") and claimed != "image/svg+xml"
            info = await self._inspect(source, claimed_image=claimed_image)
            media_id = secrets.token_hex(16)  # 128 random bits: the URL is the capability
            if info is not None:
                thumb = self.files.scratch()
                shown = await self._decode(images.write_thumbnail, source, thumb)
                info = images.ImageInfo(info.content_type, *shown)
            row = MediaRow(
                id=media_id,
                uploader_id=me.id,
                message_id=None,
                filename=clean_filename(filename),
                content_type=info.content_type if info else claimed,
                size=size,
                width=info.width if info else None,
                height=info.height if info else None,
                has_thumbnail=thumb is not None,
                created_at=utcnow(),
            )
            try:
                await self.files.put(media_key(media_id), source)
                if thumb is not None:
                    await self.files.put(thumbnail_key(media_id), thumb)
                async with self.db.transaction() as tx:
                    await media_store.insert_media(tx.conn, row)
            except Exception:
                await self._remove(media_key(media_id), thumbnail_key(media_id))
                raise
            return row
        finally:
            _discard(source, thumb)

    async def set_avatar(self, *, me: User, source: Path, size: int) -> User:
        out: Path | None = None
        try:
            if size > self.settings.max_avatar_bytes:
                raise too_large(self.settings.max_avatar_bytes)
            info = await self._inspect(source, claimed_image=True, max_side=4096)
            if info is None:
                raise ReverbError(
                    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                    "an avatar must be a PNG, JPEG, WebP or GIF image",
                    415,
                )
            out = self.files.scratch()
            await self._decode(images.write_avatar, source, out)
            key = f"avatars/{secrets.token_hex(16)}.webp"  # a new URL for new content
            await self.files.put(key, out)
            try:
                return await self._replace_avatar(me, key)
            except Exception:
                await self._remove(key)
                raise
        finally:
            _discard(source, out)

    async def remove_avatar(self, *, me: User) -> User:
        return await self._replace_avatar(me, None)

    async def _replace_avatar(self, me: User, key: str | None) -> User:
        async with self.db.transaction() as tx:
            # Locked, so concurrent replacements each see (and remove) their predecessor.
            current = await user_store.get(tx.conn, me.id, lock=True)
            assert current is not None
            await user_store.update_user(tx.conn, me.id, avatar_key=key, updated_at=utcnow())
            updated = await user_store.get(tx.conn, me.id)
        self.sessions.forget_user(me.id)
        assert updated is not None
        if current.avatar_key and current.avatar_key != key:
            await self._remove(current.avatar_key)
        return updated

    async def get(self, media_id: str) -> MediaRow | None:
        if not re.fullmatch(r"[0-9a-f]{32}", media_id):
            return None
        async with self.db.read() as conn:
            return await media_store.get(conn, media_id)

    async def open(self, key: str) -> Blob | None:
        return await self.files.open(key)

    async def _remove(self, *keys: str) -> None:
        """Files no row names any more (or never did). Removing them must not undo what was
        committed, so a store that is away leaves them behind, named in the log for the
        operator (no URL serves an upload without its row; an old avatar stays at its URL)."""
        for key in keys:
            try:
                await self.files.delete(key)
            except ReverbError as exc:
                if exc.code != ErrorCode.SERVICE_UNAVAILABLE:
                    raise
                log.warning("media store unavailable: %s left behind in it", key)

    async def discard_uploads_of(self, user_id: str, *, avatar_key: str | None) -> int:
        """A deleted account's files: its avatar and the uploads it never attached (those of
        its messages stay with the messages)."""
        if avatar_key:
            await self._remove(avatar_key)
        async with self.db.transaction() as tx:
            rows = await media_store.unattached_of(tx.conn, user_id)
            await media_store.delete_ids(tx.conn, [r.id for r in rows])
        await self._delete_files(rows)
        return len(rows)

    async def _delete_files(self, rows: list[MediaRow]) -> None:
        for r in rows:
            await self._remove(media_key(r.id), thumbnail_key(r.id))

    async def collect_garbage(self, *, before: datetime) -> int:
        """Delete uploads never attached to a message and older than `before`."""
        async with self.db.transaction() as tx:
            rows = await media_store.unattached_before(tx.conn, before)
            await media_store.delete_ids(tx.conn, [r.id for r in rows])
        await self._delete_files(rows)
        return len(rows)
