"""The teaching view's pure helpers, on real Florence-2 generations."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from florence_ui.render.teaching import (
    LOCATION,
    SPECIAL,
    alternatives_rows,
    attention_heatmap,
    bin_rows,
    explain_markdown,
    grid_overlay,
    input_tokens_html,
    location_axes,
    location_line,
    md_tokens,
    patch_grid,
    probability_colours,
    prompt_box_lines,
    token_kind,
    token_spans,
    tokens_html,
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


def tok(piece, probability, row=0, text=None, id_=7):
    return SimpleNamespace(piece=piece, probability=probability, row=row, text=piece if text is None else text, id=id_)


def test_tokens_html_colours_by_probability_escapes_and_marks_the_selected():
    tokens = [tok("</s>", 1.0), tok("<s>", 0.99), tok("Ġa<b>", 0.2, text=" a<b>"), tok("<loc_53>", 0.7),
              tok("Ġcar", None, row=1, text=" car")]  # fmt: skip
    out = tokens_html(tokens, selected=3, alternatives=[[("x", 0.5)]] * 5, rows=2)
    assert out.count('class="tk ') == 5 and 'data-index="3"' in out
    assert "<b>" not in out.replace("<b>Box", "") and "·a&lt;b&gt;" in out  # escaped; the space shown as ·
    assert "&lt;loc_53&gt;" in out and "outline:3px" in out and "Box #2" in out
    assert "probability 0" in out  # the legend
    low, high = probability_colours(0.05), probability_colours(0.95)
    assert low[0] != high[0] and low[1] == "#ffffff" and high[1] == "#000000"  # dark → white text, light → black
    assert probability_colours(None)[0] == "#e5e7eb"


def test_token_kinds_and_location_axes():
    assert token_kind("<loc_5>") == LOCATION and token_kind("</s>") == SPECIAL and token_kind("Ġcar") is None
    tokens = [tok("car", 1), tok("<loc_1>", 1), tok("<loc_2>", 1), tok("<loc_3>", 1), tok("<loc_4>", 1, row=1)]
    assert location_axes(tokens) == [None, "x", "y", "x", "x"]  # x, y alternate within a row


def test_input_tokens_html_names_the_image_tokens_and_the_sentence():
    out = input_tokens_html("What is <this>?", ["<s>", "What", "Ġis", "</s>"], 577, 24, (768, 768))
    assert "577 image tokens = 24×24 patches + 1 pooled" in out and "What is &lt;this&gt;?" in out
    assert "·is" in out and "768×768" in out


def test_heatmap_puts_the_brightest_cell_where_the_weight_is():
    picture = Image.new("RGB", (200, 100), (128, 128, 128))
    grid = np.full((4, 4), 0.01)
    grid[1, 3] = 0.85
    out = np.asarray(attention_heatmap(picture, grid / grid.sum())).astype(int)
    assert out.shape == (100, 200, 3)
    hot, cold = out[25 + 12, 150 + 25].sum(), out[80, 20].sum()  # patch (row 1, col 3) vs (row 3, col 0)
    assert hot > cold + 200


def test_patch_grid_draws_the_patch_boundaries():
    eye = Image.new("RGB", (96, 96), (20, 20, 20))
    out = np.asarray(patch_grid(eye, 24, min_side=96)).astype(int)
    assert out[50, 4].sum() > 200 and out[50, 8].sum() > 200  # a line every 4 px (96 / 24)
    assert out[50, 6].sum() == 60  # inside a patch: untouched
    assert patch_grid(Image.new("RGB", (64, 64)), 2).size == (384, 384)  # a toy input is enlarged to be seen


def test_location_line_marks_the_bin_and_alternatives_table():
    picture = Image.new("RGB", (1000, 400), (0, 0, 0))
    out = np.asarray(location_line(picture, "<loc_250>", "x")).astype(int)
    assert out[5, 250].sum() > 300 and out[5, 600].sum() == 0  # x bin 250 → x = 250.5 px
    assert location_line(picture, "Ġcar", "x") is picture
    rows = alternatives_rows([("Ġcar", 0.6), ("Ġbus", 0.3)], "Ġcar")
    assert rows == [[1, "Ġcar", 0.6, "✓ chosen"], [2, "Ġbus", 0.3, ""]]
    outside = alternatives_rows([("Ġcar", 0.6), ("Ġbus", 0.3)], "Ġvan", 0.01)
    assert outside[-1] == ["—", "Ġvan", 0.01, "✓ chosen (not in the top 2)"]
