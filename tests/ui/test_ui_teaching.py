"""The teaching view's pure helpers, on real Florence-2 generations."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from florence_ui.render.teaching import (
    LOCATION,
    SPECIAL,
    bin_rows,
    explain_markdown,
    grid_overlay,
    md_tokens,
    prompt_box_lines,
    token_spans,
)


def vector(golden, task, image=None):
    return next(v for v in golden["vectors"] if v["task"] == task and (image is None or v["image"] == image))


def test_token_spans_highlight_locations_and_collapse_padding(golden):
    raw = vector(golden, "<OPEN_VOCABULARY_DETECTION>", "car")["generated_text"]
    spans = token_spans(raw)
    assert ("wheels", None) in spans
    assert ("<loc_144>", LOCATION) in spans
    pads = [piece for piece, kind in spans if piece.startswith("<pad>")]
    assert len(pads) == 1 and pads[0].startswith("<pad>×")
    assert "".join(p for p, _ in spans).startswith("</s><s>wheels<loc_144>")
    assert ("</s>", SPECIAL) in spans
    # one answer per box is marked per box
    two = token_spans(["car<loc_1><loc_2><loc_3><loc_4>", "door<loc_5><loc_6><loc_7><loc_8>"])
    assert two[0][0].startswith("[box #1]") and any(p.strip().startswith("[box #2]") for p, _ in two)


def test_bin_rows_reproduce_the_published_boxes(engine, golden):
    v = vector(golden, "<OD>", "beetle")
    result = engine.parse("<OD>", v["generated_text"], tuple(v["image_size"]))
    rows = bin_rows(result)
    assert len(rows) == 16  # 4 boxes × 4 bins
    assert rows[0] == [1, "car", "<loc_53>", "x", 53, "(53 + 0.5) × 640 / 1000", 34.24]
    pixels = [r[6] for r in rows]
    expected = [c for box in v["expected"]["boxes_xyxy"] for c in box]
    assert pixels == pytest.approx(expected, abs=0.01)


def test_explain_markdown_shows_prompts_tokens_and_boxes(engine):
    image = Image.new("RGB", (640, 480), "grey")
    result = engine.run(image, "<REGION_TO_CATEGORY>", boxes=[[34, 160, 597, 372]], max_new_tokens=8, num_beams=1)
    text = explain_markdown(result, engine.num_image_tokens)
    assert "`<REGION_TO_CATEGORY><loc_53><loc_333><loc_932><loc_775>`" in text
    assert "What is the region" in text
    assert f"= {engine.num_image_tokens} image + " in text
    assert prompt_box_lines(result) == ["#1 [34, 160, 597, 372] px → <loc_53><loc_333><loc_932><loc_775>"]
    assert "one x bin = 0.64 px" in text
    if result.truncated:
        assert "cut off" in text


def test_md_tokens_keeps_tokens_visible_in_markdown():
    assert md_tokens("each box is 4 <loc_N> tokens") == "each box is 4 `<loc_N>` tokens"
    assert md_tokens("no tokens") == "no tokens"


def test_grid_overlay_marks_bin_boundaries():
    image = Image.new("RGB", (1000, 500), (60, 60, 60))
    out = np.asarray(grid_overlay(image)).astype(int)
    base = np.asarray(image).astype(int)
    assert out.shape == base.shape
    # vertical line at bin 500 (x = 500 px), horizontal line at bin 300 (y = 150 px)
    assert out[310, 500].sum() > base[310, 500].sum() + 60
    assert out[150, 700].sum() > base[150, 700].sum() + 60
    # between lines the picture is untouched
    assert np.array_equal(out[310, 520], base[310, 520])
