"""The stable SAM doors of the engine (issue 16) on the tiny random Florence-2 and the tiny random SAM.

Random weights: the masks mean nothing, so these tests assert the plumbing (shapes, one mask per box or click,
the cache, the errors) through the real load → embed → prompt → post-process path, never mask quality.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from florence_ui import FlorenceEngine
from florence_ui.core.fields import SAM_POLYGONS, SAM_SCORE
from florence_ui.errors import InputError, SamLoadError


@pytest.fixture(scope="module")
def sam_engine(tiny_checkpoint, tiny_sam_checkpoint) -> FlorenceEngine:
    return FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", sam=str(tiny_sam_checkpoint))


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))


def test_from_pretrained_takes_sam_and_loads_it_lazily(sam_engine, tiny_sam_checkpoint):
    assert sam_engine.sam_name is not None and sam_engine.sam.model_id.endswith(tiny_sam_checkpoint.name)
    assert FlorenceEngine.from_pretrained.__doc__ and "sam" in FlorenceEngine.from_pretrained.__doc__


def test_run_refine_gives_one_mask_per_box_at_image_size(sam_engine, picture):
    boxes = [[4, 4, 60, 50], [30, 20, 120, 90], [70, 10, 110, 40]]
    result = sam_engine.run(picture, "<REGION_TO_CATEGORY>", boxes=boxes, max_new_tokens=6, num_beams=1, refine=True)
    det = result.detections
    assert det.mask is not None and det.mask.shape == (len(det), 96, 128) and det.mask.dtype == bool
    assert len(det.data[SAM_SCORE]) == len(det) and len(det.data[SAM_POLYGONS]) == len(det)
    plain = sam_engine.run(picture, "<REGION_TO_CATEGORY>", boxes=boxes, max_new_tokens=6, num_beams=1)
    assert plain.detections.mask is None and result.raw == plain.raw  # refining changes no answer


def test_segment_points_and_boxes_and_the_cache(sam_engine, picture):
    sam_engine.sam.clear_cache()
    first = sam_engine.segment(picture, points=[(20, 30), (90, 60)])
    again = sam_engine.segment(picture, points=[(20, 30), (90, 60)])
    assert first.mask.shape == (2, 96, 128) and np.array_equal(first.mask, again.mask)
    boxed = sam_engine.segment(picture, boxes=[[0, 0, 64, 48]])
    assert boxed.mask.shape == (1, 96, 128)
    negative = sam_engine.segment(picture, points=[(20, 30), (22, 31)], point_labels=[1, 0])
    assert len(negative) == 1  # a negative click corrects the object clicked before it


def test_click_is_one_labelled_segmented_region_per_object(sam_engine, picture):
    result = sam_engine.click(picture, [(20, 30), (90, 60)], max_new_tokens=6, num_beams=1)
    assert result.detections.mask is not None and result.detections.mask.shape[1:] == (96, 128)
    assert len(result.detections) <= 2 and len(result.regions()) == len(result.detections)


def test_without_sam_the_doors_say_how_to_get_one(engine, picture):
    with pytest.raises(InputError, match="sam="):
        engine.segment(picture, points=[(1, 1)])
    with pytest.raises(InputError, match="--sam"):
        engine.run(picture, "<OD>", refine=True, max_new_tokens=4, num_beams=1)


def test_a_wrong_sam_checkpoint_is_a_clear_error_and_florence_goes_on(tiny_checkpoint, tmp_path, picture):
    (tmp_path / "config.json").write_text("{}")
    engine = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", sam=str(tmp_path))  # lazy: no error yet
    with pytest.raises(SamLoadError, match="SAM"):
        engine.segment(picture, points=[(5, 5)])
    result = engine.run(picture, "<CAPTION>", max_new_tokens=4, num_beams=1)  # Florence-2 still answers
    assert isinstance(result.text, str)
