"""Real `reverb serve` processes for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.ports import free_port

STARTUP_TIMEOUT_S = 60.0


def base_env() -> dict[str, str]:
    """Only what a process needs to run: no Reverb setting leaks in from the test's shell.
    Coverage's settings do, so a run under coverage (scripts/test) measures the process too."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "VIRTUAL_ENV",
        "SYSTEMROOT",
        "TMPDIR",
        "COVERAGE_PROCESS_CONFIG",
    )
    return {k: v for k, v in os.environ.items() if k in keep}


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    """Environment for a test server on the test's database, with cheap password hashing."""
    from tests.conftest import TEST_SECRET, UNLIMITED
    from tests.s3_server import suite_media

    if "media_dir" in settings:  # the same store as an app of the suite on that folder
        settings = {**suite_media(settings["media_dir"]), **settings}
    return {
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_SECRET,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST_KIB": "64",
        "ARGON2_PARALLELISM": "1",
        **{k.upper(): v for k, v in {**UNLIMITED, **settings}.items()},
    }


def reverb_serve(
    cwd: Path, env: Mapping[str, str] | None = None, *args: str, port: int | None = None
) -> AbstractContextManager[tuple[str, Path]]:
    """Start `reverb serve` on `port` (else a free one); yield its base URL and log file; stop
    it after."""
    return server_process(
        cwd,
        env,
        lambda port: [sys.executable, "-m", "reverb", "serve", "--port", str(port), *args],
        port=port,
    )


@dataclass(frozen=True, slots=True)
class Running:
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]


def reverb_process(
    cwd: Path, env: Mapping[str, str] | None = None, *args: str, port: int | None = None
) -> AbstractContextManager[Running]:
    """`reverb serve` on `port` (else a free one), as `reverb_serve`, yielding its process too
    (for its PID: its memory, a signal)."""
    return running_process(
        cwd,
        env,
        lambda port: [sys.executable, "-m", "reverb", "serve", "--port", str(port), *args],
        port=port,
    )


@contextmanager
def server_process(
    cwd: Path,
    env: Mapping[str, str] | None,
    argv: Callable[[int], list[str]],
    *,
    port: int | None = None,
    health: str = "/healthz",
) -> Iterator[tuple[str, Path]]:
    """Start the server `argv(port)` runs on `port` (else a free one); yield its base URL and
    log file once `health` answers 200."""
    with running_process(cwd, env, argv, port=port, health=health) as running:
        yield running.url, running.log_path


@contextmanager
def running_process(
    cwd: Path,
    env: Mapping[str, str] | None,
    argv: Callable[[int], list[str]],
    *,
    port: int | None = None,
    health: str = "/healthz",
) -> Iterator[Running]:
    port = port or free_port()
    log_path = cwd / f"server-{port}.log"
    full_env = {**base_env(), **(env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv(port),
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(url + health, proc, log_path)
            yield Running(url, log_path, proc)
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # polling interval for the port to open, not a race cover
    raise AssertionError(f"server did not become healthy:\n{log_path.read_text()}")


def run_cli(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reverb", *args],
        cwd=cwd,
        env={**base_env(), **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
