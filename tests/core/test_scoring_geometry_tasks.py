"""Pure pieces: the task table, box validation, bins ↔ pixels, the token-score walker."""

from __future__ import annotations

import math

import pytest

from florence_ui.core.geometry import BoxError, bin_to_pixel, bins_to_xyxy, explain_bins, loc_tokens, validate_box
from florence_ui.core.tasks import TASKS, InputKind, OutputKind, get_task
from florence_ui.model.scoring import align, sequence_score, text_pieces, walk_instances


def test_catalogue_has_all_fifteen_tasks_once():
    tokens = [t.token for t in TASKS]
    assert len(tokens) == 15 == len(set(tokens))
    assert {t.input for t in TASKS} == set(InputKind) and {t.output for t in TASKS} == set(OutputKind)
    for task in TASKS:
        assert task.name and task.explanation.endswith(".")


def test_task_lookup_is_forgiving_but_strict():
    assert get_task("OD").token == "<OD>"
    assert get_task("ocr_with_region").token == "<OCR_WITH_REGION>"
    assert get_task("Phrase grounding").token == "<CAPTION_TO_PHRASE_GROUNDING>"
    with pytest.raises(ValueError, match="Valid tasks"):
        get_task("<DETECT>")


def test_box_validation():
    assert validate_box([10, 20, 30, 40], (100, 100)).box == (10, 20, 30, 40)
    fix = validate_box([30, 40, 10, 20], (100, 100))
    assert fix.box == (10, 20, 30, 40) and fix.notes == ("corners swapped",)
    assert validate_box([-5, -5, 200, 50], (100, 100)).box == (0, 0, 100, 50)
    assert validate_box([99.5, 10, 99.5, 10], (100, 100)).box == (99.0, 10.0, 100.0, 11.0)
    for bad in ([1, 2, 3], ["a", 1, 2, 3], [200, 200, 300, 300], [float("nan"), 0, 1, 1]):
        with pytest.raises(BoxError):
            validate_box(bad, (100, 100))


def test_bins_to_pixels_is_the_reference_formula():
    assert bin_to_pixel(53, 640) == pytest.approx(34.24)
    assert bins_to_xyxy([53, 333, 933, 774], (640, 480)) == pytest.approx((34.24, 160.08, 597.44, 371.76))
    rows = explain_bins([53, 333], (640, 480))
    assert rows[0]["axis"] == "x" and rows[1]["axis"] == "y" and rows[1]["pixel"] == pytest.approx(160.08)
    assert loc_tokens([1, 2]) == "<loc_1><loc_2>"


def test_walker_shares_a_label_between_its_boxes():
    pieces = [("</s>", 1.0), ("<s>", 1.0), ("wheel", 0.5)]
    pieces += [(f"<loc_{b}>", 0.9) for b in (1, 2, 3, 4, 5, 6, 7, 8)] + [("car", 0.2)]
    pieces += [(f"<loc_{b}>", 0.4) for b in (9, 10, 11, 12)] + [("</s>", 1.0)]
    found = walk_instances(pieces, 4)
    assert [i.bins for i in found] == [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12)]
    assert found[0].score == pytest.approx((0.5 + 4 * 0.9) / 5)
    assert found[2].score == pytest.approx((0.2 + 4 * 0.4) / 5)
    assert sequence_score(pieces) == pytest.approx((0.5 + 8 * 0.9 + 0.2 + 4 * 0.4) / 14)


def test_align_skips_instances_the_parser_dropped():
    found = walk_instances(text_pieces("the image<loc_1><loc_1><loc_2><loc_2>car<loc_5><loc_5><loc_9><loc_9>"), 4)
    matched = align([[5, 5, 9, 9]], found, lambda bins: list(bins))
    assert matched[0] is not None and matched[0].bins == (5, 5, 9, 9)
    assert math.isnan(matched[0].score)  # text only: no probabilities
    assert align([[7, 7, 7, 7]], found, lambda bins: list(bins)) == [None]
