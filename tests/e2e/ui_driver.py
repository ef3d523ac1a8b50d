"""A small Playwright driver for the florence-ui page (selectors live here, not in the tests).

The page's elements carry stable ``elem_id``s (``#run``, ``#task``,
``#review-table`` …); the image annotator draws on a ``<canvas>`` and has a
"Create box" button; Gradio's dataframe renders cells as
``[data-testid="cell-ROW-COL"]``. Every action waits for the server's answer
to show up before returning, so tests read like a person using the page.

Waits are Playwright conditions (``expect``, ``wait_for``), never a check
followed by an action: the page changes between the two (a toast that closes
itself between ``is_visible()`` and ``click()`` made a test flaky).
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

TIMEOUT = 30_000
REVIEW = "#review-table"
BOX_ROWS = "#box-table [data-testid^='cell-'][data-testid$='-0']"
REVIEW_ROWS = f'{REVIEW} [data-testid^="cell-"][data-testid$="-1"]'


class UiDriver:
    def __init__(self, page: Page, url: str, artifacts: Path | None = None) -> None:
        self.page, self.url, self.artifacts = page, url, artifacts
        page.set_default_timeout(TIMEOUT)

    # ---- page ---------------------------------------------------------------------------
    def open(self) -> UiDriver:
        self.page.goto(self.url)
        self.page.wait_for_selector("#run")
        return self

    def shot(self, name: str, full_page: bool = True) -> Path | None:
        if self.artifacts is None:
            return None
        path = self.artifacts / name
        self.page.mouse.move(2, 2)  # no hover highlight in the picture
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.inner_text()

    # ---- image and boxes ------------------------------------------------------------------
    def upload(self, path: Path | str) -> None:
        self.page.locator("#input-image input[type=file]").set_input_files(str(path))
        self.page.wait_for_selector("#input-image canvas")
        expect(self.page.locator("#box-hint")).to_contain_text("No boxes yet")

    def pick_example(self, index: int = 0) -> None:
        self.page.locator("#examples .gallery-item").nth(index).click()
        self.page.wait_for_selector("#input-image canvas")
        expect(self.page.locator("#box-hint")).to_contain_text("No boxes yet")

    def draw_box(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """Drag a box with the mouse; corners are fractions (0..1) of the drawn image's canvas."""
        before = self.box_count()
        self.page.locator('#input-image button[aria-label="Create box"]').click()
        box = self.page.locator("#input-image canvas").bounding_box()
        assert box is not None
        ax, ay = box["x"] + x1 * box["width"], box["y"] + y1 * box["height"]
        bx, by = box["x"] + x2 * box["width"], box["y"] + y2 * box["height"]
        self.page.mouse.move(ax, ay)
        self.page.mouse.down()
        self.page.mouse.move((ax + bx) / 2, (ay + by) / 2, steps=6)
        self.page.mouse.move(bx, by, steps=6)
        self.page.mouse.up()
        self.expect_boxes(before + 1)

    def box_count(self) -> int:
        """The box table's rows now (settled: every driver action waits for its own result)."""
        return self.page.locator(BOX_ROWS).count()

    def expect_boxes(self, count: int) -> None:
        expect(self.page.locator(BOX_ROWS)).to_have_count(count)

    # ---- tasks ----------------------------------------------------------------------------
    def choose_task(self, name: str) -> None:
        self.page.locator("#task input").click()
        self.page.get_by_role("option", name=re.compile(rf"^{re.escape(name)} —")).click()
        expect(self.page.locator("#task-help")).to_contain_text(name)

    def runs(self) -> int:
        match = re.search(r"from (\d+) run", self.text("#review-summary"))
        return int(match.group(1)) if match else 0

    def run(self, button: str = "#run", runs: int = 1) -> None:
        """Press Run (or another model button) and wait until the review counts the new run(s)."""
        before = self.runs()
        self.dismiss_toasts()
        self.page.locator(button).click()
        # a model call: the page's timeout, not expect's 5 s default (a first run on a busy CPU takes longer)
        expect(self.page.locator("#review-summary")).to_contain_text(f"from {before + runs} run", timeout=TIMEOUT)

    def run_expecting_warning(self, fragment: str) -> None:
        """Press Run; the refusal shows in the status line and as a warning toast (closed again)."""
        self.dismiss_toasts()
        self.page.locator("#run").click()
        expect(self.page.locator("#status")).to_contain_text(fragment)
        self.expect_toast(fragment)
        self.dismiss_toasts()

    def expect_toast(self, fragment: str) -> None:
        """A toast saying ``fragment`` is shown (whichever of the open toasts it is)."""
        expect(self.page.locator(".toast-body", has_text=fragment).first).to_be_visible()

    def dismiss_toasts(self) -> None:
        """Close the toasts: they sit over the top-right of the page (and its Run button).

        Toasts close themselves after a few seconds, so a close button found
        now may be gone a moment later; the page clicks every close button it
        has in one step (nothing to race), then the driver waits until no toast
        is left.
        """
        self.page.evaluate("() => document.querySelectorAll('.toast-close').forEach((button) => button.click())")
        expect(self.page.locator(".toast-body")).to_have_count(0)

    # ---- review table -------------------------------------------------------------------------
    def cell(self, row: int, col: int):
        return self.page.locator(f'{REVIEW} [data-testid="cell-{row}-{col}"]')

    def review_rows(self) -> int:
        """The review table's rows now (settled: every driver action waits for its own result)."""
        return self.page.locator(REVIEW_ROWS).count()

    def expect_review_rows(self, count: int) -> None:
        expect(self.page.locator(REVIEW_ROWS)).to_have_count(count)

    def edit_label(self, row: int, label: str) -> None:
        self.cell(row, 4).dblclick()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(label)
        self.page.keyboard.press("Enter")
        expect(self.cell(row, 4)).to_contain_text(label)

    def tick(self, row: int) -> None:
        self.cell(row, 0).locator("input[type=checkbox]").check()

    def set_status(self, row: int, button: str, expected: str) -> None:
        self.tick(row)
        self.page.locator(button).click()
        expect(self.cell(row, 2)).to_contain_text(expected)

    def open_tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()

    def result_src(self) -> str:
        return self.page.locator("#result-image img").first.get_attribute("src") or ""
