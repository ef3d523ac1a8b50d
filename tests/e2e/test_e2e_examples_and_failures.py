"""Examples work wherever the app was started, and an event that fails says so (issue 12, item 6).

Started from another folder (``cd /tmp && python /path/app.py``), every
example click answered 500 (gradio's ``InvalidPathError``: the bundled
examples were outside its allowed paths) and the page showed nothing. The
first test launches the real ``app.py`` (tiny model) from a folder that is
neither the repository nor above it, with its own temp dir, and uses an
example in a real browser. The second makes an event fail on purpose (an
injected fault: every failure the handlers can foresee they already turn into
warnings) and checks the page says so and the session goes on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from app_server import serve
from browser import chromium_page
from launched_app import launch_app
from playwright.sync_api import expect
from ui_driver import UiDriver

import florence_ui.ui.controller as controller_module

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "florence_ui" / "examples"
FAILED = "That action failed on the server"


def test_examples_work_when_the_app_starts_in_another_folder(tiny_checkpoint, tmp_path, artifacts_dir):
    elsewhere, own_tmp = tmp_path / "elsewhere", tmp_path / "tmp"
    elsewhere.mkdir()
    own_tmp.mkdir()
    # neither the working directory nor the system temp dir holds the examples (gradio allows both)
    assert not EXAMPLES.is_relative_to(elsewhere) and not EXAMPLES.is_relative_to(own_tmp)
    app = launch_app(tiny_checkpoint, tmp_path / "app", {"TMPDIR": str(own_tmp)}, cwd=elsewhere)
    try:
        with chromium_page(1300, 900) as page:
            server_errors = []
            page.on("response", lambda r: r.status >= 500 and server_errors.append(f"{r.status} {r.url}"))
            ui = UiDriver(page, app.url, artifacts_dir).open()
            ui.pick_example(0)  # waits for the picture in the annotator
            # a task runs on it (the default, object detection; the tiny model's answer is noise, maybe empty)
            page.locator("#run").click()
            expect(page.locator("#status")).to_contain_text("model time", timeout=60_000)
            expect(page.locator("#status")).not_to_contain_text(FAILED)
            assert server_errors == [], server_errors
    finally:
        app.stop()
    assert "InvalidPathError" not in app.log()
    assert Path(tempfile.gettempdir()) != own_tmp  # the test process itself kept its temp dir


def test_a_failing_event_shows_a_message_and_the_session_goes_on(recorded_engine, monkeypatch):
    def broken_draw(*_args, **_kwargs):
        raise RuntimeError("injected fault: drawing failed")

    with serve(recorded_engine) as url, chromium_page(1300, 900) as page:
        ui = UiDriver(page, url).open()
        monkeypatch.setattr(controller_module, "draw", broken_draw)
        page.locator("#examples .gallery-item").nth(0).click()  # the image reaches the session, the redraw fails
        expect(page.locator("#status")).to_contain_text(FAILED)
        ui.expect_toast(FAILED)
        monkeypatch.undo()
        ui.run()  # same session, same picture: a task runs and the page is drawn again
        expect(page.locator("#status")).to_contain_text("model time")
        expect(page.locator("#result-image img")).to_have_count(1)
        assert recorded_engine.calls[-1]["size"] == (640, 427)
