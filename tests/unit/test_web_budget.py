"""The web client stays small (issue #14): all of its JavaScript and CSS, the client module
included, under 150 KB uncompressed, served as written (no build step)."""

from __future__ import annotations

from reverb.app import WEB_DIR

BUDGET_BYTES = 150 * 1024


def test_the_web_client_fits_its_budget() -> None:
    files = [*WEB_DIR.glob("*.js"), *WEB_DIR.glob("*.css")]
    assert {f.name for f in files} >= {"app.js", "app.css", "reverb-client.js"}
    total = sum(f.stat().st_size for f in files)
    assert total < BUDGET_BYTES, {f.name: f.stat().st_size for f in files}


def test_the_web_files_are_flat() -> None:
    # package-data ships `web/*`: a subfolder would be missing from an installed package.
    assert [p.name for p in WEB_DIR.iterdir() if p.is_dir()] == []
