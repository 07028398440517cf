"""Headless Chromium for the tests that look at pages as a person would.

Debian's chromium, driven by Playwright (which never downloads a browser here), with the flags
that keep it off the network on its own; screenshots go to a git-ignored folder for review.
"""
import os
import pathlib
import shutil
from typing import Any, Iterator

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SCREENSHOTS = pathlib.Path(os.environ.get("REPORTS_SCREENSHOTS_DIR",
                                          PROJECT_ROOT / "runs" / "screenshots"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def launched_chromium(what: str) -> Iterator[Any]:
    """A launched browser for a module fixture; skips, saying how to install, without one."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium is not installed ({CHROMIUM}); install it with "
                    f"`apt-get install -y chromium` (or `make browser`) to test {what}")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (it is in requirements.lock)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
