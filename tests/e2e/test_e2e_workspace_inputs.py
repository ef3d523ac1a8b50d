"""The Workspace tab's ways in, in Debian chromium against the real app process: names, photos, folders, files.

Each test opens its own workspace (typed into the "Workspace" box) in one app process whose data folder
(``FLORENCE_UI_DATA``) and folder root (``FLORENCE_UI_FOLDER_ROOT``) are temporary folders, and checks what
the page says and what the workspace file holds: a new name creates its file and a bad one is refused with
the store's sentence; uploaded photos, a server folder and a results.jsonl become queue entries (the same
bytes twice are one image; a folder outside the root adds nothing); a model run and "Detect the label set"
leave regions to review; a damaged file is named and the page goes on; an unsaved label-set edit makes
leaving ask first; the queue filters decide what next / previous walk. The model is the tiny random
Florence-2, so its answers are noise: the tests assert sentences and rules, not counts. Waits are
conditions (``expect``), never sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS
from launched_app import launch_app
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sample_data import write_golden_jsonl

from florence_ui.workspace import ImageStatus, Workspace

pytestmark = pytest.mark.e2e

#: a model call on a busy CPU takes longer than expect's 5 s default
SLOW = 60_000
TAB = "Workspace: review a dataset"
BOX_TASKS = ("<OD>", "<OPEN_VOCABULARY_DETECTION>")


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_checkpoint) -> Iterator[SimpleNamespace]:
    """One app process over a temp data folder (holding a damaged ``broken`` workspace) and a temp folder root."""
    base = tmp_path_factory.mktemp("ws-inputs")
    data, root, outside = base / "data", base / "root", base / "outside"
    (data / "workspaces").mkdir(parents=True)
    root.mkdir()
    outside.mkdir()
    # a damaged workspace file is there before the app starts: the app must start all the same
    (data / "workspaces" / "broken.sqlite3").write_bytes(b"this is not an SQLite database\x00\xff" * 300)
    app = launch_app(
        tiny_checkpoint, base / "app", {"FLORENCE_UI_DATA": str(data), "FLORENCE_UI_FOLDER_ROOT": str(root)}
    )
    try:
        yield SimpleNamespace(app=app, url=app.url, data=data, root=root, outside=outside, base=base)
    finally:
        app.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, site) -> Iterator[Page]:
    """A fresh browser (no remembered workspace) on the Workspace tab."""
    context = browser.new_context(viewport={"width": 1366, "height": 1000})
    tab = context.new_page()
    tab.goto(site.url)
    tab.get_by_role("tab", name=TAB).click()
    expect(tab.locator("#ws-name input")).to_be_visible(timeout=30_000)
    try:
        yield tab
    finally:
        context.close()


def photos(folder: Path, count: int, *, start: int = 0) -> list[Path]:
    """``count`` distinct real image files (JPEG and PNG alternately; different pixels, so different identities)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + count):
        image = Image.new("RGB", (160 + 8 * i, 120), (30 + 40 * i % 220, 200 - 30 * i % 200, 90))
        image.paste((250, 250, 250), (10 + 5 * i, 10, 60 + 5 * i, 50))
        path = folder / (f"photo{i}.jpg" if i % 2 else f"photo{i}.png")
        image.save(path)
        out.append(path)
    return out


def status(page: Page):
    return page.locator("#ws-status")


def thumbs(page: Page):
    return page.locator("#ws-queue .ws-thumb")


def current_thumb(page: Page):
    return page.locator("#ws-queue .ws-thumb.ws-current")


def type_name(page: Page, name: str) -> None:
    """Type a workspace name into the "Workspace" box (a custom value: Enter commits it) and press Open."""
    box = page.locator("#ws-name input")
    box.fill(name)
    box.press("Enter")
    page.locator("#ws-open").click()


def open_new(page: Page, name: str) -> None:
    type_name(page, name)
    expect(page.locator("#ws-progress")).to_contain_text(name, timeout=30_000)
    expect(status(page)).to_contain_text(f"Opened workspace {name}")


