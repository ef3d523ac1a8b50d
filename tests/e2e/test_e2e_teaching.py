"""The teaching panel in Debian chromium, and ``/teaching`` through gradio_client.

Three ways in: a tiny standalone page (a state, a Run button, the result picture
and the panel, the way the app places it beside the picture), the whole app once
``app.py`` places the panel (skipped until then), and the documented API. The
engine replays real Florence-2 answers through the tiny model (recorded
engine), so the tokens are real pieces (``car``, ``<loc_53>``) while the
attention is the tiny model's own. With ``FLORENCE_UI_SCREENSHOTS=1`` the
standalone test writes ``docs/screenshots/teaching-tokens.png`` and
``teaching-attention.png`` for the README.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from browser import chromium_page
from gradio_client import Client, handle_file
from PIL import Image
from playwright.sync_api import expect

from florence_ui.core.tasks import DEFAULT_TASK
from florence_ui.labelstudio.server import free_port
from florence_ui.model.engine import GenerationSettings
from florence_ui.ui import teaching_panel
from florence_ui.ui.controller import Controller
from florence_ui.ui.session import UISession

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ROCKET = ROOT / "florence_ui" / "examples" / "rocket.jpg"
SHOTS = ROOT / "docs" / "screenshots"
TIMEOUT = 30_000


def shot(locator, name: str) -> None:
    if os.environ.get("FLORENCE_UI_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        locator.page.mouse.move(2, 2)
        locator.screenshot(path=str(SHOTS / name))


@pytest.fixture(scope="module")
def panel_page(recorded_engine) -> Iterator[str]:
    """The panel beside a result picture, on a page of its own (no app.py needed)."""
    controller = Controller(recorded_engine, GenerationSettings(max_new_tokens=64, num_beams=1))
    start = UISession()
    with Image.open(ROCKET) as photo:
        start.set_image(photo.convert("RGB"), name="rocket.jpg")

    def run(session: UISession):
        controller.run(session, DEFAULT_TASK.token)
        return session, controller.result_image(session)

    with gr.Blocks() as demo:
        state = gr.State(start)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                run_btn = gr.Button("Run", elem_id="demo-run")
                picture = gr.Image(type="pil", format="png", interactive=False, elem_id="result-image")
            with gr.Column(scale=1):
                teaching_panel.build(state, controller, picture=picture)
        run_btn.click(run, [state], [state, picture])
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def explain_and_pick(page) -> None:
    """Explain the latest run, pick a location token: its heatmap, caption and alternatives appear."""
    chips = page.locator("#teach-token-chips")
    page.locator("#teach-explain").click()
    expect(chips.locator(".tk").first).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#teach-heatmap img")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#teach-eye img")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#teach-input")).to_contain_text("image tokens")
    before = page.locator("#teach-heatmap img").get_attribute("src")
    location = chips.locator(".tk-location").nth(1)
    piece = location.inner_text()
    location.click()
    expect(page.locator("#teach-where")).to_contain_text(piece, timeout=TIMEOUT)
    expect(page.locator("#teach-where")).to_contain_text(f"where {piece} puts")  # the dashed line's caption
    expect(page.locator("#teach-heatmap img")).not_to_have_attribute("src", before or "", timeout=TIMEOUT)
    expect(chips.locator(".tk[style*='outline:3px']")).to_have_text(piece)
    expect(page.locator("#teach-alternatives")).to_contain_text("✓ chosen")


def test_panel_explains_a_run_and_shows_where_a_token_looked(panel_page):
    with chromium_page(1500, 1100) as page:
        page.goto(panel_page)
        page.locator("#demo-run").click()
        expect(page.locator("#teach-token-chips")).to_contain_text("Explain this run", timeout=TIMEOUT)
        expect(page.locator("#teach-md")).to_contain_text("Locate the objects")
        expect(page.locator("#teach-bins")).to_contain_text("× 640 / 1000")
        explain_and_pick(page)
        shot(page.locator("#teach-panel"), "teaching-tokens.png")
        shot(page.locator("#teach-heatmap"), "teaching-attention.png")
        # the slider reaches the other tokens too
        slider = page.locator("#teach-token input[type=number]")
        slider.fill("0")
        slider.press("Enter")
        expect(page.locator("#teach-where")).to_contain_text("Token #0", timeout=TIMEOUT)


def test_whole_app_panel_beside_the_picture(recorded_app):
    """The app with the panel app.py places beside the result picture, one tab away from the answer."""
    from ui_driver import UiDriver

    with chromium_page(1500, 1100) as page:
        ui = UiDriver(page, recorded_app).open()
        ui.upload(ROCKET)
        ui.run()
        ui.open_tab("Teaching view")  # the panel's tab under the result picture
        # the panel refreshes itself after the picture changes: wait for that before explaining
        expect(page.locator("#teach-token-chips")).to_contain_text("Explain this run", timeout=TIMEOUT)
        explain_and_pick(page)


def test_teaching_api_returns_tokens_and_attention(tiny_app):
    client = Client(tiny_app, verbose=False)
    _, result = client.predict(handle_file(str(ROCKET)), "<REGION_TO_CATEGORY>", "", [[5, 5, 300, 200], [200, 50, 600, 400]],
                               api_name="/run_task")  # fmt: skip
    teaching = client.predict(0, api_name="/teaching")
    flat = [t for row in result["output_tokens"] for t in row]
    assert [(t["id"], t["piece"], t["probability"]) for t in teaching["tokens"]] == [tuple(t) for t in flat]
    assert {t["row"] for t in teaching["tokens"]} == {0, 1}
    side = teaching["attention_grid"][0]
    assert side * side + 1 == teaching["num_image_tokens"]
    grids = np.asarray(teaching["attention"])
    assert grids.shape == (len(flat), side, side)
    np.testing.assert_allclose(grids.reshape(len(flat), -1).sum(axis=1), 1.0, atol=1e-4)
    assert len(teaching["alternatives"]) == len(flat) and teaching["input_tokens"][0][0] == "<s>"
    assert teaching["spans"] and teaching["bins"] == [] or isinstance(teaching["bins"], list)
    assert "head" in teaching["attention_averaged"]
