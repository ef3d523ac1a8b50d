"""The SAM segmenter on a tiny random SAM: the real load → embed → prompt → post-process path.

Masks of random weights are noise, so these tests hold shapes, pairing, the
cache and the errors, never mask quality. A reference run through
transformers' own documented path (``SamProcessor(images, input_boxes)`` →
``SamModel(pixel_values=...)`` → ``post_process_masks``) holds our cached,
processor-free prompt path to the same masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from florence_ui.core.fields import SAM_BOX, SAM_POINTS, SAM_POLYGONS, SAM_SCORE
from florence_ui.errors import InputError, ModelLoadError, SamLoadError
from florence_ui.model.sam import SAM_ALIASES, group_clicks, load_sam, resolve_sam_id

WIDTH, HEIGHT = 120, 90
BOXES = [[10, 10, 50, 60], [30, 20, 100, 80], [0, 0, 120, 90]]


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8))


def test_aliases_resolve_and_hub_ids_pass_through():
    assert resolve_sam_id("sam-base") == "facebook/sam-vit-base"
    assert resolve_sam_id("slimsam") == SAM_ALIASES["slimsam"]
    assert resolve_sam_id("someone/sam") == "someone/sam"


def test_load_is_lazy(tiny_sam_checkpoint):
    seg = load_sam(str(tiny_sam_checkpoint), device="cpu")
    assert not seg.loaded and "not loaded" in seg.describe()
    seg.load()
    assert seg.loaded and "cpu" in seg.describe()


def test_n_boxes_give_n_masks_at_image_size_in_one_call(segmenter, image):
    timings: dict[str, float] = {}
    det = segmenter.segment(image, boxes=BOXES, timings=timings)
    assert len(det) == len(BOXES)
    assert det.mask.shape == (len(BOXES), HEIGHT, WIDTH) and det.mask.dtype == bool
    assert det.xyxy.shape == (len(BOXES), 4)
    assert det.data[SAM_SCORE].shape == (len(BOXES),) and np.isfinite(det.data[SAM_SCORE]).all()
    assert det.data[SAM_BOX].shape == (len(BOXES), 4)
    for i, parts in enumerate(det.data[SAM_POLYGONS]):
        assert all(p.ndim == 2 and p.shape[1] == 2 and len(p) >= 3 for p in parts)
        if det.mask[i].any():  # xyxy is the mask's own extent
            ys, xs = np.nonzero(det.mask[i])
            assert det.xyxy[i].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    assert {"sam_embed_s", "sam_decode_s", "sam_cached"} <= set(timings)


def test_clicks_group_into_objects_and_give_one_mask_each(segmenter, image):
    det = segmenter.segment(image, points=[(20, 30), (25, 35), (60, 40)], point_labels=[1, 0, 1])
    assert len(det) == 2 and det.mask.shape == (2, HEIGHT, WIDTH)
    assert [list(map(tuple, g)) for g in det.data[SAM_POINTS]] == [[(20, 30, 1), (25, 35, 0)], [(60, 40, 1)]]
    assert np.isfinite(det.data[SAM_SCORE]).all()


def test_box_and_clicks_together_prompt_one_object_each(segmenter, image):
    det = segmenter.segment(image, points=[(20, 30), (70, 50)], boxes=BOXES[:2])
    assert len(det) == 2
    with pytest.raises(InputError, match="one box per object"):
        segmenter.segment(image, points=[(20, 30)], boxes=BOXES)


def test_the_cache_skips_the_encoder_and_gives_identical_masks(tiny_sam_checkpoint, image):
    seg = load_sam(str(tiny_sam_checkpoint), device="cpu", cache_size=2)
    first: dict[str, float] = {}
    second: dict[str, float] = {}
    a = seg.segment(image, boxes=BOXES, timings=first)
    b = seg.segment(image, boxes=BOXES, timings=second)
    c = seg.segment(image, boxes=BOXES, use_cache=False)
    assert first["sam_cached"] == 0.0 and second["sam_cached"] == 1.0
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.mask, c.mask)
    assert np.array_equal(a.data[SAM_SCORE], b.data[SAM_SCORE])
    other = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # other pixels: another entry
    third: dict[str, float] = {}
    seg.segment(other, boxes=BOXES, timings=third)
    assert third["sam_cached"] == 0.0


def test_masks_match_transformers_own_processor_path(tiny_sam_checkpoint, image):
    """Our prompt scaling (no image preprocessing on a cache hit) gives the masks of SamProcessor's own path."""
    from transformers import SamModel, SamProcessor

    processor = SamProcessor.from_pretrained(str(tiny_sam_checkpoint))
    model = SamModel.from_pretrained(str(tiny_sam_checkpoint), dtype=torch.float32).eval()
    seg = load_sam(str(tiny_sam_checkpoint), device="cpu", dtype="float32")

    inputs = processor(images=image, input_boxes=[BOXES], return_tensors="pt")
    with torch.inference_mode():
        out = model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"].float(),
                    multimask_output=False)  # fmt: skip
    [ref] = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    ours = seg.segment(image, boxes=BOXES)
    assert np.array_equal(ours.mask, ref[:, 0].numpy())
    assert np.allclose(ours.data[SAM_SCORE], out.iou_scores[0, :, 0].numpy(), atol=1e-5)

    points = [[[20.0, 30.0], [25.0, 35.0]], [[60.0, 40.0], [0.0, 0.0]]]
    labels = [[1, 0], [1, -10]]
    inputs = processor(images=image, input_points=[points], input_labels=[labels], return_tensors="pt")
    with torch.inference_mode():
        out = model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"].float(),
                    input_labels=inputs["input_labels"], multimask_output=True)  # fmt: skip
    [ref] = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    best = out.iou_scores[0].argmax(dim=-1)
    ours = seg.segment(image, points=[(20, 30), (25, 35), (60, 40)], point_labels=[1, 0, 1])
    assert np.array_equal(ours.mask, ref[torch.arange(2), best].numpy())


