"""Every real, published Florence-2 generation through ``engine.parse``.

The golden file holds what the model really says (transformers and
transformers.js test suites) with the expected geometry recomputed by the
reference dequantisation ``(bin + 0.5) * size / 1000``. Labels must match
exactly and every coordinate within 1 px.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import supervision as sv

from florence_ui.core.tasks import OutputKind, get_task

TOL_PX = 1.0


def _vectors():
    from golden_data import GOLDEN_PATH, load_golden

    return load_golden()["vectors"] if GOLDEN_PATH.exists() else []


VECTORS = _vectors()


def test_golden_file_has_every_kind_of_output():
    kinds = {get_task(v["task"]).output for v in VECTORS}
    assert kinds == set(OutputKind), kinds
    assert len(VECTORS) >= 15


@pytest.mark.parametrize(
    "vec", VECTORS, ids=[f"{i}-{v['task'].strip('<>')}-{v['image']}" for i, v in enumerate(VECTORS)]
)
def test_golden_vector(engine, vec):
    result = engine.parse(vec["task"], vec["generated_text"], tuple(vec["image_size"]), text=vec["text_input"])
    expected = vec["expected"]
    det = result.detections
    assert result.raw == vec["generated_text"]
    if "text" in expected:
        assert result.text == expected["text"]
        assert len(det) == 0
        return
    assert result.text is None
    if "labels" in expected:
        assert list(det.data["class_name"]) == expected["labels"]
        assert all("</s>" not in label and "<s>" not in label for label in det.data["class_name"])
    if "boxes_xyxy" in expected:
        want = np.array(expected["boxes_xyxy"], dtype=float)
        assert det.xyxy.shape == want.shape
        assert np.abs(det.xyxy - want).max() <= TOL_PX
    if "quads_xyxyxyxy" in expected:
        want = np.array(expected["quads_xyxyxyxy"], dtype=float).reshape(-1, 4, 2)
        got = np.asarray(det.data[sv.config.ORIENTED_BOX_COORDINATES], dtype=float)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= TOL_PX
        # the axis-aligned box encloses the quad
        assert np.allclose(det.xyxy[:, :2], want.min(axis=1), atol=TOL_PX)
        assert np.allclose(det.xyxy[:, 2:], want.max(axis=1), atol=TOL_PX)
    if "polygons" in expected:
        _check_polygons(result, expected["polygons"], tuple(vec["image_size"]))
    # parse() has no token probabilities: confidence is NaN, documented
    assert det.confidence is not None and all(math.isnan(c) for c in det.confidence)
    # class ids follow class names: same name → same id
    names = det.data["class_name"]
    for i in range(len(det)):
        for j in range(len(det)):
            assert (names[i] == names[j]) == (det.class_id[i] == det.class_id[j])


def _check_polygons(result, expected_polygons, size):
    width, height = size
    det = result.detections
    assert len(det) == 1 and det.mask is None  # results keep polygons; masks are made on demand
    mask = result.masks()[0]
    assert mask.shape == (height, width)
    parts = det.data["polygons"][0]
    assert len(parts) == len(expected_polygons)
    for got, want in zip(parts, expected_polygons, strict=True):
        want = np.asarray(want, dtype=float).reshape(-1, 2)
        assert np.asarray(got).shape == want.shape
        assert np.abs(np.asarray(got) - want).max() <= TOL_PX
        # the mask covers the polygon: nearly every pixel of the reference polygon is set
        ref = sv.polygon_to_mask(want.round().astype(np.int32), (width, height)).astype(bool)
        covered = (mask & ref).sum() / ref.sum()
        assert covered >= 0.97, covered
        # and the box encloses it
        x1, y1, x2, y2 = det.xyxy[0]
        assert want[:, 0].min() >= x1 - TOL_PX and want[:, 0].max() <= x2 + TOL_PX
        assert want[:, 1].min() >= y1 - TOL_PX and want[:, 1].max() <= y2 + TOL_PX


def test_region_task_parse_with_pixel_boxes_keeps_one_row_per_box(engine, golden):
    vec = next(v for v in golden["vectors"] if v["task"] == "<REGION_TO_DESCRIPTION>")
    boxes = [[33.6, 159.6, 596.8, 371.76], [10, 10, 50, 50]]
    result = engine.parse(vec["task"], [vec["generated_text"], "</s><s>sky</s>"], (640, 480), boxes=boxes)
    assert list(result.detections.data["class_name"]) == ["turquoise Volkswagen Beetle", "sky"]
    assert np.allclose(result.detections.data["prompt_box"], boxes, atol=0.01)
    assert np.allclose(result.detections.xyxy, boxes, atol=0.01)


def test_empty_segmentation_keeps_its_row(engine):
    result = engine.parse("<REGION_TO_SEGMENTATION>", ["</s><s></s>"], (64, 48), boxes=[[1, 1, 20, 20]])
    det = result.detections
    masks = result.masks()
    assert len(det) == 1 and masks.shape == (1, 48, 64) and not masks.any()
    assert np.allclose(det.xyxy[0], [1, 1, 20, 20])


@pytest.mark.parametrize("task", ["<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>"])
def test_masks_on_demand_equal_supervisions_eager_masks(engine, golden, task):
    """``FlorenceResult.masks()`` is pixel for pixel what ``sv.Detections.from_vlm`` used to store in every result."""
    for vec in (v for v in golden["vectors"] if v["task"] == task):
        size = tuple(vec["image_size"])
        result = engine.parse(task, vec["generated_text"], size, text=vec["text_input"])
        parsed = engine.processor.post_process_generation(vec["generated_text"], task=task, image_size=size)
        eager = sv.Detections.from_vlm(sv.VLM.FLORENCE_2, parsed, resolution_wh=size)
        assert result.detections.mask is None
        assert result.masks().shape == eager.mask.shape and result.masks().any()
        assert np.array_equal(result.masks(), eager.mask)
        assert np.array_equal(result.detections_with_masks().mask, eager.mask)
        assert np.allclose(result.detections.xyxy, eager.xyxy)


def test_open_vocabulary_polygons_masks_on_demand(engine):
    """Open-vocabulary polygons: every part kept, labels aligned past an unusable instance, masks made on demand."""
    answer = ("car<poly><loc_100><loc_100><loc_300><loc_300></poly>"  # two vertices: no polygon, dropped
              "wheel<poly><loc_500><loc_500><loc_600><loc_500><loc_600><loc_600><sep>"
              "<loc_700><loc_700><loc_800><loc_700><loc_800><loc_800></poly>")  # fmt: skip
    result = engine.parse("<OPEN_VOCABULARY_DETECTION>", answer, (200, 100), text="car, wheel")
    det = result.detections
    assert det.mask is None and list(det.data["class_name"]) == ["wheel"]
    assert len(det.data["polygons"][0]) == 2  # both parts kept
    masks = result.masks()
    assert masks.shape == (1, 100, 200)
    assert masks[0][52, 115] and masks[0][72, 155] and not masks[0][65, 130]  # inside part 1, part 2; between
    assert np.allclose(det.xyxy[0], [100, 50, 160, 80], atol=1)
