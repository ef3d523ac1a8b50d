"""Browser end-to-end: a person uploads, draws boxes, runs tasks, reviews and opens the teaching view.

Headless Debian chromium (tests/support/browser.py) drives the real page served by
``build_app`` on 127.0.0.1. The engine replays recorded Florence-2 generations
through the real parser (tests/support/recorded_engine.py), so the review rows carry
real labels. Screenshots land in test-artifacts/ (ui-overview.png is the
README's picture).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import chromium_page
from playwright.sync_api import expect
from ui_driver import UiDriver

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "florence_ui" / "examples"


def test_draw_boxes_run_review_and_teach(recorded_app, recorded_engine, artifacts_dir):
    with chromium_page(1400, 1000) as page:
        ui = UiDriver(page, recorded_app, artifacts_dir).open()
        ui.upload(EXAMPLES / "rocket.jpg")

        # two boxes drawn with the mouse, listed at once
        ui.draw_box(0.08, 0.10, 0.38, 0.62)
        ui.draw_box(0.48, 0.18, 0.92, 0.85)
        ui.expect_boxes(2)
        expect(page.locator("#box-hint")).to_contain_text("2 boxes")

        # region → description answers both boxes in one call, each tied to its box
        ui.choose_task("Region to description")
        ui.run()
        assert recorded_engine.calls[-1]["task"] == "<REGION_TO_DESCRIPTION>"
        assert len(recorded_engine.calls[-1]["boxes"]) == 2
        expect(page.locator("#status")).to_contain_text("model time")
        expect(page.locator("#answer textarea")).to_have_value(
            "#1: turquoise Volkswagen Beetle\n#2: turquoise Volkswagen Beetle"
        )
        assert "/file=" in ui.result_src() or ui.result_src().startswith("data:")
        ui.expect_review_rows(2)
        ui.shot("e2e-01-region-description.png")

        # review: edit a label, accept one, reject the other
        ui.edit_label(0, "launch tower")
        ui.set_status(0, "#accept-ticked", "accepted")
        ui.set_status(1, "#reject-ticked", "rejected")
        expect(ui.cell(0, 4)).to_contain_text("launch tower")
        expect(page.locator("#review-summary")).to_contain_text("1 accepted")
        expect(page.locator("#review-summary")).to_contain_text("1 rejected")

        # a whole-image task adds its regions; the accepted one stays (drawn distinctly)
        ui.choose_task("Object detection")
        ui.run()
        ui.expect_review_rows(6)
        expect(page.locator("#answer textarea")).to_have_value("4 regions: car, door, wheel ×2")
        expect(ui.cell(0, 2)).to_contain_text("accepted")
        expect(ui.cell(2, 2)).to_contain_text("pending")
        ui.shot("ui-overview.png")

        # teaching view: exact prompt, token count, raw text with <loc_N>, bins → pixels, the grid
        ui.open_tab("Teaching view")
        teach = page.locator("#teach-md")
        expect(teach).to_contain_text("<OD>")
        expect(teach).to_contain_text("Locate the objects with category name in the image.")
        expect(teach).to_contain_text("image +")
        expect(page.locator("#teach-tokens")).to_contain_text("<loc_53>")
        expect(page.locator("#teach-bins")).to_contain_text("(53 + 0.5) × 640 / 1000")
        before = ui.result_src()
        page.locator("#grid-toggle input").check()
        page.wait_for_function(
            "b => (document.querySelector('#result-image img') || {}).src !== b", arg=before, timeout=15_000
        )
        ui.shot("e2e-02-teaching-view.png")


def test_region_numbers_stay_with_their_boxes_after_review(recorded_app, artifacts_dir):
    """Reject box #1's answer: the others keep "#2" / "#3" and their own brackets; "Accepted only" shows box #3 as
    #3. Read from the result image's alt text, which lists the labels drawn on it (the same marks)."""
    with chromium_page(1400, 1000) as page:
        ui = UiDriver(page, recorded_app).open()
        ui.upload(EXAMPLES / "rocket.jpg")
        for left in (0.04, 0.36, 0.68):
            ui.draw_box(left, 0.2, left + 0.28, 0.8)
        ui.choose_task("Region to segmentation")
        ui.run()
        ui.expect_review_rows(3)
        picture = page.locator("#result-image img").first
        expect(picture).to_have_attribute("alt", re.compile(r"3 regions drawn: #1 [^;]*; #2 [^;]*; #3 [^;]*$"))
        for row in range(3):
            expect(ui.cell(row, 3)).to_contain_text(f"Region to segmentation · box #{row + 1}")

        ui.set_status(0, "#reject-ticked", "rejected")
        expect(picture).to_have_attribute("alt", re.compile(r"2 regions drawn: #2 [^;]*; #3 [^;]*$"))
        page.locator("#show-mode").get_by_label("Everything not rejected").check()
        expect(picture).to_have_attribute("alt", re.compile(r"2 regions drawn: #2 [^;]*; #3 [^;]*$"))
        page.locator("#result-image").screenshot(path=str(artifacts_dir / "e2e-04-box-1-rejected.png"))

        ui.set_status(2, "#accept-ticked", "accepted")
        page.locator("#show-mode").get_by_label("Accepted only").check()
        expect(picture).to_have_attribute("alt", re.compile(r"1 region drawn: ✓ #3 [^;]*$"))
        page.locator("#result-image").screenshot(path=str(artifacts_dir / "e2e-05-accepted-only.png"))
        expect(ui.cell(2, 3)).to_contain_text("box #3")


