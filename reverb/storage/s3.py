"""The media store on an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), so that every
replica of the server reads and writes the same files.

The client is obstore (the Rust `object_store` crate): async, typed, streaming both ways, with
multipart uploads for large files, and credentials from S3_* settings or, when those are unset,
the standard AWS chain (AWS_* variables, web identity, container and instance credentials).

A bucket that cannot be reached, refuses the credentials or answers with errors is an outage:
503 `service_unavailable` within a few seconds (the timeouts below), logged as one short line
at most every few seconds, never a 500 with a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from reverb.config import Settings
from reverb.errors import ErrorCode, ReverbError
from reverb.storage.files import READ_CHUNK, Blob, BlobStore, check_key
from reverb.storage.outage import OutageLog

if TYPE_CHECKING:
    from obstore import GetResult
    from obstore.store import ClientConfig, RetryConfig, S3Config

log = logging.getLogger(__name__)

# What a client waits before trying again: a store restarting or failing over takes seconds.
RETRY_AFTER_S = 5
# A store that does not accept a connection within this is away (a healthy one answers in
# milliseconds, across regions in well under a second).
CONNECT_TIMEOUT = "2s"
# One request, from sending to the last byte: a 5 MiB part of an upload (obstore's multipart
# chunk) or a download's body at a slow 200 KiB/s. A download longer than that is cut; clients
# resume it with a Range request.
REQUEST_TIMEOUT = "30s"
# Retries of a failed request (connection refused or reset, 5xx) fit in this, so a store that
# is away answers 503 within a few seconds instead of the library's default 3 minutes.
RETRY: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=4)}


class MediaStoreUnavailable(ReverbError):
    def __init__(self) -> None:
        super().__init__(
            ErrorCode.SERVICE_UNAVAILABLE,
            "the media store cannot be reached; try again shortly",
            503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


def _config(settings: Settings) -> S3Config:
    """Only what is set: the rest comes from the AWS chain (obstore reads AWS_* itself)."""
    config: S3Config = {}
    if settings.s3_endpoint_url:
        config["endpoint"] = settings.s3_endpoint_url
    if settings.s3_region:
        config["region"] = settings.s3_region
    if settings.s3_access_key_id:
        config["access_key_id"] = settings.s3_access_key_id
    if settings.s3_secret_access_key:
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return config


class S3BlobStore(BlobStore):
    def __init__(self, settings: Settings) -> None:
        # Uploads are written and checked on this machine before they go to the bucket.
        super().__init__(settings.media_dir / ".tmp")
        client: ClientConfig = {"connect_timeout": CONNECT_TIMEOUT, "timeout": REQUEST_TIMEOUT}
        if settings.s3_endpoint_url and settings.s3_endpoint_url.startswith("http://"):
            client["allow_http"] = True  # the operator named a plain-HTTP endpoint on purpose
        self._store = S3Store(
            settings.s3_bucket,
            prefix=settings.s3_prefix or None,
            config=_config(settings),
            client_options=client,
            retry_config=RETRY,
        )
        self._outages = OutageLog("media store")

    def _unavailable(self, error: BaseError) -> MediaStoreUnavailable:
        self._outages.failed(error)
        return MediaStoreUnavailable()

    async def put(self, key: str, source: Path) -> None:
        try:
            await obstore.put_async(self._store, check_key(key), source)
        except BaseError as exc:
            raise self._unavailable(exc) from exc

    async def open(self, key: str) -> Blob | None:
        try:
            meta = await obstore.head_async(self._store, check_key(key))
        except FileNotFoundError:  # obstore's NotFoundError
            return None
        except BaseError as exc:
            raise self._unavailable(exc) from exc
        return Blob(self, key, meta["size"])

    async def read(self, blob: Blob, start: int, end: int) -> AsyncIterator[bytes]:
        whole = start == 0 and end == blob.size
        try:
            got = await obstore.get_async(
                self._store, blob.key, options=None if whole else {"range": (start, end)}
            )
        except FileNotFoundError:  # deleted since it was opened
            return _nothing()
        except BaseError as exc:
            raise self._unavailable(exc) from exc
        return _chunks(got)

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, check_key(key))
        except FileNotFoundError:
            return
        except BaseError as exc:
            raise self._unavailable(exc) from exc


async def _chunks(got: GetResult) -> AsyncIterator[bytes]:
    async for chunk in got.stream(min_chunk_size=READ_CHUNK):
        yield bytes(chunk)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield
