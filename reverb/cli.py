"""The `reverb` command."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from reverb import __version__, logs
from reverb.config import ConfigError, Settings, load_settings, read_settings


def _settings(
    overrides: dict[str, object] | None = None, read: Callable[..., Settings] = load_settings
) -> Settings:
    try:
        return read(**(overrides or {}))
    except ConfigError as exc:
        print(f"reverb: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _prepare_database(settings: Settings, *, migrate: bool) -> None:
    """Reach the database and migrate it (or check it is migrated); one line and exit 1 if not."""
    import asyncio

    from sqlalchemy import make_url

    from reverb.storage.migrate import DatabaseUnreachable, SchemaMismatch, prepare

    where = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    try:
        asyncio.run(prepare(settings.sqlalchemy_url, migrate=migrate))
    except DatabaseUnreachable as exc:
        print(f"reverb: cannot reach the database at {where}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except SchemaMismatch as exc:
        print(
            f"reverb: {exc}: run `reverb migrate` first, or start with `reverb serve --migrate`",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = _settings(overrides)
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    if args.workers > 1 and not settings.redis_url:
        print(
            "reverb: --workers > 1 needs REDIS_URL: without it each process would only deliver "
            "the events of its own clients",
            file=sys.stderr,
        )
        return 2
    if args.reload and (settings.production or args.workers > 1):
        print(
            "reverb: --reload is for development, one process: not with REVERB_ENV=production "
            "or --workers",
            file=sys.stderr,
        )
        return 2
    _prepare_database(settings, migrate=args.migrate or settings.should_auto_migrate)
    # Workers re-read settings from the environment: pass the command-line values on.
    os.environ["HOST"], os.environ["PORT"] = settings.host, str(settings.port)
    # uvicorn drains on SIGTERM (sockets answer what they read and close with 1012, see
    # FrameWriting.shutdown), then raises the signal again for the handler it found in place:
    # this one, so that a shutdown asked for ends with status 0, not 143.
    signal.signal(signal.SIGTERM, _stopped)
    with _metrics_dir(args.workers):
        _run(settings, args)
    return 0


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, a folder of this run's own where each keeps its metrics for the
    others' scrapes to add up (prometheus_client's multiprocess mode); removed when it ends."""
    import os
    import shutil
    import tempfile

    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: its own numbers, in memory
    if workers <= 1:
        yield
        return
    folder = tempfile.mkdtemp(prefix="reverb-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # the workers inherit it
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from reverb.realtime.transport import FrameWriting

    uvicorn.run(
        "reverb.app:factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        # Restarts the server process when a file of the package changes (watchfiles).
        reload=args.reload,
        reload_dirs=[str(Path(__file__).parent)] if args.reload else None,
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


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = _settings()
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    _prepare_database(settings, migrate=True)
    print("reverb: database is up to date")
    return 0


def cmd_media_gc(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import timedelta

    from reverb.services.media import MediaService
    from reverb.storage.db import Database
    from reverb.storage.files import blob_store
    from reverb.storage.types import utcnow

    settings = _settings()
    logs.configure(fmt=settings.log_format, level=settings.log_level)

    async def run() -> int:
        db = Database(settings.sqlalchemy_url)
        try:
            service = MediaService(db=db, files=blob_store(settings), settings=settings)
            return await service.collect_garbage(before=utcnow() - timedelta(hours=args.older_than))
        finally:
            await db.close()

    removed = asyncio.run(run())
    print(f"reverb: removed {removed} upload(s) never attached to a message")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from reverb.cli_backup import backup

    return backup(_settings(read=read_settings), args.folder)


def cmd_restore(args: argparse.Namespace) -> int:
    from reverb.cli_backup import restore

    return restore(_settings(read=read_settings), args.folder, force=args.force)


def _with_settings(name: str) -> Callable[[argparse.Namespace], int]:
    """A `reverb users` subcommand, run with the settings (and their logging) read first."""

    def run(args: argparse.Namespace) -> int:
        from reverb import cli_users

        settings = _settings()
        logs.configure(fmt=settings.log_format, level="WARNING")
        _prepare_database(settings, migrate=settings.should_auto_migrate)
        command: Callable[[Settings, argparse.Namespace], int] = getattr(cli_users, name)
        return command(settings, args)

    return run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reverb", description="Reverb: a real-time chat backend (REST + WebSocket)."
    )
    p.add_argument("--version", action="version", version=f"reverb {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the server (refuses a database behind the newest migration, which development "
        "applies by itself)",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, or HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 5000, or PORT)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (needs REDIS_URL)")
    serve.add_argument(
        "--reload",
        action="store_true",
        help="restart when a file under reverb/ changes (development only)",
    )
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="apply pending migrations first (development does this by itself)",
    )
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

    saving = sub.add_parser(
        "backup", help="copy a SQLite database (while it serves), the media and the secret"
    )
    saving.add_argument("folder", type=Path, help="a new or empty folder")
    saving.set_defaults(func=cmd_backup)
    putting = sub.add_parser("restore", help="put a backup made by `reverb backup` in place")
    putting.add_argument("folder", type=Path)
    putting.add_argument(
        "--force", action="store_true", help="replace an existing database (stop the server first)"
    )
    putting.set_defaults(func=cmd_restore)

    users = sub.add_parser("users", help="manage accounts (create, list, disable, enable, ...)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="create an account")
    create.add_argument("username")
    create.add_argument("email")
    create.add_argument("--display-name")
    create.set_defaults(func=_with_settings("create"))
    listing = users_sub.add_parser("list", help="list accounts by username")
    listing.add_argument("--search", help="only usernames or e-mails containing this")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_with_settings("list_"))
    for name, what in (
        ("disable", "refuse logins and end every session of an account at once"),
        ("enable", "let a disabled account log in again"),
        ("set-password", "set a new password (ends every session)"),
    ):
        one = users_sub.add_parser(name, help=what)
        one.add_argument("user", help="id, username or e-mail")
        one.set_defaults(func=_with_settings(name.replace("-", "_")))
    for command in (create, users_sub.choices["set-password"]):
        command.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from standard input (else it is asked at the terminal)",
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