def test_bad_input_warns_and_keeps_the_session(recorded_app, artifacts_dir, tmp_path):
    with chromium_page(1300, 900) as page:
        ui = UiDriver(page, recorded_app, artifacts_dir).open()
        ui.run_expecting_warning("No image yet")

        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
        page.locator("#input-image input[type=file]").set_input_files(str(broken))
        expect(page.locator("#status")).to_contain_text("cannot", timeout=15_000)

        ui.pick_example(1)
        ui.choose_task("Region to category")
        ui.run_expecting_warning("needs at least one box")
        ui.choose_task("Open-vocabulary detection")
        ui.run_expecting_warning("needs a text prompt")
        ui.shot("e2e-03-warnings.png")

        # the session survived every refusal: a valid run still works
        page.locator("#text-prompt textarea").fill("a green car")
        ui.run()
        ui.expect_review_rows(1)
        expect(ui.cell(0, 4)).to_contain_text("a green car")


def test_caption_then_ground_cascade(recorded_app, recorded_engine):
    with chromium_page(1300, 900) as page:
        ui = UiDriver(page, recorded_app).open()
        ui.pick_example(0)
        ui.run(button="#caption-ground", runs=2)
        assert [c["task"] for c in recorded_engine.calls[-2:]] == ["<CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>"]
        assert recorded_engine.calls[-1]["text"] == "A green car parked in front of a yellow building."
        expect(page.locator("#text-prompt textarea")).to_have_value("A green car parked in front of a yellow building.")
        expect(page.locator("#task-help")).to_contain_text("Phrase grounding")
        # caption (image-level text) + two grounded phrases
        ui.expect_review_rows(3)
        expect(page.locator("#status")).to_contain_text("Caption → Phrase grounding")


def test_two_browser_sessions_do_not_share_boxes_or_reviews(recorded_app):
    with chromium_page(1300, 900) as page:
        first = UiDriver(page, recorded_app).open()
        first.pick_example(0)
        first.draw_box(0.1, 0.1, 0.5, 0.5)
        first.run()
        other_context = page.context.browser.new_context(viewport={"width": 1300, "height": 900})
        try:
            second = UiDriver(other_context.new_page(), recorded_app).open()
            second.expect_boxes(0)
            second.expect_review_rows(0)
            second.pick_example(2)
            second.choose_task("Dense region captions")
            second.run()
            second.expect_review_rows(3)
        finally:
            other_context.close()
        # the first session still has its own box and its one-run review
        first.expect_boxes(1)
        page.locator("#clear-boxes").click()
        expect(page.locator("#box-hint")).to_contain_text("No boxes yet")
        expect(page.locator("#review-summary")).to_contain_text("from 1 run on this image")
