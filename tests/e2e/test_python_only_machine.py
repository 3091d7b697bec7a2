"""The README's test command on a machine with Python and nothing else: in a mount and network
namespace where the system's PostgreSQL and Redis programs are hidden and 5432/6379 are closed,
scripts/services provides both from the `services` extra, and a part of the suite that needs
them passes on PostgreSQL: the Redis bus (a server killed and restarted, a three-node cluster)
and two `reverb serve` processes on PostgreSQL sharing Redis through an outage."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import POSTGRES_URL_VAR, REDIS_URL_VAR

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Bounded: the part below takes about 30 s here; a hang must not eat CI's time.
TIMEOUT_S = 240
SUBSET = [
    "tests/integration/test_bus.py",
    "-k",
    "redis or cluster",
    "tests/e2e/test_redis_outage.py::test_redis_outage_loses_nothing",
]


def _unshare() -> list[str]:
    """A namespace root may make as it is; anyone else maps themselves into a user namespace
    of their own, which gives the right to mount there."""
    found = shutil.which("unshare")
    if found is None:
        pytest.fail("`unshare` (util-linux) is needed to hide PostgreSQL and Redis", False)
    user = [] if os.geteuid() == 0 else ["--map-current-user"]
    return [found, *user, "--mount", "--net", "--"]


def test_the_suite_runs_where_postgres_and_redis_are_absent(tmp_path: Path) -> None:
    probe = subprocess.run(
        [*_unshare(), "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.fail(f"cannot make a mount and network namespace: {probe.stderr.strip()}", False)
    done = subprocess.run(
        [
            *_unshare(),
            sys.executable,
            "-m",
            "tests.e2e.bare_machine",
            "--",
            sys.executable,
            "-m",
            "pytest",
            "--db",
            "postgres",
            "-q",
            "-p",
            "no:cacheprovider",
            # Not the outer run's temporary root, which the inner run would prune.
            "--basetemp",
            str(tmp_path / "inner"),
            *SUBSET,
        ],
        cwd=ROOT,
        # As on a fresh machine: no server URLs set (the outer run's point outside the
        # namespace), and not measured by the outer run's coverage.
        env={
            k: v
            for k, v in os.environ.items()
            if k not in (POSTGRES_URL_VAR, REDIS_URL_VAR) and not k.startswith("COVERAGE_")
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    # The servers were provided, not found: started on ports of their own, from the extra.
    assert re.search(r"services: PostgreSQL started at postgresql://\S+:(\d+)/", out), out
    assert re.search(r"services: Redis started at redis://\S+:(\d+)/", out), out
    assert "bare: PostgreSQL from " + str(Path(sys.prefix).resolve()) in out, out
    passed = re.search(r"(\d+) passed", out)
    assert passed is not None and int(passed.group(1)) >= 10, out[-3000:]
    assert not re.search(r"\d+ (failed|skipped|error)", out), out[-3000:]
