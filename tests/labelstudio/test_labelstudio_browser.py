"""Playwright in Label Studio's own editor: the pushed prediction's regions are listed there."""

from __future__ import annotations

import pytest
from browser import chromium_page

from florence_ui.labelstudio.convert import label_of

pytestmark = [pytest.mark.e2e, pytest.mark.labelstudio]


def login(page, server) -> None:
    page.goto(f"{server.url}/user/login/")
    page.fill("input[name=email]", server.username)
    page.fill("input[name=password]", server.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)


@pytest.mark.parametrize("image", ["book_cover", "car"])
def test_prediction_regions_are_listed_in_the_editor(labelstudio_server, golden_push, golden_labeled, artifacts_dir,
                                                     image):  # fmt: skip
    _, items, report = golden_push
    item = golden_labeled[image]
    entry = report.images[items.index(item)]
    with chromium_page(1400, 1300) as page:
        login(page, labelstudio_server)
        page.goto(entry.url)  # the link the push shows
        nodes = page.locator(".lsf-tree__node")
        nodes.first.wait_for(timeout=90_000)
        page.get_by_text("microsof", exact=False).first.click()  # the prediction's own tab (its model_version)
        page.mouse.move(5, 5)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts_dir / f"labelstudio_task_{image}.png"))
        rows = [text.split("\n") for text in nodes.all_inner_texts()]  # "1", label, score
        texts = page.locator(".lsf-outliner textarea, .lsf-outliner input").evaluate_all("els => els.map(e => e.value)")
    assert sorted(row[1] for row in rows) == sorted(label_of(r) for r in item.regions)
    assert sorted(float(row[2]) for row in rows) == sorted(r.score for r in item.regions)
    assert {r.label for r in item.regions if r.is_text} <= set(texts)
