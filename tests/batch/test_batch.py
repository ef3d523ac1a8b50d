"""The batch core on the tiny offline Florence-2: batching changes speed, never answers.

The tiny model's answers are noise, so these tests hold plumbing: a batched
answer equals ``engine.run`` on the same image, failures stay with their image,
and resume keys match the lines written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sample_data import make_photo_folder

from florence_ui import GenerationSettings
from florence_ui.batch.results_file import JsonlWriter, line_key, result_from_line
from florence_ui.batch.runner import (
    Job,
    TaskRequest,
    boxes_for,
    find_images,
    load_image,
    make_jobs,
    parse_boxes_arg,
    plan,
    process_images,
)

FAST = GenerationSettings(max_new_tokens=10, num_beams=1)
EXAMPLES = Path(__file__).resolve().parents[2] / "florence_ui" / "examples"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photo_folder(tmp_path_factory.mktemp("batch"))


def test_find_images_recurses_skips_non_images_and_hidden(photos):
    warnings: list[str] = []
    found, missing = find_images([photos, photos / "missing.png"], warnings.append)
    names = {Path(p).name for p in found}
    assert "broken.jpg" in names and "pixel.png" in names
    assert "notes.txt" not in names and "skip.png" not in names
    assert all(Path(p).is_absolute() for p in found)
    assert any("notes.txt" in w for w in warnings)
    assert missing == [{"image": str(photos / "missing.png"), "task": None, "error": "no such file or directory"}]


def test_load_image_explains_broken_files(photos):
    with pytest.raises(ValueError, match="damaged|not an image"):
        load_image(str(photos / "broken.jpg"))
    image, digest = load_image(str(photos / "nested" / "pixel.png"))
    assert image.size == (1, 1) and image.mode == "RGB" and len(digest) == 64


def test_boxes_argument_inline_file_and_per_image(tmp_path):
    assert parse_boxes_arg("[[1, 2, 30, 40]]") == [[1.0, 2.0, 30.0, 40.0]]
    spec_file = tmp_path / "boxes.json"
    spec_file.write_text(json.dumps({"a.jpg": [[0, 0, 5, 5]], str(tmp_path / "b.jpg"): [[1, 1, 2, 2]]}))
    spec = parse_boxes_arg(str(spec_file))
    assert boxes_for(spec, str(tmp_path / "x" / "a.jpg")) == [[0.0, 0.0, 5.0, 5.0]]
    assert boxes_for(spec, str(tmp_path / "b.jpg")) == [[1.0, 1.0, 2.0, 2.0]]
    assert boxes_for(spec, str(tmp_path / "c.jpg")) is None
    with pytest.raises(ValueError):
        parse_boxes_arg("[[1, 2, 3]]")


def test_box_task_without_boxes_for_an_image_fails_alone(tmp_path):
    jobs, failures = make_jobs(
        ["/x/a.jpg", "/x/b.jpg"], [TaskRequest("<REGION_TO_CATEGORY>")], {"a.jpg": [[0, 0, 1, 1]]}
    )
    assert [j.image for j in jobs] == ["/x/a.jpg"]
    assert failures[0]["image"] == "/x/b.jpg" and "boxes" in failures[0]["error"]


def test_batched_answers_equal_single_runs(engine, photos):
    images = [str(p) for p in sorted(photos.glob("*.jpg")) if p.name != "broken.jpg"][:2]
    assert len(images) >= 2
    boxes = ((5.0, 5.0, 60.0, 50.0), (0.0, 0.0, 5000.0, 5000.0))  # the second is clipped per image
    work = [(p, [Job(p, "<OD>"), Job(p, "<CAPTION>"), Job(p, "<REGION_TO_DESCRIPTION>", None, boxes),
                 Job(p, "<OPEN_VOCABULARY_DETECTION>", "a cat")]) for p in images]  # fmt: skip
    outcomes = process_images(engine, work, FAST)
    assert [o.image for o in outcomes] == images
    for outcome in outcomes:
        assert not outcome.failures
        image, digest = load_image(outcome.image)
        assert [line["task"] for line in outcome.lines] == [j.task for j in work[0][1]]
        for line in outcome.lines:
            single = engine.run(image, line["task"], line["text_input"], line["boxes"], settings=FAST, use_cache=False)
            assert line["generated_text"] == single.raw
            assert (line["width"], line["height"]) == image.size
            assert line["image_sha256"] == digest
            assert line["model"] == engine.model_id
            assert line["num_regions"] == len(single.detections) == len(line["scores"])
            assert line["max_new_tokens"] == 10 and line["num_beams"] == 1
        region = next(line for line in outcome.lines if line["task"] == "<REGION_TO_DESCRIPTION>")
        assert region["boxes"] == [list(b) for b in boxes]  # as asked (resume key), the engine clips
        assert isinstance(region["generated_text"], list) and len(region["generated_text"]) == 2
        assert any("clipped" in note for note in region["notes"])


def test_a_bad_image_or_job_fails_alone(engine, photos):
    good = str(sorted(photos.glob("*.jpg"))[0])
    broken, pixel = str(photos / "broken.jpg"), str(photos / "nested" / "pixel.png")
    outside = ((5000.0, 5000.0, 6000.0, 6000.0),)
    work = [(broken, [Job(broken, "<OD>")]), (pixel, [Job(pixel, "<OD>"), Job(pixel, "<REGION_TO_OCR>", None, outside)]),
            (good, [Job(good, "<CAPTION>")])]  # fmt: skip
    broken_out, pixel_out, good_out = process_images(engine, work, FAST)
    assert not broken_out.lines and broken_out.failures[0]["task"] is None
    assert "damaged" in broken_out.failures[0]["error"] or "not an image" in broken_out.failures[0]["error"]
    assert [line["task"] for line in pixel_out.lines] == ["<OD>"]
    assert (pixel_out.lines[0]["width"], pixel_out.lines[0]["height"]) == (1, 1)
    assert pixel_out.failures[0]["task"] == "<REGION_TO_OCR>" and "outside" in pixel_out.failures[0]["error"]
    assert [line["task"] for line in good_out.lines] == ["<CAPTION>"] and not good_out.failures


def test_lines_reparse_to_the_same_detections(engine, photos):
    path = str(sorted(photos.glob("*.jpg"))[0])
    boxes = ((10.0, 10.0, 80.0, 60.0), (30.0, 20.0, 200.0, 150.0))
    [outcome] = process_images(engine, [(path, [Job(path, "<REGION_TO_SEGMENTATION>", None, boxes)])], FAST)
    [line] = outcome.lines
    image, _ = load_image(path)
    run = engine.run(image, "<REGION_TO_SEGMENTATION>", boxes=[list(b) for b in boxes], settings=FAST)
    again = result_from_line(engine, json.loads(json.dumps(line)))
    assert np.allclose(again.detections.xyxy, run.detections.xyxy, atol=0.01)
    assert np.allclose(again.detections.confidence, run.detections.confidence, atol=1e-4, equal_nan=True)


def test_tiled_lines_are_marked_and_reparseable(engine, photos):
    path = str(sorted(photos.glob("*.jpg"))[0])
    [outcome] = process_images(engine, [(path, [Job(path, "<OD>"), Job(path, "<CAPTION>")])], FAST, tile=True)
    od, caption = outcome.lines
    assert od["tiled"] is True and isinstance(od["generated_text"], str) and od["tile_generated_text"]
    assert "tiled" not in caption  # tiling applies to detection tasks only
    assert len(result_from_line(engine, od).detections) == od["num_regions"]


def test_plan_skips_what_the_file_holds(engine, photos, tmp_path):
    images = [str(p) for p in sorted(photos.glob("*.jpg")) if p.name != "broken.jpg"][:2]
    jobs, _ = make_jobs(images, [TaskRequest("<OD>"), TaskRequest("<REGION_TO_CATEGORY>")], [[0, 0, 9999, 10]])
    out = tmp_path / "r.jsonl"
    [first] = process_images(engine, [(images[0], [j for j in jobs if j.image == images[0]])], FAST)
    with JsonlWriter(out) as writer:
        for line in first.lines:
            writer.write(line)
    assert {line_key(json.loads(t)) for t in out.read_text().splitlines()} == {j.key() for j in jobs[:2]}
    pending, done = plan(jobs, out, print)
    assert done == 2 and [j.image for j in pending] == [images[1], images[1]]


def test_model_failures_are_isolated_to_their_image(engine, photos, monkeypatch):
    """A vision-tower or generate failure on a batch is retried image by image; only the culprit fails.

    The generate failure comes through the engine's generation seam (a stage that runs out of memory on
    more than one row); the vision failure, which the tiny model cannot produce, is patched on one engine.
    """
    from florence_ui.model.engine import FlorenceEngine
    from florence_ui.model.generation import TransformersGeneration
    from florence_ui.model.loading import LoadedModel

    class OutOfMemoryOnBatches(TransformersGeneration):
        def __call__(self, model, batch):
            if batch.input_ids.shape[0] > 1:
                raise RuntimeError("out of memory")
            return super().__call__(model, batch)

    loaded = LoadedModel(engine.model, engine.processor, engine.model_id, None, engine.device, engine.dtype)
    flaky = FlorenceEngine(loaded, generation=OutOfMemoryOnBatches())
    real_features = flaky.image_features

    def features(images, **kwargs):
        if any(im.size == (1, 1) for im in images):
            raise RuntimeError("vision boom")
        return real_features(images, **kwargs)

    monkeypatch.setattr(flaky, "image_features", features)
    paths = [str(p) for p in sorted(photos.glob("*.jpg")) if p.name != "broken.jpg"][:2]
    paths.append(str(photos / "nested" / "pixel.png"))
    outcomes = process_images(flaky, [(p, [Job(p, "<OD>")]) for p in paths], FAST)
    assert [len(o.lines) for o in outcomes] == [1, 1, 0]
    assert "vision boom" in outcomes[2].failures[0]["error"]
