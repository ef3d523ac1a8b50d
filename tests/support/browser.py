"""Headless Debian chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM = os.environ.get("FLORENCE_UI_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000, color_scheme: str | None = None) -> Iterator:
    """A fresh browser page; the browser closes when the block ends.

    ``color_scheme`` ("dark" / "light") is what the page's ``prefers-color-scheme`` media query answers, which
    gradio follows for its dark mode.
    """
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: `apt-get install -y chromium` (make test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme)
            yield context.new_page()
        finally:
            browser.close()
