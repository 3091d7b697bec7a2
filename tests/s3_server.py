"""An S3-compatible server process of the tests' own: moto's server (`moto_server`, the `dev`
extra), on a free port of 127.0.0.1, stopped only by the PID it started. It keeps objects in
memory and accepts any credentials, which is all the media store needs of it.

With `--media s3` (or REVERB_TEST_MEDIA=s3) the suite's media live in one such server: every
app the tests make gets MEDIA_STORE=s3 and a prefix of the bucket of its own, named after its
MEDIA_DIR, so settings made for the same folder (a CLI beside an app, a restart) share files
the way replicas share a bucket."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import obstore
from obstore.store import S3Store

from reverb.config import Settings
from tests.ports import free_port

WAIT_S = 20.0
BUCKET = "reverb-test"
REGION = "us-east-1"
# moto signs nothing and checks nothing; these only have to be present.
CREDENTIALS = {"s3_access_key_id": "test-key", "s3_secret_access_key": "test-secret"}


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._proc is None
        program = Path(sys.executable).with_name("moto_server")
        self._proc = subprocess.Popen(
            [str(program), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1.0)
                return
            except httpx.TransportError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not start on port {self.port}") from None
                time.sleep(0.05)  # polling a server that is starting: nothing to wait on

    def stop(self) -> None:
        """End the process this object started, by its PID: the store is away."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=WAIT_S)
            self._proc = None

    def pause(self) -> None:
        """Stop the process without ending it (SIGSTOP): connections are accepted by the
        kernel and never answered, as with a hung store."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def resume_if_paused(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def create_bucket(self, name: str = BUCKET) -> str:
        httpx.put(f"{self.url}/{name}").raise_for_status()
        return name

    def settings(self, media_dir: str, bucket: str = BUCKET) -> dict[str, str]:
        """The settings of an app storing in `bucket`, under a prefix named after `media_dir`."""
        prefix = "t-" + hashlib.sha256(str(Path(media_dir).resolve()).encode()).hexdigest()[:16]
        return {
            "media_store": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.url,
            "s3_region": REGION,
            "s3_prefix": prefix,
            **CREDENTIALS,
        }


# The server of a `--media s3` run (set by tests/conftest.py), else None.
SUITE: S3Server | None = None


def suite_media(media_dir: str) -> dict[str, str]:
    """The media settings of this run for an app whose MEDIA_DIR is `media_dir`."""
    return SUITE.settings(media_dir) if SUITE is not None else {}


def stored(settings: Settings) -> set[str]:
    """Every file the app of `settings` keeps: the keys in its bucket (under its prefix), and
    any file in its MEDIA_DIR (the local store, or uploads in progress), '/'-separated."""
    folder = Path(settings.media_dir)
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    if settings.media_store == "s3":
        assert settings.s3_bucket and settings.s3_secret_access_key
        store = S3Store(
            settings.s3_bucket,
            prefix=settings.s3_prefix or None,
            endpoint=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key.get_secret_value(),
            client_options={"allow_http": True},
        )
        found |= {meta["path"] for batch in obstore.list(store) for meta in batch}
    return found
