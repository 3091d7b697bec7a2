"""The media store on an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), so that every
replica of the server reads and writes the same files.

The client is obstore (the Rust `object_store` crate): async, typed, streaming both ways, with
multipart uploads for large files, and credentials from S3_* settings or, when those are unset,
the standard AWS chain (AWS_* variables, web identity, container and instance credentials).

A bucket that cannot be reached, refuses the credentials or answers with errors is an outage:
503 `service_unavailable` within a few seconds (the timeouts below), logged as one short line
at most every few seconds, never a 500 with a traceback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
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
# How long one request may take, from sending to the last byte, by what it carries (a store that
# accepts connections but does not answer is away after this):
# a HEAD or DELETE carries nothing, so a healthy store answers at once;
META_TIMEOUT = "5s"
# a PUT carries at most one 5 MiB part (obstore's multipart chunk): 512 KiB/s at least;
UPLOAD_TIMEOUT = "10s"
# a GET is streamed on to the client as fast as the client reads it: a 25 MiB file to a phone on
# a slow link. Past this the response is cut; the client resumes it with a Range request.
DOWNLOAD_TIMEOUT = "10m"
# Retries of a failed request (connection refused or reset, 5xx) start within this, so a store
# that is away answers 503 within seconds instead of after the library's default 3 minutes.
RETRY: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=4)}


# Readiness asks the bucket for this key's metadata: any answer, "not found" included, shows
# the store reachable and the credentials good.
PROBE_KEY = "readiness-probe"


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

        def store(timeout: str) -> S3Store:
            client: ClientConfig = {"connect_timeout": CONNECT_TIMEOUT, "timeout": timeout}
            if settings.s3_endpoint_url and settings.s3_endpoint_url.startswith("http://"):
                client["allow_http"] = True  # the operator named a plain-HTTP endpoint
            return S3Store(
                settings.s3_bucket,
                prefix=settings.s3_prefix or None,
                config=_config(settings),
                client_options=client,
                retry_config=RETRY,
            )

        self._meta = store(META_TIMEOUT)
        self._upload = store(UPLOAD_TIMEOUT)
        self._download = store(DOWNLOAD_TIMEOUT)
        self._outages = OutageLog("media store")

    def _unavailable(self, error: BaseError) -> MediaStoreUnavailable:
        self._outages.failed(error)
        return MediaStoreUnavailable()

    async def put(self, key: str, source: Path) -> None:
        try:
            await obstore.put_async(self._upload, check_key(key), source)
        except BaseError as exc:
            raise self._unavailable(exc) from exc

    async def open(self, key: str) -> Blob | None:
        try:
            meta = await obstore.head_async(self._meta, check_key(key))
        except FileNotFoundError:  # obstore's NotFoundError
            return None
        except BaseError as exc:
            raise self._unavailable(exc) from exc
        return Blob(self, key, meta["size"])

    async def read(self, blob: Blob, start: int, end: int) -> AsyncIterator[bytes]:
        whole = start == 0 and end == blob.size
        try:
            got = await obstore.get_async(
                self._download, blob.key, options=None if whole else {"range": (start, end)}
            )
        except BaseError as exc:  # (not FileNotFoundError, which goes on to the caller)
            raise self._unavailable(exc) from exc
        return self._chunks(got)

    async def _chunks(self, got: GetResult) -> AsyncIterator[bytes]:
        try:
            async for chunk in got.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)
        except BaseError as exc:  # the response has begun: all that is left is to cut it
            raise self._unavailable(exc) from exc

    def probe(self) -> Awaitable[str]:
        return self._answers()

    async def _answers(self) -> str:
        # "Not found" is an answer: the bucket is there and the credentials were accepted.
        with contextlib.suppress(FileNotFoundError):
            await obstore.head_async(self._meta, PROBE_KEY)
        return "ok"

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._meta, check_key(key))
        except FileNotFoundError:
            return
        except BaseError as exc:
            raise self._unavailable(exc) from exc
