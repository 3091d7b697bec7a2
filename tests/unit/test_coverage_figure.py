"""The coverage figure the README states stays true: scripts/test measures what
[tool.coverage] in pyproject.toml says and fails a whole-suite run below its floor (fail_under),
and the README's figure is the one that floor was set from."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIGURE = re.compile(r"\*\*(\d+(?:\.\d+)?)% of lines and branches\*\*")
# The floor sits a little under the measured figure (see fail_under); a README figure further
# above it than this means one of the two was not updated with the other.
MAX_GAP = 2.0


def _coverage() -> dict[str, Any]:
    coverage: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "coverage"
    ]
    return coverage


def test_the_figure_counts_branches_of_reverb_in_every_process() -> None:
    run = _coverage()["run"]
    # "Of lines and branches", of the package, the servers the tests start included.
    assert run["source"] == ["reverb"] and run["branch"] is True
    assert run["parallel"] is True and "subprocess" in run["patch"] and run["sigterm"] is True


def test_the_report_and_the_data_are_not_committed() -> None:
    html = _coverage()["html"]["directory"]
    paths = [f"{html}/index.html", ".coverage", ".coverage.host.1234.XabcdefX"]
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.split() == paths, done.stderr


def test_the_readme_states_the_figure_the_floor_holds() -> None:
    floor = float(_coverage()["report"]["fail_under"])
    figures = FIGURE.findall((ROOT / "README.md").read_text())
    assert len(figures) == 1, figures
    assert floor > 0
    assert floor <= float(figures[0]) <= floor + MAX_GAP, (figures[0], floor)
