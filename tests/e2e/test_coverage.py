"""The coverage configuration scripts/test runs under measures the processes the tests start: a
`reverb serve` started as the end-to-end tests start one (tests.e2e.server) and stopped by
SIGTERM writes its lines and branches to the run's data."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from coverage import CoverageData

from reverb import app, cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Imports nothing of reverb itself, so whatever of reverb the data holds, the server ran.
START_A_SERVER = """
import sys
from pathlib import Path

from tests.e2e.server import reverb_serve

with reverb_serve(Path(sys.argv[1]), {"DATABASE_URL": sys.argv[2]}):
    pass
"""


def _lines(function: Callable[..., Any]) -> set[int]:
    return {line for *_, line in function.__code__.co_lines() if line is not None}


def _coverage(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "coverage", *args],
        # pyproject.toml there holds the configuration, as for scripts/test.
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_server_the_tests_start_is_measured(tmp_path: Path) -> None:
    program = tmp_path / "start_a_server.py"
    program.write_text(START_A_SERVER)
    data_file = tmp_path / "data" / ".coverage"
    # Not measured by this run's own coverage, if any: this is a run of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    env["PYTHONPATH"] = str(ROOT)
    _coverage(
        "run",
        f"--data-file={data_file}",
        str(program),
        str(tmp_path),
        f"sqlite:///{tmp_path}/reverb.db",
        env=env,
    )
    _coverage("combine", f"--data-file={data_file}", env=env)

    data = CoverageData(basename=str(data_file))
    data.read()
    assert data.has_arcs()
    by_path = {Path(f).resolve(): f for f in data.measured_files()}
    # Only the server runs these: uvicorn's factory, and the SIGTERM handler that ends it.
    for function, module in ((app.factory, app), (cli._stopped, cli)):
        measured = by_path.get(Path(inspect.getfile(module)).resolve())
        assert measured is not None, sorted(by_path)
        ran = set(data.lines(measured) or [])
        assert _lines(function) <= ran, (function.__name__, sorted(_lines(function)), sorted(ran))
