"""docker-compose.yml's topology without containers: `reverb migrate`, two `reverb serve`
replicas in production mode sharing one database, one Redis and one media directory, and Caddy
in front of them running deploy/Caddyfile, the file the compose's proxy runs.

`scripts/cluster` runs this module (`python -m tests.e2e.cluster`); so does the end-to-end test.
It prints one JSON line, {"proxy": URL, "replicas": [URL, ...]}, once everything answers, and
stops what it started (by PID) on SIGINT or SIGTERM. Reverb settings in its environment reach
the replicas; the ones the topology fixes (REVERB_ENV, DATABASE_URL, REDIS_URL, MEDIA_DIR,
JWT_SECRET if unset) are set here as the compose sets them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import asyncpg
from sqlalchemy.engine import make_url

from tests.deploy_files import CADDYFILE, caddy_binary
from tests.e2e.server import reverb_serve, run_cli, server_process
from tests.ports import free_port


@dataclass(frozen=True)
class Cluster:
    proxy: str
    replicas: tuple[str, ...]


async def _ensure_postgres_database(url: str) -> None:
    """Create the database URL names if it does not exist yet (a first `scripts/cluster`)."""
    u = make_url(url)
    conn = await asyncpg.connect(
        user=u.username, password=u.password, host=u.host, port=u.port, database="postgres"
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", u.database):
            await conn.execute(f'CREATE DATABASE "{u.database}"')
    finally:
        await conn.close()


@contextmanager
def cluster(
    workdir: Path,
    settings: Mapping[str, str],
    replicas: int = 2,
    proxy_port: int | None = None,
) -> Iterator[Cluster]:
    """Migrate, start the replicas and the proxy; yield their URLs; stop them after."""
    media = workdir / "media"
    media.mkdir(parents=True, exist_ok=True)
    env = {
        **settings,
        "REVERB_ENV": "production",
        "MEDIA_DIR": str(media),
        "JWT_SECRET": settings.get("JWT_SECRET") or secrets.token_urlsafe(48),
    }
    migrated = run_cli(workdir, "migrate", env=env)
    if migrated.returncode != 0:
        raise RuntimeError(f"reverb migrate failed:\n{migrated.stdout}{migrated.stderr}")
    with ExitStack() as stack:
        urls = tuple(stack.enter_context(reverb_serve(workdir, env))[0] for _ in range(replicas))
        port = proxy_port or free_port()
        caddy_home = workdir / "caddy"
        caddy_env = {
            "PATH": os.environ.get("PATH", ""),
            # Caddy keeps its state (certificates, autosaved config) under these.
            "HOME": str(caddy_home),
            "XDG_DATA_HOME": str(caddy_home / "data"),
            "XDG_CONFIG_HOME": str(caddy_home / "config"),
            # Several clusters (or test runs) at once: no shared admin port.
            "CADDY_ADMIN": "off",
            # With a scheme, an address never asks for a certificate.
            "REVERB_DOMAIN": f"http://127.0.0.1:{port}",
            "REVERB_UPSTREAMS": " ".join(u.removeprefix("http://") for u in urls),
        }
        binary = caddy_binary()
        proxy, _ = stack.enter_context(
            server_process(
                workdir,
                caddy_env,
                lambda _: [binary, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                port=port,
            )
        )
        yield Cluster(proxy=proxy, replicas=urls)


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the ExitStack: every process stopped by its PID


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster",
        description="docker-compose.yml's topology without containers: reverb migrate, "
        "production replicas, Caddy in front running deploy/Caddyfile",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/reverb_cluster"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--port", type=int, default=8080, help="the proxy's port (0: a free one)")
    parser.add_argument(
        "--replicas", type=int, default=2, choices=range(1, 9), metavar="1..8", help="default 2"
    )
    parser.add_argument("--workdir", type=Path, help="logs and media (default: a temporary one)")
    args = parser.parse_args(argv)

    if make_url(args.database_url).get_backend_name() in ("postgresql", "postgres"):
        asyncio.run(_ensure_postgres_database(args.database_url))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reverb-cluster-"))
    workdir.mkdir(parents=True, exist_ok=True)
    settings = {**os.environ, "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url}
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with cluster(workdir.resolve(), settings, args.replicas, args.port or None) as c:
        print(json.dumps({"proxy": c.proxy, "replicas": list(c.replicas)}), flush=True)
        print(f"cluster: proxy {c.proxy}, logs and media in {workdir}", file=sys.stderr)
        signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
