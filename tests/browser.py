"""Headless Chromium for the tests that check what people see (the report, the Data Docs).

As root on a closed network it needs `--no-sandbox`, no background networking and a fresh
profile; every host is made unresolvable, so a page that fetched anything would show it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # were the page to fetch anything, it would fail
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian package `chromium`: apt-get install chromium)"
)


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium with a fresh profile in `profile`; its standard output."""
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout
