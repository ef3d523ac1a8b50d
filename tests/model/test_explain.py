"""The teaching view's explanation (one teacher-forced pass) on the tiny Florence-2, in the suite's dtype.

The tiny model's answers are noise, so these hold the rules: shapes follow the
processor (grid side from the image token count), token pieces and
probabilities are the result's own, every token's attention is a distribution
over the patches, the model's eye is the vision tower's exact input, and the
pass leaves the shared model as it found it.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from florence_ui import FlorenceEngine
from florence_ui.core.tasks import CAPTION_TASK, DEFAULT_TASK, NAME_REGION_TASK
from florence_ui.errors import InputError
from florence_ui.model.explain import explain, grid_side

REGION_TASK = NAME_REGION_TASK.token  # region → category: one answer per box


@pytest.fixture(scope="module")
def auto_engine(tiny_checkpoint):
    """dtype auto: bf16 or fp32 as FLORENCE_UI_CPU_BF16 says (the suite runs both)."""
    return FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="auto")


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), "RGB")


def check_rules(engine, result, ex):
    side = grid_side(engine.num_image_tokens)
    assert side * side + 1 == engine.num_image_tokens == ex.num_image_tokens
    assert ex.grid_side == side
    flat = [t for row in result.output_tokens for t in row]
    assert len(ex.tokens) == len(flat)
    assert ex.attention.shape == (len(flat), side, side)
    # pieces, ids and probabilities are the result's own, exactly
    assert [(t.id, t.piece, t.probability) for t in ex.tokens] == [(i, p, q) for i, p, q in flat]
    assert [t.row for t in ex.tokens] == [r for r, row in enumerate(result.output_tokens) for _ in row]
    assert [t.step for t in ex.tokens] == [s for row in result.output_tokens for s in range(len(row))]
    # each token's attention is a distribution over the patches
    assert np.all(ex.attention >= 0)
    np.testing.assert_allclose(ex.attention.reshape(len(flat), -1).sum(axis=1), 1.0, atol=1e-4)
    assert np.all((ex.image_share > 0) & (ex.image_share <= 1 + 1e-6))
    assert np.all((ex.pooled_share >= 0) & (ex.pooled_share <= 1 + 1e-6))
    # alternatives: top-k, best first, probabilities
    for alts in ex.alternatives:
        probs = [p for _, p in alts]
        assert len(alts) == 5 and probs == sorted(probs, reverse=True) and 0 <= probs[-1] <= probs[0] <= 1
    # the input side: per row the sentence's tokens between <s> and </s>
    tok = engine.processor.tokenizer
    assert len(ex.input_tokens) == len(result.prompts)
    for pieces, sentence in zip(ex.input_tokens, result.model_prompts, strict=True):
        assert pieces[0] == tok.bos_token and pieces[-1] == tok.eos_token
        assert tok.convert_tokens_to_string(pieces[1:-1]) == sentence
    assert "layer" in ex.averaged and "head" in ex.averaged and f"{side}×{side}" in ex.averaged


def test_text_task_explained(auto_engine, picture):
    result = auto_engine.run(picture, CAPTION_TASK.token, max_new_tokens=10, num_beams=1)
    ex = explain(auto_engine, picture, result)
    check_rules(auto_engine, result, ex)
    # the model's eye is the vision tower's exact input, size and pixels
    size = auto_engine.processor.image_processor.size
    assert ex.eye.size == (size["width"], size["height"])
    again = auto_engine.pixel_values(ex.eye).float()
    step = 1 / 255 / min(auto_engine.processor.image_processor.image_std)
    assert (again - auto_engine.pixel_values(picture).float()).abs().max() <= step + 0.05  # one grey level (+ bf16)
    # greedy: the teacher-forced softmax gives back the probabilities generation reported (the alignment is
    # right), except an end token forced at the length limit (generate's logits processor made it certain)
    reported = np.array([t.probability for t in ex.tokens], dtype=float)
    free = slice(0, len(reported) - 1) if result.truncated else slice(None)
    np.testing.assert_allclose(np.array(ex.forced_probability)[free], reported[free], rtol=0.1, atol=1e-3)


def test_region_task_with_several_boxes(auto_engine, picture):
    boxes = [[2, 3, 40, 50], [30, 10, 85, 55], [0, 0, 89, 59]]
    result = auto_engine.run(picture, REGION_TASK, boxes=boxes, max_new_tokens=8, num_beams=1)
    assert len(result.output_tokens) == 3
    ex = explain(auto_engine, picture, result)
    check_rules(auto_engine, result, ex)
    assert {t.row for t in ex.tokens} == {0, 1, 2}
    assert len(ex.prompts) == 3 and ex.model_prompts == result.model_prompts


def test_beam_search_detection_keeps_the_reported_probabilities(auto_engine, picture):
    result = auto_engine.run(picture, DEFAULT_TASK.token, max_new_tokens=12, num_beams=3)
    ex = explain(auto_engine, picture, result)
    check_rules(auto_engine, result, ex)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_both_dtypes_and_the_model_is_left_as_it_was(tiny_checkpoint, picture, dtype):
    engine = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", dtype=dtype)
    before = engine.run(picture, CAPTION_TASK.token, max_new_tokens=6, num_beams=1)
    check_rules(engine, before, explain(engine, picture, before))
    assert engine.model.config._attn_implementation == "sdpa"  # noqa: SLF001 - what the loader set, restored
    after = engine.run(picture, CAPTION_TASK.token, max_new_tokens=6, num_beams=1)
    assert after.output_tokens == before.output_tokens


def test_what_cannot_be_explained_says_why(engine, picture, tiny_checkpoint):
    parsed = engine.parse(CAPTION_TASK.token, "a photo", picture.size)
    with pytest.raises(InputError, match="no generated tokens"):
        explain(engine, picture, parsed)
    result = engine.run(picture, CAPTION_TASK.token, max_new_tokens=4, num_beams=1)
    with pytest.raises(InputError, match="no model weights"):
        explain(FlorenceEngine.parser_only(str(tiny_checkpoint)), picture, result)
    with pytest.raises(InputError, match="PIL image"):
        explain(engine, None, result)


def test_grid_side_is_derived_not_assumed():
    assert grid_side(577) == 24 and grid_side(5) == 2
    with pytest.raises(InputError, match="square grid"):
        grid_side(576)
