"""The browser driver never races the page: toasts that close themselves while it acts (issue 12, item 5).

Gradio's warning toasts close on their own after a few seconds, with a
slide-out animation. The driver used to check ``is_visible()`` and then
``click()`` each close button; ``click()`` waits for the button to stop moving,
and a toast that closed meanwhile left it waiting 30 s for a button that was
gone: the test failed now and then. Here that race is made certain: a toast
that is visible, keeps moving and closes itself 0.8 s later. Dismissing must
leave no toast, quickly.
"""

from __future__ import annotations

import time

import pytest
from browser import chromium_page
from playwright.sync_api import expect
from ui_driver import UiDriver

pytestmark = pytest.mark.e2e

CLOSING_TOAST = """
<style>
  @keyframes slide { from { transform: translateX(0); } to { transform: translateX(40px); } }
  .toast-body { position: absolute; top: 20px; right: 60px; width: 320px; animation: slide .3s infinite alternate; }
</style>
<div class="toast-body">Warning: closing by itself <button class="toast-close">×</button></div>
<script>
  const toast = document.querySelector('.toast-body');
  toast.querySelector('.toast-close').addEventListener('click', () => toast.remove());
  setTimeout(() => toast.remove(), 800);
</script>
"""
TWO_TOASTS = """
<div class="toast-body">Warning: the first one <button class="toast-close">×</button></div>
<div class="toast-body">Warning: the second one <button class="toast-close">×</button></div>
"""


def test_dismissing_toasts_tolerates_a_toast_that_closes_itself():
    with chromium_page(800, 400) as page:
        ui = UiDriver(page, "about:blank")
        page.set_default_timeout(5_000)  # the old race waited out the whole timeout
        page.set_content(CLOSING_TOAST)
        expect(page.locator(".toast-body")).to_have_count(1)
        started = time.monotonic()
        ui.dismiss_toasts()
        expect(page.locator(".toast-body")).to_have_count(0)
        assert time.monotonic() - started < 4


def test_expecting_a_toast_finds_it_among_others():
    with chromium_page(800, 400) as page:
        ui = UiDriver(page, "about:blank")
        page.set_default_timeout(5_000)
        page.set_content(TWO_TOASTS)
        ui.expect_toast("the second one")  # not only the first toast
