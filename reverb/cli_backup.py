"""`reverb backup DIR` and `reverb restore DIR`: a SQLite deployment's database, media and
development secret, copied while the server runs and put back elsewhere.

PostgreSQL deployments back up with the database's own tools (`pg_dump`, see the README); the
database copy here is SQLite's online backup API, which gives one consistent snapshot however
busy the writer is."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from sqlalchemy import make_url

from reverb import __version__
from reverb.config import Settings, development_secret_file
from reverb.storage.migrate import head_revision

MANIFEST = "reverb-backup.json"
DATABASE = "reverb.db"
MEDIA = "media"
SECRET = "jwt-secret"


def _fail(message: str, code: int = 1) -> SystemExit:
    print(f"reverb: {message}", file=sys.stderr)
    return SystemExit(code)


def _sqlite_path(settings: Settings) -> Path:
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise _fail(
            "backup and restore copy a SQLite database; for PostgreSQL use pg_dump and "
            "pg_restore, and copy MEDIA_DIR (see the README, 'Backups')",
            2,
        )
    return Path(url.database)


def _copy_database(source: sqlite3.Connection, target: Path) -> None:
    with sqlite3.connect(target) as copy:
        source.backup(copy)
        # One self-contained file: the copy took the live database's WAL mode with its pages.
        copy.execute("PRAGMA journal_mode=DELETE")
    copy.close()


def _revision(path: Path) -> str | None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            row = None
    conn.close()
    return str(row[0]) if row else None


def backup(settings: Settings, folder: Path) -> int:
    database = _sqlite_path(settings)
    if not database.exists():
        raise _fail(f"there is no database at {database}")
    if folder.exists() and any(folder.iterdir()):
        raise _fail(f"{folder} is not empty; back up into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    # Read-only, so a backup can never change the live database.
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as live:
        _copy_database(live, folder / DATABASE)
    live.close()
    # After the database: every file a backed-up row names was on disk before its row was
    # committed (uploads are stored, then recorded), so the copy holds it.
    # Files in a bucket are the bucket's to back up (versioning, replication, its own tools):
    # copying them here would double the backup for no gain.
    in_bucket = settings.media_store == "s3"
    if not in_bucket and settings.media_dir.exists():
        shutil.copytree(settings.media_dir, folder / MEDIA, ignore=shutil.ignore_patterns(".tmp"))
    secret = development_secret_file(settings)
    has_secret = secret.exists()
    if has_secret:
        shutil.copy2(secret, folder / SECRET)
    manifest = {
        "reverb": __version__,
        "schema": _revision(folder / DATABASE),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "database": DATABASE,
        "media": MEDIA if (folder / MEDIA).exists() else None,
        # A JWT_SECRET set in the environment is the operator's to keep; a generated one is here.
        "jwt_secret": SECRET if has_secret else None,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"reverb: backed up {database} (schema {manifest['schema']}) to {folder}")
    if in_bucket:
        print(
            f"reverb: media are in the S3 bucket {settings.s3_bucket!r}, not copied; back the "
            "bucket up by its own means (versioning or replication, see the README, 'Backups')"
        )
    return 0


def restore(settings: Settings, folder: Path, *, force: bool) -> int:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        raise _fail(
            f"{folder} holds no Reverb backup ({MANIFEST} is missing or unreadable)"
        ) from None
    database = _sqlite_path(settings)
    if database.exists() and not force:
        raise _fail(
            f"{database} exists; stop the server and pass --force to replace it with the backup"
        )
    schema, head = _revision(folder / manifest["database"]), head_revision()
    if schema is not None and head is not None and schema > head:
        raise _fail(f"the backup's schema ({schema}) is newer than this version of Reverb knows")
    database.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(f"file:{folder / manifest['database']}?mode=ro", uri=True) as saved:
        _copy_database(saved, database)
    saved.close()
    if manifest.get("media"):
        shutil.copytree(folder / manifest["media"], settings.media_dir, dirs_exist_ok=True)
    secret = development_secret_file(settings)
    if manifest.get("jwt_secret") and (force or not secret.exists()):
        shutil.copy2(folder / manifest["jwt_secret"], secret)
    print(f"reverb: restored {folder} into {database} (schema {schema})")
    return 0
