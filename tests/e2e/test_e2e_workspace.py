"""The Workspace tab in Debian chromium against the real app process: a labeller's decisions are data.

A workspace is made from the real published answers (golden results.jsonl, imported: no model run), then a
person reviews it in the page: rejects, relabels, moves a box by dragging it, draws a new one, uploads a third
photo, accepts with the keyboard. Every decision is then looked for after a reload, after the server process
is restarted, in a second browser, in the workspace file itself and in a COCO export read by pycocotools.
Waits are conditions (``expect``), never sleeps before a click.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS
from launched_app import launch_app
from playwright.sync_api import Page, expect, sync_playwright
from sample_data import write_golden_jsonl

from florence_ui.batch.results_file import load_parser
from florence_ui.core.review import ReviewStatus
from florence_ui.workspace import Workspace

NAME = "street"
#: screenshots for the README's labeller section (written when FLORENCE_UI_SCREENSHOTS names a folder)
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ROCKET = Path(__file__).resolve().parents[2] / "florence_ui" / "examples" / "rocket.jpg"


@pytest.fixture
def data_dir(tmp_path, golden, tiny_checkpoint) -> Path:
    """A data folder holding workspace "street": two photos with the golden OD / open-vocabulary answers."""
    data = tmp_path / "data"
    jsonl = write_golden_jsonl(golden, tmp_path / "golden", tasks=("<OD>", "<OPEN_VOCABULARY_DETECTION>"))
    with Workspace.open(NAME, data) as ws:
        report = ws.import_results(jsonl, parser=load_parser(str(tiny_checkpoint)))
        assert report.runs_added and report.images_added == 2, report.summary()
    return data


@pytest.fixture
def app(tiny_checkpoint, data_dir, tmp_path):
    started = launch_app(tiny_checkpoint, tmp_path / "app", {"FLORENCE_UI_DATA": str(data_dir)})
    yield started
    started.stop()


def _browser(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def open_workspace(page: Page, url: str, *, link: bool = True) -> None:
    page.goto(url + (f"?workspace={NAME}" if link else ""))  # a workspace link opens the Workspace tab
    expect(page.locator("#ws-progress")).to_contain_text(NAME, timeout=30_000)
    expect(page.locator("#ws-cards .ws-card").first).to_be_visible(timeout=30_000)


def card(page: Page, region_id: int):
    return page.locator(f'#ws-cards .ws-card[data-region="{region_id}"]')


def stored(data_dir: Path) -> Workspace:
    return Workspace.open(NAME, data_dir)


def canvas_point(page: Page, size: tuple[int, int], x: float, y: float) -> tuple[float, float]:
    """Where image pixel (x, y) is on screen in the box editor (the image fitted to its canvas)."""
    box = page.locator("#ws-editor canvas").first.bounding_box()
    w, h = size
    s = min(box["width"] / w, box["height"] / h)
    return box["x"] + (box["width"] - w * s) / 2 + x * s, box["y"] + (box["height"] - h * s) / 2 + y * s


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    for i in range(1, 6):
        page.mouse.move(start[0] + (end[0] - start[0]) * i / 5, start[1] + (end[1] - start[1]) * i / 5)
    page.mouse.up()


def draw_box(page: Page, size: tuple[int, int], start: tuple[float, float], end: tuple[float, float]) -> None:
    """Create box (C), drag from ``start`` to ``end`` (fractions of the image), keep the label offered (OK)."""
    page.locator("#ws-editor canvas").first.click(position={"x": 2, "y": 2})
    page.keyboard.press("c")
    drag(page, canvas_point(page, size, size[0] * start[0], size[1] * start[1]),
         canvas_point(page, size, size[0] * end[0], size[1] * end[1]))  # fmt: skip
    ok = page.get_by_role("button", name="OK")
    expect(ok).to_be_visible(timeout=10_000)
    ok.click()


def current_image(data_dir: Path, page: Page) -> int:
    return int(page.locator("#ws-cards .ws-cards").get_attribute("data-image"))


def shot(page: Page, name: str) -> None:
    import os

    if os.environ.get("FLORENCE_UI_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("#mode-workspace").screenshot(path=str(SHOTS / f"{name}.png"))  # the tab, not the header


def test_a_labellers_decisions_survive_reload_restart_and_reach_coco(app, data_dir, tiny_checkpoint, tmp_path):
    with sync_playwright() as pw:
        browser = _browser(pw)
        context = browser.new_context(viewport={"width": 1366, "height": 1000})
        page = context.new_page()
        open_workspace(page, app.url)
        shot(page, "workspace-review")
        first = current_image(data_dir, page)
        with stored(data_dir) as ws:
            regions = ws.regions(first)
            size = (ws.image(first).width, ws.image(first).height)
        assert len(regions) >= 3
        rejected, relabelled, moved = regions[0], regions[1], regions[2]

        # reject one with its card's button
        card(page, rejected.id).locator("button[data-act=reject]").click()
        expect(card(page, rejected.id)).to_have_class(lambda_class("ws-rejected"))
        # relabel one from the label set (a class another region has)
        with stored(data_dir) as ws:
            other = next(c for c in ws.class_names() if c != relabelled.label)
        card(page, relabelled.id).locator("select[data-act=relabel]").select_option(other)
        expect(card(page, relabelled.id).locator(".ws-label")).to_have_text(other)
        # move one by dragging its box on the image (the editor starts in drag mode)
        x1, y1, x2, y2 = moved.xyxy
        inside = (x1 + (x2 - x1) * 0.5, y1 + (y2 - y1) * 0.5)
        start = canvas_point(page, size, *inside)
        drag(page, start, (start[0] + 25, start[1] + 15))
        expect(page.locator("#ws-status")).to_contain_text("moved", timeout=15_000)
        with stored(data_dir) as ws:
            after_move = ws.region(moved.id).xyxy
        assert after_move[0] > x1 + 5 and after_move[1] > y1 + 2, (moved.xyxy, after_move)
        assert after_move[2] - after_move[0] == pytest.approx(x2 - x1, abs=1.5)  # moved, not resized

        # reload mid-way: the link reopens the workspace and every decision is shown from the file
        page.reload()
        open_workspace(page, app.url)
        expect(card(page, rejected.id)).to_have_class(lambda_class("ws-rejected"))
        expect(card(page, relabelled.id).locator(".ws-label")).to_have_text(other)

        # the rest of this image with the keyboard: Shift+A accepts every pending region
        page.locator("body").press("Shift+A")
        expect(page.locator("#ws-status")).to_contain_text("Accepted", timeout=15_000)
        expect(page.locator("#ws-cards .ws-card.ws-pending")).to_have_count(0)
        # next image: draw a box the model missed (Create box, drag, pick a class in the editor's dialog)
        page.locator("body").press("n")
        expect(page.locator("#ws-cards .ws-cards")).not_to_have_attribute("data-image", str(first), timeout=15_000)
        second = current_image(data_dir, page)
        with stored(data_dir) as ws:
            size2 = (ws.image(second).width, ws.image(second).height)
            before = {r.id for r in ws.regions(second)}
        draw_box(page, size2, (0.05, 0.05), (0.25, 0.3))
        expect(page.locator("#ws-status")).to_contain_text("added", timeout=15_000)
        with stored(data_dir) as ws:
            added = [r for r in ws.regions(second) if r.id not in before]
        assert len(added) == 1 and added[0].hand_drawn and added[0].status == ReviewStatus.ACCEPTED
        assert added[0].xyxy[2] - added[0].xyxy[0] == pytest.approx(size2[0] * 0.2, rel=0.15)
        page.locator("body").press("Shift+A")
        expect(page.locator("#ws-cards .ws-card.ws-pending")).to_have_count(0, timeout=15_000)
        shot(page, "workspace-drawn-box")

        # a third photo, uploaded in the page: it has no run, so the only region is the one drawn on it
        page.get_by_text("Add images").click()
        page.locator("#ws-upload input[type=file]").set_input_files(str(ROCKET))
        expect(page.locator("#ws-status")).to_contain_text("added", timeout=30_000)
        expect(page.locator("#ws-progress")).to_contain_text("2 / 3 reviewed", timeout=15_000)
        page.locator("body").press("n")
        expect(page.locator("#ws-cards")).to_contain_text("No regions on this image yet", timeout=15_000)
        with stored(data_dir) as ws:
            third = ws.images()[-1]
        draw_box(page, (third.width, third.height), (0.3, 0.2), (0.7, 0.9))
        expect(page.locator("#ws-status")).to_contain_text("added", timeout=15_000)
        expect(page.locator("#ws-progress")).to_contain_text("3 / 3 reviewed", timeout=15_000)
        context.close()

        # restart the server process: a new browser finds every decision
        app.stop()
        again = launch_app(tiny_checkpoint, tmp_path / "app2", {"FLORENCE_UI_DATA": str(data_dir)})
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 1000}).new_page()
            open_workspace(page, again.url)
            expect(page.locator("#ws-progress")).to_contain_text("3 / 3 reviewed")
            page.locator("#ws-queue").locator(f'[data-image="{first}"]').click()
            expect(page.locator("#ws-cards .ws-cards")).to_have_attribute("data-image", str(first), timeout=15_000)
            expect(card(page, rejected.id)).to_have_class(lambda_class("ws-rejected"))
            expect(card(page, relabelled.id).locator(".ws-label")).to_have_text(other)
            # the whole workspace as COCO, from the page
            page.get_by_text("Export the dataset").click()
            page.locator("#ws-export-coco").click()
            link = page.locator("#ws-files a").first
            expect(link).to_be_visible(timeout=30_000)
            href = link.get_attribute("href")
        finally:
            again.stop()
        browser.close()
    assert href and href.endswith(".zip")

    # the file itself holds the decisions, and the exporter writes them with the label set's class ids
    with stored(data_dir) as ws:
        assert ws.region(rejected.id).status == ReviewStatus.REJECTED
        assert ws.region(relabelled.id).label == other
        assert ws.region(moved.id).xyxy == pytest.approx(after_move)
        classes = ws.class_names()
        from florence_ui.export.datasets import export_coco

        out = export_coco(ws.labeled_images(), tmp_path / "coco", classes=classes)
    from pycocotools.coco import COCO

    coco = COCO(str(out))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert [names[k] for k in sorted(names)] == classes[: len(names)]
    boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds())]
    mx1, my1, mx2, my2 = after_move
    assert any(b == pytest.approx([mx1, my1, mx2 - mx1, my2 - my1], abs=0.6) for b in boxes), boxes
    assert len(coco.getImgIds()) == 3
    assert sum(a["image_id"] == max(coco.getImgIds()) for a in coco.loadAnns(coco.getAnnIds())) >= 1


def lambda_class(name: str) -> re.Pattern:
    """A class attribute holding ``name`` (expect's to_have_class matches the whole attribute otherwise)."""
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def test_keyboard_drives_a_whole_image_review_and_undo_redo(app, data_dir):
    with sync_playwright() as pw:
        browser = _browser(pw)
        page = browser.new_context(viewport={"width": 1366, "height": 1000}).new_page()
        open_workspace(page, app.url)
        image = current_image(data_dir, page)
        with stored(data_dir) as ws:
            ids = [r.id for r in ws.regions(image)]
        body = page.locator("body")
        body.press("j")  # selects the first pending region
        expect(card(page, ids[0])).to_have_class(lambda_class("ws-selected"))
        body.press("x")  # rejects it; the next pending one is selected
        expect(card(page, ids[0])).to_have_class(lambda_class("ws-rejected"))
        expect(card(page, ids[1])).to_have_class(lambda_class("ws-selected"))
        for region_id in ids[1:]:
            expect(card(page, region_id)).to_have_class(lambda_class("ws-selected"))
            body.press("a")
            expect(card(page, region_id)).to_have_class(lambda_class("ws-accepted"))
        body.press("u")  # undo the last accept
        expect(card(page, ids[-1])).to_have_class(lambda_class("ws-pending"))
        body.press("Control+Shift+Z")  # and redo it
        expect(card(page, ids[-1])).to_have_class(lambda_class("ws-accepted"))
        expect(page.locator("#ws-progress")).to_contain_text("1 / 2 reviewed")
        body.press("n")
        expect(page.locator("#ws-cards .ws-cards")).not_to_have_attribute("data-image", str(image))
        body.press("p")
        expect(page.locator("#ws-cards .ws-cards")).to_have_attribute("data-image", str(image))
        # a click on a box in the image selects its card (the smallest box under the pointer), and A acts on it
        with stored(data_dir) as ws:
            size = (ws.image(image).width, ws.image(image).height)
            smallest = min(ws.regions(image), key=lambda r: (r.xyxy[2] - r.xyxy[0]) * (r.xyxy[3] - r.xyxy[1]))
        card(page, smallest.id).locator("button[data-act=pending]").click()  # back to pending, so A has work
        expect(card(page, smallest.id)).to_have_class(lambda_class("ws-pending"))
        body.press("j")  # the selection moves away from it first
        expect(card(page, smallest.id)).not_to_have_class(lambda_class("ws-selected"))
        x1, y1, x2, y2 = smallest.xyxy
        page.mouse.click(*canvas_point(page, size, (x1 + x2) / 2, (y1 + y2) / 2))
        expect(card(page, smallest.id)).to_have_class(lambda_class("ws-selected"))
        body.press("a")
        expect(card(page, smallest.id)).to_have_class(lambda_class("ws-accepted"))
        browser.close()
    with stored(data_dir) as ws:
        statuses = [ws.region(i).status for i in ids]
    assert statuses == [ReviewStatus.REJECTED] + [ReviewStatus.ACCEPTED] * (len(ids) - 1)


def test_two_browsers_on_one_workspace_see_each_other_and_a_stale_edit_is_refused(app, data_dir):
    with sync_playwright() as pw:
        browser = _browser(pw)
        one = browser.new_context(viewport={"width": 1366, "height": 1000}).new_page()
        two = browser.new_context(viewport={"width": 1366, "height": 1000}).new_page()
        open_workspace(one, app.url)
        open_workspace(two, app.url)
        image = current_image(data_dir, one)
        with stored(data_dir) as ws:
            region = ws.regions(image)[0]
        # the second browser's card still carries the version it was drawn with
        stale_accept = card(two, region.id).locator("button[data-act=accept]")
        expect(stale_accept).to_be_visible()
        card(one, region.id).locator("button[data-act=reject]").click()
        expect(card(one, region.id)).to_have_class(lambda_class("ws-rejected"))
        # the second browser clicks before its page has caught up: refused, naming the change
        two.evaluate(
            """([id, v]) => {
                const b = document.querySelector(`#ws-cards button[data-act=accept][data-region="${id}"]`);
                b.dataset.version = String(v); b.click(); }""",
            [region.id, region.version],
        )
        expect(two.locator("#ws-status")).to_contain_text("changed by someone else", timeout=15_000)
        expect(two.locator("#ws-status")).to_contain_text("rejected")
        expect(card(two, region.id)).to_have_class(lambda_class("ws-rejected"))  # redrawn from the file
        # and a change in one shows up in the other without any action there (the page polls the file)
        other = ws_regions(data_dir, image)[1]
        card(one, other.id).locator("button[data-act=accept]").click()
        expect(card(two, other.id)).to_have_class(lambda_class("ws-accepted"), timeout=20_000)
        browser.close()
    with stored(data_dir) as ws:
        assert ws.region(region.id).status == ReviewStatus.REJECTED  # the stale accept changed nothing


def ws_regions(data_dir: Path, image: int):
    with stored(data_dir) as ws:
        return ws.regions(image)


def test_a_phone_reviews_with_cards_and_nothing_scrolls_sideways(app, data_dir):
    with sync_playwright() as pw:
        browser = _browser(pw)
        page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
        open_workspace(page, app.url)
        cards = page.locator("#ws-cards .ws-card")
        first = cards.first
        box = first.bounding_box()
        assert box["width"] <= 390 and box["x"] >= 0
        first.locator("button[data-act=accept]").tap()
        expect(first).to_have_class(lambda_class("ws-accepted"))
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"the page scrolls {overflow} px sideways at 390 px"
        shot(page, "workspace-phone")
        browser.close()


def test_the_api_opens_a_workspace_and_reviews_it_the_same_after_a_restart(app, data_dir, tiny_checkpoint, tmp_path):
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    summary = client.predict(NAME, api_name="/workspace_open")
    assert summary["images"] == 2 and summary["label_set"]
    review = client.predict(api_name="/review")
    assert review["workspace"] == NAME and review["items"]
    target = review["items"][0]["id"]
    after = client.predict(json.dumps([target]), "rejected", api_name="/review_update")
    assert next(i for i in after["items"] if i["id"] == target)["status"] == "rejected"
    relabel = client.predict(review["items"][1]["id"], "vehicle", api_name="/review_relabel")
    assert next(i for i in relabel["items"] if i["id"] == review["items"][1]["id"])["label"] == "vehicle"
    app.stop()
    again = launch_app(tiny_checkpoint, tmp_path / "app2", {"FLORENCE_UI_DATA": str(data_dir)})
    try:
        client = Client(again.url, verbose=False)
        client.predict(NAME, api_name="/workspace_open")
        restarted = client.predict(api_name="/review")
    finally:
        again.stop()
    assert restarted["image"] == relabel["image"]
    assert {i["id"]: (i["status"], i["label"]) for i in restarted["items"]} == {
        i["id"]: (i["status"], i["label"]) for i in relabel["items"]
    }