def test_group_clicks_rule_and_bad_clicks():
    assert group_clicks([(1, 2), (3, 4), (5, 6), (7, 8)], [1, 1, 0, 0]) == [
        [(1.0, 2.0, 1)], [(3.0, 4.0, 1), (5.0, 6.0, 0), (7.0, 8.0, 0)]]  # fmt: skip
    assert group_clicks([(1, 2), (3, 4)]) == [[(1.0, 2.0, 1)], [(3.0, 4.0, 1)]]
    with pytest.raises(InputError, match="no positive click before it"):
        group_clicks([(1, 2)], [0])
    with pytest.raises(InputError, match="one label"):
        group_clicks([(1, 2)], [1, 0])
    with pytest.raises(InputError, match="two numbers"):
        group_clicks([("a", 2)])
    with pytest.raises(InputError, match="finite"):
        group_clicks([(float("nan"), 2)])
    with pytest.raises(InputError, match="use 1"):
        group_clicks([(1, 2)], [2])


def test_bad_prompts_are_input_errors(segmenter, image):
    with pytest.raises(InputError, match="at least one prompt"):
        segmenter.segment(image)
    with pytest.raises(InputError, match="Box 1"):
        segmenter.segment(image, boxes=[[500, 500, 600, 600]])
    with pytest.raises(InputError, match="FLORENCE_UI_MAX_BOXES"):
        segmenter.segment(image, boxes=[BOXES[0]] * 65)


def test_missing_checkpoint_is_a_clear_lazy_error(tmp_path, image):
    seg = load_sam(str(tmp_path / "nope"), device="cpu")  # lazy: nothing read yet, no error yet
    for _ in range(2):  # the failure is remembered, the message the same
        with pytest.raises(SamLoadError) as err:
            seg.segment(image, boxes=BOXES)
        message = str(err.value)
        assert "Could not load SAM model" in message and "does not exist" in message and "Fix:" in message
        assert "Florence-2 model" not in message and "still works" in message
    assert isinstance(err.value, ModelLoadError)  # the CLI's and the app's existing model-load handling applies
    with pytest.raises(SamLoadError):
        load_sam(str(tmp_path / "nope"), lazy=False)


def test_a_florence_checkpoint_is_not_sam(tiny_checkpoint):
    with pytest.raises(SamLoadError, match="not SAM"):
        load_sam(str(tiny_checkpoint), lazy=False)


def test_an_incomplete_folder_names_what_is_missing(tmp_path, tiny_sam_checkpoint):
    (tmp_path / "config.json").write_text((tiny_sam_checkpoint / "config.json").read_text())
    with pytest.raises(SamLoadError, match="not a complete SAM checkpoint"):
        load_sam(str(tmp_path), lazy=False)


def test_sam2_without_torchvision_says_why(tmp_path):
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: SAM 2 can load")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam2"}))
    with pytest.raises(SamLoadError, match="torchvision") as err:
        load_sam(str(tmp_path), lazy=False)
    assert "pip install torchvision" in str(err.value) and "sam-base" in str(err.value)


def test_int8_is_refused_for_sam(tiny_sam_checkpoint):
    with pytest.raises(SamLoadError, match="int8"):
        load_sam(str(tiny_sam_checkpoint), dtype="int8", lazy=False)