def open_section(page: Page, elem_id: str, title: str, inside: str) -> None:
    """Open one of the tab's accordions (closed at first) and wait for a control inside it."""
    page.locator(f"#{elem_id}").get_by_text(title, exact=True).first.click()
    expect(page.locator(inside)).to_be_visible()


def dismiss_toasts(page: Page) -> None:
    """Close every warning toast at once (they sit over the page's top right and close on their own)."""
    page.evaluate("() => document.querySelectorAll('.toast-close').forEach((button) => button.click())")
    expect(page.locator(".toast-body")).to_have_count(0)


def stored(site: SimpleNamespace, name: str) -> Workspace:
    return Workspace.open(name, site.data)


def choose_filter(page: Page, shown: str) -> None:
    page.locator("#ws-filter input").click()
    page.get_by_role("option", name=shown, exact=True).click()


# ---- names ---------------------------------------------------------------------------------------------
def test_a_typed_name_creates_its_workspace_and_a_bad_name_is_refused(page, site):
    type_name(page, "../x")
    expect(status(page)).to_contain_text("cannot be used", timeout=15_000)
    expect(status(page)).to_contain_text("letters, digits")
    assert not list(site.base.rglob("x.sqlite3")), "a refused name must create no file"
    dismiss_toasts(page)
    # the page goes on: a good name opens (creating it) in the same browser
    open_new(page, "fresh-one")
    assert (site.data / "workspaces" / "fresh-one.sqlite3").is_file()
    expect(page.locator("#ws-progress")).to_contain_text("no images yet")


def test_a_damaged_workspace_file_is_named_and_another_workspace_opens_afterwards(page, site):
    type_name(page, "broken")
    expect(status(page)).to_contain_text("broken.sqlite3", timeout=15_000)
    expect(status(page)).to_contain_text("not a usable workspace file")
    dismiss_toasts(page)
    open_new(page, "after-broken")
    assert (site.data / "workspaces" / "after-broken.sqlite3").is_file()
    # the damaged file is left as it was for its owner to move aside
    assert (site.data / "workspaces" / "broken.sqlite3").read_bytes().startswith(b"this is not an SQLite")


# ---- photos, folders, results files ------------------------------------------------------------------------
def test_three_photos_uploaded_at_once_queue_up_and_the_same_again_adds_nothing(page, site, tmp_path):
    open_new(page, "uploads")
    open_section(page, "ws-add-box", "Add images", "#ws-upload")
    files = photos(tmp_path / "up", 3)
    page.locator("#ws-upload input[type=file]").set_input_files([str(f) for f in files])
    expect(status(page)).to_contain_text("3 images: 3 added", timeout=30_000)
    expect(thumbs(page)).to_have_count(3)
    expect(page.locator("#ws-progress")).to_contain_text("0 / 3 reviewed")
    expect(page.locator("#ws-queue .ws-thumb img")).to_have_count(3)  # real thumbnails, not the missing mark
    # the same files again: one image per identity, so nothing is added and the status says so
    page.locator("#ws-upload input[type=file]").set_input_files([str(f) for f in files])
    expect(status(page)).to_contain_text(re.compile(r"(^|\s)0 added, [1-9]\d* already in the workspace"),
                                         timeout=30_000)  # fmt: skip
    expect(thumbs(page)).to_have_count(3)
    with stored(site, "uploads") as ws:
        assert sorted(s.name for s in ws.images()) == sorted(f.name for f in files)


