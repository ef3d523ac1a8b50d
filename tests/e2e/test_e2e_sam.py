"""SAM in the page (issue 16) and the Tiled switch (issue 17), in Debian chromium.

The app runs the tiny random Florence-2 with the tiny random SAM (the real load → embed → prompt → post-process
path): the masks mean nothing, so the test follows the person's path — tick *Click to segment*, click two
objects on the result picture, *Segment the clicks* — and checks what the page says and keeps, not mask quality.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from app_server import serve
from browser import chromium_page
from playwright.sync_api import expect
from ui_driver import UiDriver

from florence_ui import FlorenceEngine

pytestmark = pytest.mark.e2e
TIMEOUT = 60_000


@pytest.fixture(scope="module")
def sam_app(tiny_checkpoint, tiny_sam_checkpoint) -> Iterator[str]:
    engine = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", sam=str(tiny_sam_checkpoint))
    with serve(engine) as url:
        yield url


def test_click_mode_segments_and_names_the_clicked_objects(sam_app):
    with chromium_page(1366, 900) as page:
        UiDriver(page, sam_app).open()
        expect(page.locator("#refine-sam")).to_be_visible()
        page.locator("#examples .gallery-item").first.click()
        picture = page.locator("#result-image img").first
        expect(picture).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("#click-row")).to_be_hidden()
        page.locator("#click-mode input").check()
        expect(page.locator("#click-hint")).to_contain_text("Click an object")
        box = picture.bounding_box()
        picture.click(position={"x": box["width"] * 0.3, "y": box["height"] * 0.5})
        expect(page.locator("#click-hint")).to_contain_text("1 object", timeout=TIMEOUT)
        page.keyboard.down("Shift")
        picture.click(position={"x": box["width"] * 0.32, "y": box["height"] * 0.52})
        page.keyboard.up("Shift")
        expect(page.locator("#click-hint")).to_contain_text("1 object and 1 negative click", timeout=TIMEOUT)
        picture.click(position={"x": box["width"] * 0.7, "y": box["height"] * 0.4})
        expect(page.locator("#click-hint")).to_contain_text("2 objects and 1 negative click", timeout=TIMEOUT)
        page.locator("#segment-clicks").click()
        # the clicks were used up in one batch, and the run is in the review (one run, its regions pending)
        expect(page.locator("#click-hint")).to_contain_text("Click an object", timeout=TIMEOUT)
        expect(page.locator("#review-summary")).to_contain_text("from 1 run", timeout=TIMEOUT)
        # each object was named by Florence-2's region task on SAM's box (the random model's words mean nothing)
        expect(page.locator("#status")).to_contain_text("Region to category", timeout=TIMEOUT)


def test_the_tiled_switch_shows_for_the_tasks_that_tile(sam_app):
    with chromium_page(1366, 900) as page:
        UiDriver(page, sam_app).open()
        expect(page.locator("#tiled")).to_be_visible()  # object detection tiles
        page.locator("#task input").fill("Caption")
        page.get_by_role("option", name="Caption — whole image", exact=True).click()
        expect(page.locator("#tiled")).to_be_hidden()


def test_run_task_refines_through_the_api(sam_app, tmp_path):
    """``/run_task`` with ``refine``: every region carries SAM's outline and score beside Florence-2's."""
    import json

    import numpy as np
    from gradio_client import Client, handle_file
    from PIL import Image

    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(photo)
    client = Client(sam_app, verbose=False)
    boxes = json.dumps([[5, 5, 80, 60], [60, 40, 150, 110]])
    _png, out = client.predict(handle_file(str(photo)), "<REGION_TO_CATEGORY>", "", boxes, 6, 1, False, True,
                               api_name="/run_task")  # fmt: skip
    regions = out["regions"]
    assert len(regions) == 2 and all("sam_polygons" in r and "sam_score" in r for r in regions)
    with pytest.raises(Exception, match="does not tile"):
        client.predict(handle_file(str(photo)), "<CAPTION>", "", "[]", 6, 1, True, False, api_name="/run_task")
