"""Debian's Chromium, as every browser test launches it: headless, offline, no sandbox.

One place for the executable and its flags, so the demo's tests and the Mini App's tests
cannot drift apart (a flag that keeps Chromium from phoning home belongs to both).
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root in CI; the page is our own, served from 127.0.0.1
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Nothing but the page's own requests: no updates, safe-browsing lists or sync.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = "Debian's chromium is missing: tests/run installs it (apt-get install chromium)"
