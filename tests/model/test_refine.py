"""Florence-2 answers refined by the tiny SAM, and clicks turned into labelled objects.

The Florence-2 answers are real (golden generations parsed by the engine) or
come from the tiny Florence-2 (clicks); SAM's masks are random-weight noise, so
only pairing, shapes, kept fields and the round trips are asserted.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from florence_ui.batch.results_file import line_from_result, result_from_line
from florence_ui.core.fields import POLYGONS, PROMPT_BOX, SAM_BOX, SAM_POINTS, SAM_POLYGONS, SAM_SCORE
from florence_ui.core.labels import RegionKind, regions_from_result
from florence_ui.core.tasks import CAPTION_TASK, DEFAULT_TASK, REFERRING_SEGMENT_TASK, get_task
from florence_ui.errors import InputError
from florence_ui.model.refine import CLICK_TASK, click_objects, refine_result


def golden_result(engine, golden, task, image):
    vec = next(v for v in golden["vectors"] if v["task"] == task and v["image"] == image)
    size = tuple(vec["image_size"])
    return engine.parse(task, vec["generated_text"], size, text=vec["text_input"]), size


def photo(size):
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_refine_gives_every_box_a_mask_and_keeps_florence_fields(engine, golden, segmenter):
    result, size = golden_result(engine, golden, DEFAULT_TASK.token, "beetle")
    refined = refine_result(result, photo(size), segmenter)
    n = len(result.detections)
    assert n > 1 and len(refined.detections) == n
    det = refined.detections
    assert det.mask.shape == (n, size[1], size[0]) and det.mask.dtype == bool
    assert det.data[SAM_SCORE].shape == (n,) and det.data[SAM_BOX].shape == (n, 4)
    assert np.array_equal(det.xyxy, result.detections.xyxy)  # Florence-2's box stays the row's box
    assert np.array_equal(det.confidence, result.detections.confidence, equal_nan=True)
    assert list(det.data["class_name"]) == list(result.detections.data["class_name"])
    assert result.detections.mask is None and SAM_SCORE not in result.detections.data  # the input is untouched
    assert refined.refined and refined.sam_model == segmenter.model_id
    assert np.array_equal(refined.masks(), det.mask)
    assert {"sam_embed_s", "sam_decode_s", "sam_s"} <= set(refined.timings)
    out = refined.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["sam_model"] == segmenter.model_id and set(out) >= set(result.to_dict())
    for row in out["regions"]:
        assert {"sam_polygons", "sam_score", "sam_box", "label", "box", "confidence"} <= set(row)
    assert "sam_model" not in result.to_dict()  # unrefined answers keep their keys


def test_referring_segmentation_keeps_florence_polygon_beside_sam_mask(engine, golden, segmenter):
    result, size = golden_result(engine, golden, REFERRING_SEGMENT_TASK.token, "car")
    refined = refine_result(result, photo(size), segmenter)
    det = refined.detections
    assert det.mask.shape[0] == len(result.detections) >= 1
    for mine, theirs in zip(det.data[POLYGONS], result.detections.data[POLYGONS], strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))  # Florence-2's polygon kept
    # SAM was prompted with the box of Florence-2's polygon: that box is still the row's xyxy
    polygon = np.concatenate(result.detections.data[POLYGONS][0])
    assert np.allclose(det.xyxy[0], [*polygon.min(0), *polygon.max(0)], atol=1.0)


def test_refine_without_boxes_is_a_note_not_an_error(engine, golden, segmenter):
    result, size = golden_result(engine, golden, CAPTION_TASK.token, "beetle")
    refined = refine_result(result, photo(size), segmenter)
    assert refined.text == result.text and any("Nothing for SAM to refine" in n for n in refined.notes)


def test_refine_refuses_another_image_size(engine, golden, segmenter):
    result, size = golden_result(engine, golden, DEFAULT_TASK.token, "beetle")
    with pytest.raises(InputError, match="refine with the image"):
        refine_result(result, photo((size[0] // 2, size[1])), segmenter)


def test_refined_regions_are_sam_outlines_and_survive_the_results_file(engine, golden, segmenter):
    result, size = golden_result(engine, golden, DEFAULT_TASK.token, "beetle")
    refined = refine_result(result, photo(size), segmenter)
    line = json.loads(json.dumps(line_from_result(refined, "beetle.png")))
    n = len(refined.detections)
    assert len(line["sam_polygons"]) == len(line["sam_scores"]) == len(line["sam_boxes"]) == len(line["scores"]) == n
    assert line["sam_model"] == segmenter.model_id
    back = result_from_line(engine, line)
    assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(back.detections.data[SAM_SCORE],
                                                                refined.detections.data[SAM_SCORE], strict=True))  # fmt: skip
    regions = regions_from_result(back)
    for region, row in zip(regions, refined.regions(), strict=True):
        if any(len(p) >= 6 for p in row["sam_polygons"]):
            assert region.kind is RegionKind.POLYGON
            assert region.polygons == [p for p in row["sam_polygons"]]
            pts = np.concatenate([np.reshape(p, (-1, 2)) for p in region.polygons])
            assert region.xyxy == (*pts.min(0), *pts.max(0))


def test_one_click_is_one_labelled_segmented_scored_region(engine, segmenter):
    image = photo((96, 80))
    points, labels = [(20, 20), (24, 26), (70, 50)], [1, 0, 1]
    result = click_objects(engine, segmenter, image, points, labels, num_beams=1, max_new_tokens=8)
    det = result.detections
    assert result.task == CLICK_TASK.token
    assert len(det) <= 2 and len(det) + sum("SAM found no mask" in n for n in result.notes) >= 1
    assert det.mask.shape == (len(det), 80, 96)
    assert PROMPT_BOX in det.data and SAM_POINTS in det.data and SAM_POLYGONS in det.data
    for i in range(len(det)):  # each region's prompt box covers its SAM mask
        ys, xs = np.nonzero(det.mask[i])
        x1, y1, x2, y2 = det.data[PROMPT_BOX][i]
        assert x1 <= xs.min() and y1 <= ys.min() and xs.max() < x2 and ys.max() < y2
    assert [g[0][:2] for g in det.data[SAM_POINTS]] == [[20.0, 20.0], [70.0, 50.0]][: len(det)] or len(det) < 2
    assert np.isfinite(det.data[SAM_SCORE]).all()
    json.dumps(result.to_dict(), allow_nan=False)


def test_click_objects_wants_a_region_task(engine, segmenter):
    with pytest.raises(InputError, match="region task"):
        click_objects(engine, segmenter, photo((64, 64)), [(10, 10)], task=DEFAULT_TASK)
    described = click_objects(engine, segmenter, photo((64, 64)), [(30, 30)], task=get_task("Region to description"),
                              num_beams=1, max_new_tokens=8)  # fmt: skip
    assert described.task == get_task("Region to description").token


def test_more_boxes_than_the_limit_go_in_several_calls_on_one_embedding(engine, golden, segmenter, monkeypatch):
    result, size = golden_result(engine, golden, DEFAULT_TASK.token, "beetle")
    image = photo(size)
    whole = refine_result(result, image, segmenter)
    monkeypatch.setenv("FLORENCE_UI_MAX_BOXES", "2")
    chunked = refine_result(result, image, segmenter)
    assert len(result.detections) > 2 and np.array_equal(chunked.detections.mask, whole.detections.mask)
    assert np.array_equal(chunked.detections.data[SAM_SCORE], whole.detections.data[SAM_SCORE])


def test_a_broken_sam_fails_refinement_only(engine, golden, tmp_path):
    from florence_ui.errors import SamLoadError
    from florence_ui.model.sam import load_sam

    broken = load_sam(str(tmp_path / "missing-sam"))
    result, size = golden_result(engine, golden, DEFAULT_TASK.token, "beetle")
    with pytest.raises(SamLoadError, match="Florence-2 itself still works"):
        refine_result(result, photo(size), broken)
    after = engine.run(photo((64, 64)), CAPTION_TASK.token, num_beams=1, max_new_tokens=4)
    assert after.text is not None  # Florence-2 goes on
