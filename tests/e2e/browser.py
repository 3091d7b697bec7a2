"""The browser the web client's tests drive: Playwright's own Chromium when it is installed,
else the system's (Debian's `chromium` package). `python -m tests.e2e.browser` prints its path,
or says what is missing and exits 1; scripts/browser uses that to decide what to install."""

from __future__ import annotations

import os
import shutil
import sys

from playwright.sync_api import sync_playwright

# Where a system package puts Chromium: Debian's `chromium`, Ubuntu's and others' names.
SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

MISSING = (
    "no browser for the web client's tests: run scripts/browser (Playwright's own Chromium "
    "where this machine can download it, else the system's `chromium` package)"
)


def find_browser(own: str) -> str | None:
    """Path of the Chromium to launch, or None when there is none; `own` is where Playwright
    installs its Chromium (`playwright.chromium.executable_path`)."""
    if os.path.exists(own):
        return own
    for name in SYSTEM_BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def launch_args() -> list[str]:
    # Chromium refuses to start its sandbox as root (containers, CI); the page under test is
    # our own, so the tests run it without one there.
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


if __name__ == "__main__":
    with sync_playwright() as p:
        path = find_browser(p.chromium.executable_path)
    if path is None:
        sys.exit(MISSING)
    print(path)
