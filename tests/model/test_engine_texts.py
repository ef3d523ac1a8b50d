"""``FlorenceEngine.run_texts``: N text prompts on one image, one vision call, one ``generate``.

The tiny random checkpoint answers noise, so these tests hold the plumbing to
account (how many times the vision tower and the generation stage run, how many
rows, which texts ran, the notes), and hold the batched answers to what one
:meth:`~FlorenceEngine.run` per text gives: sharing features must not change an
answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from florence_ui import InputError
from florence_ui.core import limits
from florence_ui.model.generation import GenerationSettings

TASK = "<OPEN_VOCABULARY_DETECTION>"
FAST = GenerationSettings(max_new_tokens=12, num_beams=1)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (100, 140, 3), dtype=np.uint8))


@pytest.fixture
def counted(engine, monkeypatch):
    """The engine with its vision tower and its generation stage counted (the real ones still run)."""
    calls = {"vision": [], "generate": []}
    vision, stage = engine.model.get_image_features, engine.generation

    def counting_vision(*args, **kwargs):
        calls["vision"].append(kwargs["pixel_values"].shape[0])
        return vision(*args, **kwargs)

    def counting_stage(model, batch):
        calls["generate"].append(batch.input_ids.shape[0])
        return stage(model, batch)

    monkeypatch.setattr(engine.model, "get_image_features", counting_vision)
    monkeypatch.setattr(engine, "generation", counting_stage)
    engine.clear_cache()
    yield engine, calls
    engine.clear_cache()


def test_n_texts_give_n_results_from_one_vision_call_and_one_generate(counted, photo):
    engine, calls = counted
    texts = ["car", "a person on a bike", "wheels"]  # different lengths: the rows are padded
    results = engine.run_texts(photo, TASK, texts, settings=FAST)
    assert [r.text_input for r in results] == texts
    assert all(r.task == TASK and r.image_size == photo.size for r in results)
    assert calls["vision"] == [1], "the image is encoded once, for every text"
    assert calls["generate"] == [3], "every text is one row of one generate"
    assert all(r.prompts == [f"{TASK}{t}"] for r, t in zip(results, texts, strict=True))
    said = [n for r in results for n in r.notes if "cut off" not in n]  # 12 tokens of noise are often cut off
    assert said == [], "nothing was dropped, so nothing to say"


def test_sharing_features_gives_the_answers_of_one_run_per_text(engine, photo):
    texts = ["car", "a person on a bike", "wheels"]
    batched = engine.run_texts(photo, TASK, texts, settings=FAST, use_cache=False)
    single = [engine.run(photo, TASK, t, settings=FAST, use_cache=False) for t in texts]
    assert [b.raw for b in batched] == [s.raw for s in single]
    for b, s in zip(batched, single, strict=True):
        assert b.detections.data["class_name"].tolist() == s.detections.data["class_name"].tolist()
        assert np.allclose(b.detections.xyxy, s.detections.xyxy)
        assert np.allclose(b.detections.confidence, s.detections.confidence, atol=1e-4, equal_nan=True)


def test_cached_features_skip_the_vision_tower(counted, photo):
    engine, calls = counted
    first = engine.run_texts(photo, TASK, ["car", "dog"], settings=FAST)
    again = engine.run_texts(photo, TASK, ["car", "dog"], settings=FAST)
    assert calls["vision"] == [1], "the second call reads the cache"
    assert [r.cached_features for r in first] == [False, False]
    assert [r.cached_features for r in again] == [True, True]
    engine.run_texts(photo, TASK, ["car", "dog", "cat"], settings=FAST, use_cache=False)
    assert calls["vision"] == [1, 1], "without the cache still one vision call for all three texts"


def test_repeats_and_empty_texts_are_dropped_with_a_note(counted, photo):
    engine, calls = counted
    results = engine.run_texts(photo, TASK, ["car", "  ", "Car", "dog", "", " dog  "], settings=FAST)
    assert [r.text_input for r in results] == ["car", "dog"]
    assert calls["generate"] == [2]
    notes = results[0].notes
    assert any("2 empty texts were dropped" in n for n in notes)
    assert any("Repeated" in n and "'Car'" in n and "'dog'" in n for n in notes)
    assert not any("dropped" in n or "Repeated" in n for n in results[1].notes), "said once, on the first result"


def test_the_per_request_cap_runs_the_first_texts_and_says_so(counted, photo, monkeypatch):
    engine, calls = counted
    monkeypatch.setenv("FLORENCE_UI_MAX_BOXES", "2")
    cap = limits.current().max_boxes
    results = engine.run_texts(photo, TASK, ["car", "dog", "cat", "bike"], settings=FAST, cap=cap)
    assert [r.text_input for r in results] == ["car", "dog"]
    assert calls["generate"] == [2]
    assert any("4 texts were given; only the first 2" in n and "FLORENCE_UI_MAX_BOXES" in n for n in results[0].notes)
    uncapped = engine.run_texts(photo, TASK, ["car", "dog", "cat", "bike"], settings=FAST)
    assert len(uncapped) == 4, "without cap (the CLI, a queue run) every text runs"


def test_a_text_the_engine_refuses_is_skipped_and_the_rest_run(counted, photo, monkeypatch):
    engine, calls = counted
    monkeypatch.setenv("FLORENCE_UI_MAX_TEXT_CHARS", "12")
    results = engine.run_texts(photo, TASK, ["car", "a very long description of a car", "dog"], settings=FAST)
    assert [r.text_input for r in results] == ["car", "dog"]
    assert any("was not asked" in n and "FLORENCE_UI_MAX_TEXT_CHARS" in n for n in results[0].notes)


def test_grounding_runs_once_per_phrase_too(counted, photo):
    engine, calls = counted
    results = engine.run_texts(photo, "<CAPTION_TO_PHRASE_GROUNDING>", ["a car", "a building"], settings=FAST)
    assert [r.task for r in results] == ["<CAPTION_TO_PHRASE_GROUNDING>"] * 2
    assert calls["vision"] == [1] and calls["generate"] == [2]


@pytest.mark.parametrize(
    ("task", "texts", "message"),
    [
        ("<OD>", ["car"], "takes no text prompt"),
        (TASK, [], "needs at least one text"),
        (TASK, ["", "   "], "needs at least one text"),
        (TASK, ["car", 3], "must be a string"),
        ("<NOT_A_TASK>", ["car"], "Unknown Florence-2 task"),
    ],
)
def test_bad_input_gets_a_clear_error_and_runs_nothing(counted, photo, task, texts, message):
    engine, calls = counted
    with pytest.raises(InputError, match=message):
        engine.run_texts(photo, task, texts, settings=FAST)
    assert calls == {"vision": [], "generate": []}


def test_not_an_image_is_refused(engine):
    with pytest.raises(InputError, match="PIL image"):
        engine.run_texts(np.zeros((10, 10, 3), dtype=np.uint8), TASK, ["car"])


def test_a_single_string_is_one_text_not_one_per_letter(engine, photo):
    [result] = engine.run_texts(photo, TASK, "car", settings=FAST)
    assert result.text_input == "car"
