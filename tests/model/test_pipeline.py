"""The engine's public pipeline on the tiny offline Florence-2: prepare → image features → generate → finish.

Every caller (``run``, the batch runner, tiling) goes through these doors, so
these tests hold what they promise: a bad request fails alone, N requests in
one ``generate`` answer exactly as N runs, every result is finished the same way
(token counts, probabilities, timings, the time limit), and the generation
stage can be replaced without replacing anything else.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from florence_ui import FlorenceEngine, GenerationSettings, InputError
from florence_ui.batch.generate import run_task_batch
from florence_ui.batch.runner import Job
from florence_ui.model.generation import GenerationInput, GenerationOutput, PreparedRequest, TransformersGeneration
from florence_ui.model.loading import LoadedModel

FAST = GenerationSettings(max_new_tokens=12, num_beams=1)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in ((160, 120), (90, 140))]


class Recording(TransformersGeneration):
    """The default stage, remembering every batch it was given."""

    def __init__(self) -> None:
        self.batches: list[GenerationInput] = []

    def __call__(self, model, batch: GenerationInput) -> GenerationOutput:
        self.batches.append(batch)
        return super().__call__(model, batch)


def engine_with(engine: FlorenceEngine, generation) -> FlorenceEngine:
    """Another engine on the same loaded model (no reload), with its own generation stage."""
    loaded = LoadedModel(engine.model, engine.processor, engine.model_id, None, engine.device, engine.dtype)
    return FlorenceEngine(loaded, generation=generation)


def mixed_requests(engine: FlorenceEngine, photos: list[Image.Image]) -> list[PreparedRequest]:
    """Four tasks of every input kind over two images: prompts of different lengths, 1 or 2 rows each."""
    first, second = photos
    return [
        engine.prepare(first, "<OD>", settings=FAST),
        engine.prepare(second, "<CAPTION>", settings=FAST),
        engine.prepare(first, "<REGION_TO_CATEGORY>", boxes=[[5, 5, 60, 50], [70, 20, 150, 110]], settings=FAST),
        engine.prepare(second, "<OPEN_VOCABULARY_DETECTION>", "a small red cat", settings=FAST),
    ]


def test_prepare_validates_one_request_and_builds_its_prompts(engine, photos):
    request = engine.prepare(photos[0], "<REGION_TO_CATEGORY>", boxes=[[60, 50, 5, 5]], max_new_tokens=7)
    assert request.spec.token == "<REGION_TO_CATEGORY>" and request.rows == 1
    assert request.boxes == ((5.0, 5.0, 60.0, 50.0),) and request.notes == ("Box 1: corners swapped",)
    assert request.settings == GenerationSettings(7, 3) and request.size == (160, 120)
    gray = engine.prepare(Image.new("L", (30, 20)), "<CAPTION>")
    assert gray.image.mode == "RGB"
    for args, kwargs, message in [
        (("<REGION_TO_CATEGORY>",), {}, "needs at least one box"),
        (("<OPEN_VOCABULARY_DETECTION>", "  "), {}, "needs a text prompt"),
        (("<REGION_TO_CATEGORY>",), {"boxes": [[500, 500, 600, 600]]}, "outside"),
        (("<OD>",), {"num_beams": 9}, "num_beams"),
    ]:
        with pytest.raises(InputError, match=message):
            engine.prepare(photos[0], *args, **kwargs)


def test_a_bad_request_in_a_batch_fails_alone(engine, photos):
    path_a, path_b = "a.png", "b.png"
    images = {path_a: photos[0], path_b: photos[1]}
    jobs = [Job(path_a, "<REGION_TO_CATEGORY>", None, ((5, 5, 60, 50),)),
            Job(path_b, "<REGION_TO_CATEGORY>", None, ((500, 500, 600, 600),)),  # outside image b
            Job(path_b, "<REGION_TO_CATEGORY>", None, ((1, 1, 80, 80),))]  # fmt: skip
    answers = run_task_batch(engine, "<REGION_TO_CATEGORY>", jobs, images, {}, FAST)
    by_job = {id(a.job): a for a in answers}
    assert "outside" in by_job[id(jobs[1])].error
    for job in (jobs[0], jobs[2]):
        assert by_job[id(job)].error is None and len(by_job[id(job)].result.detections) == 1


def test_generate_of_n_requests_equals_n_runs(engine, photos):
    requests = mixed_requests(engine, photos)
    batched = engine.generate(requests, use_cache=False)
    assert [r.task for r in batched] == [r.spec.token for r in requests]
    for request, together in zip(requests, batched, strict=True):
        alone = engine.run(request.image, request.spec.token, request.text,
                           [list(b) for b in request.boxes] if request.boxes else None, settings=FAST, use_cache=False)  # fmt: skip
        assert together.raw == alone.raw
        assert [[t[0] for t in row] for row in together.output_tokens] == [
            [t[0] for t in row] for row in alone.output_tokens
        ]
        assert together.prompt_tokens == alone.prompt_tokens and together.generated_tokens == alone.generated_tokens
        assert together.prompts == alone.prompts and together.notes == alone.notes
        assert np.allclose(together.detections.confidence, alone.detections.confidence, atol=1e-4, equal_nan=True)


def test_requests_with_different_settings_go_in_one_call_per_settings(engine, photos):
    stage = Recording()
    recording = engine_with(engine, stage)
    short, long = GenerationSettings(3, 1), GenerationSettings(12, 1)
    requests = [recording.prepare(photos[0], "<OD>", settings=short), recording.prepare(photos[1], "<OD>", settings=long),
                recording.prepare(photos[1], "<CAPTION>", settings=short)]  # fmt: skip
    results = recording.generate(requests)
    assert [b.settings for b in stage.batches] == [short, long]
    assert [len(b.requests) for b in stage.batches] == [2, 1]
    assert [r.image_size for r in results] == [(160, 120), (90, 140), (90, 140)]  # results in the order asked
    assert results[0].truncated and any("max_new_tokens=3" in n for n in results[0].notes)
    assert all(row <= 3 for row in results[0].generated_tokens + results[2].generated_tokens)


def test_image_features_are_batched_and_cached(engine, photos):
    engine.clear_cache()
    together = engine.image_features(photos)
    assert [hit for _, hit in together] == [False, False]
    alone = [engine.image_features([p], use_cache=False)[0].features for p in photos]
    for (features, _), single in zip(together, alone, strict=True):
        assert features.shape == (1, engine.num_image_tokens, single.shape[-1])
        assert torch.allclose(features, single, atol=1e-5)
    assert [hit for _, hit in engine.image_features([photos[1], photos[0]])] == [True, True]
    uncached = engine.image_features(photos, use_cache=False)
    assert [hit for _, hit in uncached] == [False, False]


def test_the_generation_stage_is_replaceable_and_sees_every_row(engine, photos, monkeypatch):
    monkeypatch.delenv("FLORENCE_UI_REQUEST_TIMEOUT", raising=False)
    stage = Recording()
    recording = engine_with(engine, stage)
    boxes = [[5, 5, 60, 50], [70, 20, 150, 110]]
    result = recording.run(photos[0], "<REGION_TO_CATEGORY>", boxes=boxes, settings=FAST)
    [batch] = stage.batches
    assert [r.spec.token for r in batch.requests] == ["<REGION_TO_CATEGORY>"]
    assert batch.input_ids.shape[0] == batch.attention_mask.shape[0] == batch.image_features.shape[0] == 2
    assert batch.image_features.shape[1] == engine.num_image_tokens
    assert batch.settings == FAST and batch.max_time == 180.0  # FLORENCE_UI_REQUEST_TIMEOUT's default
    assert result.raw == engine.run(photos[0], "<REGION_TO_CATEGORY>", boxes=boxes, settings=FAST).raw


def test_a_host_time_limit_and_the_operator_limit_reach_the_stage(engine, photos, monkeypatch):
    stage = Recording()
    recording = engine_with(engine, stage)
    recording.run(photos[0], "<CAPTION>", settings=FAST, time_limit=5)
    monkeypatch.setenv("FLORENCE_UI_REQUEST_TIMEOUT", "42")
    recording.generate([recording.prepare(photos[0], "<CAPTION>", settings=FAST)])
    recording.generate([recording.prepare(photos[0], "<CAPTION>", settings=FAST)], time_limit=100)
    assert [b.max_time for b in stage.batches] == [5.0, 42.0, 42.0]


def test_batch_results_are_complete_and_obey_the_time_limit(engine, photos, monkeypatch):
    """The batch path finishes results like run(): token data, timings, and the request time limit."""
    images = {"a.png": photos[0], "b.png": photos[1]}
    features = {path: f for path, (f, _) in zip(images, engine.image_features(list(images.values())), strict=True)}
    jobs = [Job("a.png", "<OD>"), Job("b.png", "<OD>")]
    for answer in run_task_batch(engine, "<OD>", jobs, images, features, FAST):
        result = answer.result
        assert result.prompt_tokens and result.prompt_tokens[0] > engine.num_image_tokens
        assert result.output_tokens and len(result.output_tokens[0]) == len(engine.run(
            images[answer.job.image], "<OD>", settings=FAST).output_tokens[0])  # fmt: skip
        assert set(result.timings) == {"vision_s", "generate_s", "total_s"}
    monkeypatch.setenv("FLORENCE_UI_REQUEST_TIMEOUT", "1")
    min_new = engine.model.generation_config.min_new_tokens
    engine.model.generation_config.min_new_tokens = 1024  # the tiny model would stop early otherwise
    try:
        slow = GenerationSettings(max_new_tokens=1024, num_beams=4)
        [answer] = run_task_batch(engine, "<OD>", [Job("a.png", "<OD>")], images, features, slow)
    finally:
        engine.model.generation_config.min_new_tokens = min_new
    result = answer.result
    assert result.truncated and result.timings["generate_s"] < 5
    assert any("1 s time limit (FLORENCE_UI_REQUEST_TIMEOUT)" in note for note in result.notes)
