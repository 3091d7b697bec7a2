"""The `reverb` command."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from reverb import __version__, logs
from reverb.config import ConfigError, Settings, load_settings


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print(f"reverb: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _migrate(settings: Settings) -> None:
    from reverb.storage.migrate import upgrade_sync

    upgrade_sync(settings.sqlalchemy_url)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from reverb.realtime.transport import FrameWriting

    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = _settings(**overrides)
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    if args.workers > 1 and not settings.redis_url:
        print(
            "reverb: --workers > 1 needs REDIS_URL: without it each process would only deliver "
            "the events of its own clients",
            file=sys.stderr,
        )
        return 2
    if settings.should_auto_migrate:
        _migrate(settings)
    # Workers re-read settings from the environment: pass the command-line values on.
    os.environ["HOST"], os.environ["PORT"] = settings.host, str(settings.port)
    # uvicorn drains on SIGTERM (sockets answer what they read and close with 1012, see
    # FrameWriting.shutdown), then raises the signal again for the handler it found in place:
    # this one, so that a shutdown asked for ends with status 0, not 143.
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run(
        "reverb.app:factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # The API contract: frames over 64 KiB close with 1009; pings every 25 s.
        ws=FrameWriting,
        ws_max_size=64 * 1024,
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_timeout_seconds,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = _settings()
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    _migrate(settings)
    print("reverb: database is up to date")
    return 0


def cmd_media_gc(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import timedelta

    from reverb.services.media import MediaService
    from reverb.storage.db import Database
    from reverb.storage.files import LocalBlobStore
    from reverb.storage.types import utcnow

    settings = _settings()
    logs.configure(fmt=settings.log_format, level=settings.log_level)

    async def run() -> int:
        db = Database(settings.sqlalchemy_url)
        try:
            service = MediaService(
                db=db, files=LocalBlobStore(settings.media_dir), settings=settings
            )
            return await service.collect_garbage(before=utcnow() - timedelta(hours=args.older_than))
        finally:
            await db.close()

    removed = asyncio.run(run())
    print(f"reverb: removed {removed} upload(s) never attached to a message")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reverb", description="Reverb: a real-time chat backend (REST + WebSocket)."
    )
    p.add_argument("--version", action="version", version=f"reverb {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (applies migrations in development)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, or HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 5000, or PORT)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (needs REDIS_URL)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending database migrations to DATABASE_URL")
    migrate.set_defaults(func=cmd_migrate)

    media = sub.add_parser("media", help="media maintenance")
    media_sub = media.add_subparsers(dest="media_command", required=True)
    gc = media_sub.add_parser("gc", help="delete uploads never attached to a message")
    gc.add_argument(
        "--older-than",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="only uploads older than this (default 24: a client may still be composing)",
    )
    gc.set_defaults(func=cmd_media_gc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
