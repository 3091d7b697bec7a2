"""`reverb serve --reload`: a change under reverb/ restarts the server; production refuses it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

import reverb
from tests.e2e.server import reverb_serve, run_cli, server_env

pytestmark = pytest.mark.e2e

STARTED = re.compile(r"Started server process \[(\d+)\]")


def test_a_change_under_reverb_restarts_the_server(tmp_path: Path, database_url: str) -> None:
    probe = Path(reverb.__file__).parent / f"_reload_probe_{tmp_path.name}.py"
    with reverb_serve(tmp_path, server_env(database_url), "--reload") as (url, log):
        first = STARTED.findall(log.read_text())
        assert len(first) == 1, log.read_text()
        try:
            probe.write_text("# written by tests/e2e/test_reload.py; removed at its end\n")
            deadline = time.monotonic() + 30
            while len(STARTED.findall(log.read_text())) < 2:  # bounded: 30 s
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)  # polling the log for the restart
        finally:
            probe.unlink(missing_ok=True)
        second = STARTED.findall(log.read_text())[1]
        assert second != first[0]
        deadline = time.monotonic() + 30
        while True:  # the new process answers
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_reload_is_refused_in_production_and_with_workers(tmp_path: Path) -> None:
    prod = run_cli(
        tmp_path, "serve", "--reload", env={"REVERB_ENV": "production", "JWT_SECRET": "s" * 40}
    )
    assert prod.returncode == 2 and "--reload is for development" in prod.stderr
    workers = run_cli(
        tmp_path, "serve", "--reload", "--workers", "2", env={"REDIS_URL": "redis://x"}
    )
    assert workers.returncode == 2 and "--reload is for development" in workers.stderr
