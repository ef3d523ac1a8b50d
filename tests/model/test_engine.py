"""The real from_pretrained → generate → decode → parse path, on the tiny offline Florence-2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from florence_ui import TASKS, FlorenceEngine, InputError
from florence_ui.core.tasks import InputKind, OutputKind

FAST = dict(max_new_tokens=12, num_beams=1)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))


def _inputs(task):
    if task.input is InputKind.TEXT:
        return {"text": task.text_hint or "a thing"}
    if task.input is InputKind.BOXES:
        return {"boxes": [[5, 5, 60, 50], [70, 20, 150, 110], [0, 0, 160, 120]]}
    return {}


@pytest.mark.parametrize("task", TASKS, ids=[t.token for t in TASKS])
def test_every_task_runs_end_to_end(engine, photo, task):
    result = engine.run(photo, task.token, **_inputs(task), **FAST)
    assert result.task == task.token
    assert result.image_size == (160, 120)
    assert result.model == engine.model_id
    assert result.prompt_tokens and all(n > engine.num_image_tokens for n in result.prompt_tokens)
    assert result.timings["total_s"] > 0
    det = result.detections
    if task.output is OutputKind.TEXT:
        assert isinstance(result.text, str) and isinstance(result.raw, str)
        assert len(det) == 0
    elif task.input is InputKind.BOXES:
        # one row per box, row i answers box i, each with a real token-probability score
        assert isinstance(result.raw, list) and len(result.raw) == 3
        assert len(det) == 3
        assert np.allclose(det.data["prompt_box"], [[5, 5, 60, 50], [70, 20, 150, 110], [0, 0, 160, 120]])
        if task.output is OutputKind.POLYGONS:
            assert det.mask is None and result.masks().shape == (3, 120, 160)  # polygons kept, masks on demand
    else:
        assert isinstance(result.raw, str) and result.raw.startswith("</s>")
    if len(det):
        assert det.class_id is not None and det.confidence is not None
        assert len(det.data["class_name"]) == len(det) == len(det.data["source_task"])
    assert result.to_dict()["task"] == task.token


def test_text_inputs_match_the_processor(engine, photo):
    prompts = ["<OD>", "<CAPTION_TO_PHRASE_GROUNDING>a red car", "<REGION_TO_OCR><loc_1><loc_2><loc_300><loc_400>"]
    for prompt in prompts:
        reference = engine.processor(text=prompt, images=photo, return_tensors="pt")["input_ids"]
        assert torch.equal(engine.text_inputs([prompt])["input_ids"], reference)


def test_prompt_boxes_use_the_processor_quantiser(engine):
    prompts, boxes, notes = engine.task_prompts(
        __import__("florence_ui").get_task("<REGION_TO_CATEGORY>"), None, [[640, 480, 33.6, 159.6]], (640, 480)
    )
    assert prompts == ["<REGION_TO_CATEGORY><loc_52><loc_332><loc_999><loc_999>"]
    assert boxes == [[33.6, 159.6, 640.0, 480.0]]
    assert notes == ["Box 1: corners swapped"]


def test_cached_features_give_identical_answers(engine, photo):
    engine.clear_cache()
    first = engine.run(photo, "<REGION_TO_DESCRIPTION>", boxes=[[5, 5, 60, 50]], **FAST)
    cached = engine.run(photo, "<REGION_TO_DESCRIPTION>", boxes=[[5, 5, 60, 50]], **FAST)
    uncached = engine.run(photo, "<REGION_TO_DESCRIPTION>", boxes=[[5, 5, 60, 50]], use_cache=False, **FAST)
    assert not first.cached_features and cached.cached_features and not uncached.cached_features
    assert first.raw == cached.raw == uncached.raw
    assert np.allclose(cached.detections.confidence, uncached.detections.confidence, atol=1e-5)
    [(features, hit)] = engine.image_features([photo])
    assert hit and features.shape[:2] == (1, engine.num_image_tokens)
    direct = engine.model.get_image_features(pixel_values=engine.pixel_values(photo)).pooler_output
    assert torch.allclose(features, direct)


def test_batched_boxes_equal_sequential_runs(engine, photo):
    boxes = [[5, 5, 60, 50], [70, 20, 150, 110], [0, 0, 160, 120]]
    batched = engine.run(photo, "<REGION_TO_CATEGORY>", boxes=boxes, **FAST)
    single = [engine.run(photo, "<REGION_TO_CATEGORY>", boxes=[b], **FAST) for b in boxes]
    assert batched.raw == [s.raw[0] for s in single]
    assert np.allclose(batched.detections.confidence, [s.detections.confidence[0] for s in single], atol=1e-4)


def test_confidence_is_the_mean_token_probability(engine, photo):
    """Recompute the score by teacher forcing the answer through the model."""
    result = engine.run(photo, "<REGION_TO_DESCRIPTION>", boxes=[[5, 5, 60, 50]], **FAST)
    start = engine.model.generation_config.decoder_start_token_id
    ids = torch.tensor([[start] + [tok_id for tok_id, _, _ in result.output_tokens[0]]])
    enc = engine.text_inputs(result.prompts)
    with torch.inference_mode():
        logits = engine.model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
            pixel_values=engine.pixel_values(photo), decoder_input_ids=ids[:, :-1],
        ).logits  # fmt: skip
    probs = logits.softmax(-1)[0, torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    specials = set(engine.processor.tokenizer.all_special_ids)
    keep = [p.item() for p, t in zip(probs, ids[0, 1:], strict=True) if t.item() not in specials]
    ours = [p for tok_id, _, p in result.output_tokens[0] if tok_id not in specials]
    assert [round(p, 4) for p in ours] == [round(p, 4) for p in keep]
    assert 0 < result.detections.confidence[0] < 1
    assert math.isclose(result.detections.confidence[0], sum(keep) / len(keep), rel_tol=1e-3)


def test_truncation_is_reported(engine, photo):
    result = engine.run(photo, "<OD>", max_new_tokens=3, num_beams=1)
    assert result.truncated
    assert any("cut off" in note for note in result.notes)
    assert result.generated_tokens[0] <= 3


def test_beam_search_runs_and_scores(engine, photo):
    result = engine.run(
        photo, "<REGION_TO_CATEGORY>", boxes=[[5, 5, 60, 50], [10, 10, 20, 20]], max_new_tokens=8, num_beams=3
    )
    assert len(result.detections) == 2
    assert all(0 <= c <= 1 for c in result.detections.confidence)


def test_class_ids_are_stable_across_calls(engine, golden):
    od = next(v for v in golden["vectors"] if v["task"] == "<OD>")
    a = engine.parse(od["task"], od["generated_text"], od["image_size"])
    b = engine.parse(od["task"], od["generated_text"], od["image_size"])
    assert list(a.detections.class_id) == list(b.detections.class_id)
    assert engine.classes.ids(["car"])[0] == a.detections.class_id[0]


@pytest.mark.parametrize(
    ("task", "kwargs", "message"),
    [
        ("<OPEN_VOCABULARY_DETECTION>", {}, "needs a text prompt"),
        ("<REGION_TO_CATEGORY>", {}, "needs at least one box"),
        ("<REGION_TO_CATEGORY>", {"boxes": [[500, 500, 600, 600]]}, "outside"),
        ("<REGION_TO_CATEGORY>", {"boxes": [[1, 2, 3]]}, "4 numbers"),
        ("<OD>", {"max_new_tokens": 5000}, "1024"),
        ("<NOPE>", {}, "Unknown Florence-2 task"),
    ],
)
def test_bad_input_gets_a_clear_error(engine, photo, task, kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine.run(photo, task, **kwargs)


def test_degenerate_boxes_are_fixed_not_refused(engine, photo):
    result = engine.run(photo, "<REGION_TO_CATEGORY>", boxes=[[10, 10, 10, 10], [-50, -50, 500, 500]], **FAST)
    assert len(result.detections) == 2
    assert np.allclose(result.detections.data["prompt_box"][1], [0, 0, 160, 120])
    assert any("1 px" in n for n in result.notes) and any("clipped" in n for n in result.notes)


def test_tiled_mode_merges_tiles(engine):
    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 500, 3), dtype=np.uint8))
    result = engine.run(big, "<OD>", tile=True, slice_wh=256, overlap_wh=32, **FAST)
    assert isinstance(result.raw, list) and len(result.raw) >= 4
    assert result.image_size == (500, 300)
    with pytest.raises(InputError):
        engine.run(big, "<CAPTION>", tile=True, **FAST)


def test_non_rgb_images_are_accepted(engine):
    gray = Image.new("L", (50, 40), 128)
    assert engine.run(gray, "<CAPTION>", **FAST).image_size == (50, 40)


def test_engine_describes_itself(engine):
    assert engine.device == "cpu" and engine.dtype_name == "float32"
    assert "cpu" in engine.describe()
    assert isinstance(engine, FlorenceEngine)
