"""A first-time visitor's page (issue 18): a result in two clicks, without scrolling, at laptop and phone sizes.

At 1366×900 the examples, the task, Run and the result picture are all in the window when the page opens,
and stay there after "pick an example → Run"; at 390×844 the page stacks into one column and the same two
clicks work. A warning toast never covers Run, the result picture has no label badge over its top, and the
teaching view sits right under the picture it explains. Each viewport's screenshot is the README's
(docs/screenshots/first-impression-*.png).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import chromium_page
from playwright.sync_api import expect
from ui_driver import UiDriver

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORTS = {"desktop": (1366, 900), "mobile": (390, 844)}

#: every open toast's rectangle and the Run button's, and whether any toast intersects Run
TOAST_OVER_RUN_JS = """
() => {
  const r = document.querySelector('#run').getBoundingClientRect();
  const toasts = [...document.querySelectorAll('.toast-body')].map((t) => t.getBoundingClientRect());
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  return {toasts: toasts.length, run: [r.left, r.top, r.right, r.bottom],
          over: toasts.filter((t) => hit(t, r)).map((t) => [t.left, t.top, t.right, t.bottom])};
}
"""


@pytest.mark.parametrize("view", list(VIEWPORTS))
def test_a_warning_toast_never_covers_run(view, recorded_app):
    with chromium_page(*VIEWPORTS[view]) as page:
        ui = UiDriver(page, recorded_app).open()
        page.locator("#run").click()  # no image yet: a warning toast
        ui.expect_toast("No image yet")
        found = page.evaluate(TOAST_OVER_RUN_JS)
        assert found["toasts"] >= 1 and found["over"] == [], found
        expect(page.locator("#run")).to_be_in_viewport()


@pytest.mark.parametrize("view", list(VIEWPORTS))
def test_two_clicks_to_a_result(view, recorded_app, recorded_engine):
    width, height = VIEWPORTS[view]
    with chromium_page(width, height) as page:
        ui = UiDriver(page, recorded_app).open()
        expect(page.locator("#header")).to_contain_text("Pick an example")
        # the model's details moved to the info line (still on the page)
        expect(page.locator("#model-info")).to_contain_text(recorded_engine.model_id)
        expect(page.locator("#model-info")).to_contain_text("beams")
        examples = page.locator("#examples .gallery-item")
        expect(examples.first).to_be_in_viewport()
        if view == "desktop":  # everything a first visit needs is above the fold
            for selector in ("#examples", "#task", "#run", "#result-image"):
                expect(page.locator(selector)).to_be_in_viewport(ratio=1)
        # no label badge over the top of the result picture (it hid the top of a short image)
        expect(page.locator("#result-image [data-testid='block-label']")).to_be_hidden()

        examples.first.click()  # click 1
        expect(page.locator("#box-hint")).to_contain_text("No boxes yet")
        page.locator("#run").click()  # click 2
        expect(page.locator("#review-summary")).to_contain_text("from 1 run", timeout=30_000)
        picture = page.locator("#result-image img").first
        expect(picture).to_have_attribute(
            "alt", "Result image, 4 regions drawn: car 0.91; door 0.62; wheel 0.48; wheel 0.83"
        )
        expect(page.locator("#status")).to_contain_text("model time")
        if view == "desktop":
            expect(picture).to_be_in_viewport(ratio=1)  # the visitor never scrolled
            expect(page.locator("#run")).to_be_in_viewport(ratio=1)
        else:  # one column: the picture is below the input, reached by scrolling
            picture.scroll_into_view_if_needed()
            expect(picture).to_be_in_viewport()

        # the teaching view is one tab away, right under the picture it explains
        ui.open_tab("Teaching view")
        expect(page.locator("#teach-beside #teach-md")).to_contain_text("<OD>")
        gap = page.evaluate(
            "() => document.querySelector('#teach-beside').getBoundingClientRect().top"
            " - document.querySelector('#result-image').getBoundingClientRect().bottom"
        )
        assert 0 <= gap < 400, gap  # was ~900 px: a page away
        page.locator("#result-tabs").get_by_role("tab", name="Answer").click()
        page.evaluate("() => window.scrollTo(0, 0)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.mouse.move(2, 2)
        page.screenshot(path=str(SCREENSHOTS / f"first-impression-{view}.png"))


def test_the_page_defaults_are_shown_in_the_settings(recorded_app):
    """The sliders start at the page's defaults (greedy on CPU, see Controller.page_settings) and say so."""
    with chromium_page(*VIEWPORTS["desktop"]) as page:
        UiDriver(page, recorded_app).open()
        page.locator("#settings").get_by_text("Generation settings").click()
        expect(page.locator("#beams input[type=number]")).to_have_value("1")
        expect(page.locator("#model-info")).to_contain_text("beams 1")