def test_a_folder_under_the_root_is_added_sorted_and_one_outside_it_is_refused(page, site):
    folder = site.root / "shoot"
    # written in an order that is not the sorted one, with a note that is no image
    photos(folder / "sub", 1, start=0)[0].rename(folder / "sub" / "c.png")
    photos(folder, 1, start=1)[0].rename(folder / "b.jpg")
    photos(folder, 1, start=2)[0].rename(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    photos(site.outside, 1, start=5)
    escape = site.root / "escape"
    escape.symlink_to(site.outside, target_is_directory=True)

    open_new(page, "folders")
    open_section(page, "ws-add-box", "Add images", "#ws-folder")
    page.locator("#ws-folder textarea, #ws-folder input").first.fill(str(folder))
    page.locator("#ws-folder-add").click()
    expect(status(page)).to_contain_text("3 images: 3 added", timeout=30_000)
    expect(thumbs(page)).to_have_count(3)
    expect(page.locator("#ws-queue .ws-thumb-name")).to_have_text(["a.png", "b.jpg", "sub/c.png"])

    for refused in ("/etc", str(escape)):
        dismiss_toasts(page)
        page.locator("#ws-folder textarea, #ws-folder input").first.fill(refused)
        page.locator("#ws-folder-add").click()
        expect(status(page)).to_contain_text(f"The folder {refused} is outside", timeout=15_000)
        expect(thumbs(page)).to_have_count(3)
    with stored(site, "folders") as ws:
        assert [s.name for s in ws.images()] == ["a.png", "b.jpg", "sub/c.png"]


def test_an_imported_results_file_is_reviewable_without_a_model_run(page, site, golden, tmp_path):
    jsonl = write_golden_jsonl(golden, tmp_path / "golden", tasks=BOX_TASKS)
    open_new(page, "imported")
    open_section(page, "ws-add-box", "Add images", "#ws-results")
    page.locator("#ws-results input[type=file]").set_input_files(str(jsonl))
    expect(status(page)).to_contain_text("Imported:", timeout=30_000)
    expect(page.locator("#ws-cards .ws-card").first).to_be_visible()
    cards = page.locator("#ws-cards .ws-card")
    expect(page.locator("#ws-cards .ws-card.ws-pending")).to_have_count(cards.count())
    expect(thumbs(page)).to_have_count(2)
    image = int(page.locator("#ws-cards .ws-cards").get_attribute("data-image"))
    with stored(site, "imported") as ws:
        assert cards.count() == len(ws.regions(image)) > 0
        runs = [run for s in ws.images() for run in ws.runs(s.id)]
        # the runs are the published generations re-parsed, not answers of the app's tiny model
        assert runs and {run["model"] for run in runs} == {v["model"] for v in golden["vectors"]}


# ---- the model ---------------------------------------------------------------------------------------------
def test_a_task_run_and_detect_the_label_set_leave_regions_to_review(page, site, tmp_path):
    open_new(page, "model-runs")
    open_section(page, "ws-add-box", "Add images", "#ws-upload")
    page.locator("#ws-upload input[type=file]").set_input_files(str(photos(tmp_path / "one", 1)[0]))
    expect(status(page)).to_contain_text("1 images: 1 added", timeout=30_000)
    open_section(page, "ws-run-box", "Run Florence-2 on this image", "#ws-run")

    # no class yet: detection is refused before any model call, saying what to do
    page.locator("#ws-detect").click()
    expect(status(page)).to_contain_text("add the classes first", timeout=SLOW)
    dismiss_toasts(page)

    page.locator("#ws-run").click()
    expect(status(page)).to_contain_text(re.compile(r"\d+ region\(s\) to review\."), timeout=SLOW)

    open_section(page, "ws-labels-box", "Label set", "#ws-label-set")
    page.locator("#ws-label-set textarea").fill("car: automobile\nperson: man, woman")
    page.locator("#ws-save-labels").click()
    expect(status(page)).to_contain_text("Label set saved:", timeout=15_000)
    expect(status(page)).to_contain_text("car")
    page.locator("#ws-detect").click()
    expect(status(page)).to_contain_text(re.compile(r"Detected \d+ regions? \(.*\) on 1 image with .* of \d+ class"),
                                         timeout=SLOW)  # fmt: skip
    with stored(site, "model-runs") as ws:
        (image,) = ws.images()
        assert len(ws.runs(image.id)) >= 2  # the task's run and at least one detection run
        assert {"car", "person"} <= set(ws.class_names())


# ---- leaving, and the queue ---------------------------------------------------------------------------------
def test_leaving_with_an_unsaved_label_set_edit_asks_first(page, site):
    open_new(page, "dirty")
    open_section(page, "ws-labels-box", "Label set", "#ws-label-set")
    page.locator("#ws-label-set textarea").press_sequentially("car")
    page.wait_for_function("() => window.__wsDirty === true")
    seen: list[str] = []

    def on_dialog(dialog) -> None:
        seen.append(dialog.type)
        dialog.dismiss()  # stay on the page

    page.on("dialog", on_dialog)
    with page.expect_event("dialog") as asked:
        page.close(run_before_unload=True)
    assert asked.value.type == "beforeunload"
    assert not page.is_closed()
    # saved, the page may go without asking
    page.locator("#ws-save-labels").click()
    expect(status(page)).to_contain_text("Label set saved: car")
    page.wait_for_function("() => window.__wsDirty === false")
    with page.expect_event("close"):
        page.close(run_before_unload=True)
    assert seen == ["beforeunload"]


def test_queue_filters_choose_the_thumbnails_and_next_prev_walk_the_filtered_queue(page, site, golden, tmp_path):
    jsonl = write_golden_jsonl(golden, tmp_path / "golden", tasks=BOX_TASKS)
    open_new(page, "filters")
    open_section(page, "ws-add-box", "Add images", "#ws-results")
    page.locator("#ws-results input[type=file]").set_input_files(str(jsonl))
    expect(status(page)).to_contain_text("Imported:", timeout=30_000)
    page.locator("#ws-upload input[type=file]").set_input_files([str(f) for f in photos(tmp_path / "new", 2)])
    expect(status(page)).to_contain_text("2 images: 2 added", timeout=30_000)
    expect(thumbs(page)).to_have_count(4)
    first = page.locator("#ws-cards .ws-cards").get_attribute("data-image")
    page.locator("#ws-accept-all").click()
    expect(status(page)).to_contain_text("Accepted", timeout=15_000)
    expect(page.locator("#ws-progress")).to_contain_text("1 / 4 reviewed")
    with stored(site, "filters") as ws:
        pending = [str(s.id) for s in ws.images(has_pending=True)]
        reviewed = [str(s.id) for s in ws.images(status=ImageStatus.REVIEWED)]
        new = [str(s.id) for s in ws.images(status=ImageStatus.NEW)]
    assert reviewed == [first] and len(pending) == 1 and len(new) == 2

    def shown() -> list[str]:
        return [t.get_attribute("data-image") for t in thumbs(page).all()]

    choose_filter(page, "Has pending")
    expect(thumbs(page)).to_have_count(1)
    assert shown() == pending
    choose_filter(page, "Reviewed")
    expect(thumbs(page)).to_have_count(1)
    assert shown() == reviewed
    choose_filter(page, "New (no run yet)")
    expect(thumbs(page)).to_have_count(2)
    assert shown() == new

    # next / previous walk only the filtered queue (the current image is not in it: next goes to its first)
    page.locator("#ws-next").click()
    expect(current_thumb(page)).to_have_attribute("data-image", new[0], timeout=15_000)
    page.locator("#ws-next").click()
    expect(current_thumb(page)).to_have_attribute("data-image", new[1], timeout=15_000)
    page.locator("#ws-next").click()
    expect(status(page)).to_contain_text("last image of the queue (2 with these filters)", timeout=15_000)
    expect(current_thumb(page)).to_have_attribute("data-image", new[1])
    dismiss_toasts(page)
    page.locator("#ws-prev").click()
    expect(current_thumb(page)).to_have_attribute("data-image", new[0], timeout=15_000)
    choose_filter(page, "Has pending")
    page.locator("#ws-next").click()
    expect(current_thumb(page)).to_have_attribute("data-image", pending[0], timeout=15_000)
    expect(page.locator("#ws-cards .ws-cards")).to_have_attribute("data-image", pending[0])
    expect(page.locator("#ws-cards .ws-card.ws-pending").first).to_be_visible()
