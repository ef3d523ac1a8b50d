"""results.jsonl: crash-safe writing, forgiving reading, and re-parsing real Florence-2 answers.

Meaning is checked on the golden outputs (real generations): a line holding a
golden ``generated_text`` must come back as the golden geometry (±1 px) and
labels, through the weights-free parser that ``export`` and ``push`` use.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from florence_ui.batch.generate import encode_detections
from florence_ui.batch.results_file import (
    JsonlWriter,
    labeled_images,
    line_key,
    load_parser,
    parser_for,
    read_lines,
    repair,
    result_from_line,
)
from florence_ui.core.tasks import OutputKind, get_task
from florence_ui.model.loading import ModelLoadError

TOL_PX = 1.0


@pytest.fixture(scope="module")
def parser(tiny_checkpoint):
    return load_parser(str(tiny_checkpoint))


def golden_line(vec: dict, image: str, **extra) -> dict:
    """A results line as any Florence-2 runtime could write it: the raw answer and the image."""
    width, height = vec["image_size"]
    line = {"image": image, "width": width, "height": height, "task": vec["task"], "text_input": vec["text_input"],
            "boxes": None, "generated_text": vec["generated_text"], "model": vec["model"]}  # fmt: skip
    return line | extra


def test_parser_loads_no_weights(parser, tiny_checkpoint):
    assert parser.model is None
    assert hasattr(parser.processor, "post_process_generation")
    assert parser.model_id == str(tiny_checkpoint)


def test_parser_errors_are_model_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_parser(str(tmp_path / "nowhere"))


def test_parser_for_uses_the_files_own_model(tiny_checkpoint):
    lines = [{"image": "a.png", "task": "<OD>", "generated_text": "", "model": str(tiny_checkpoint)}]
    assert parser_for(lines).model_id == str(tiny_checkpoint)


def test_every_golden_vector_round_trips_to_labeled_images(parser, golden, tmp_path):
    for i, vec in enumerate(golden["vectors"]):
        line = golden_line(vec, str(tmp_path / f"{vec['image']}.png"))
        [item] = labeled_images([line], parser)
        expected, spec = vec["expected"], get_task(vec["task"])
        assert (item.width, item.height) == tuple(vec["image_size"])
        assert item.model == vec["model"]
        if "text" in expected:
            assert [t.text for t in item.texts] == [expected["text"]], i
            assert [t.task for t in item.texts] == [spec.token]
            assert item.regions == []
            continue
        assert item.texts == []
        if "labels" in expected:
            assert [r.label for r in item.regions] == expected["labels"], i
        if "boxes_xyxy" in expected:
            got = np.array([r.xyxy for r in item.regions], dtype=float)
            want = np.array(expected["boxes_xyxy"], dtype=float)
            assert got.shape == want.shape, i
            assert np.abs(got - want).max() <= TOL_PX, i
        if spec.output is OutputKind.POLYGONS:
            assert item.regions and all(r.polygons for r in item.regions)
        if spec.output is OutputKind.QUADS:
            assert all(r.quad and len(r.quad) == 8 for r in item.regions)


def test_lines_of_one_image_merge_into_one_labeled_image(parser, golden, tmp_path):
    beetle = [v for v in golden["vectors"] if v["image"] == "beetle"]
    path = str(tmp_path / "beetle.png")
    items = labeled_images([golden_line(v, path) for v in beetle], parser)
    assert len(items) == 1
    assert set(items[0].tasks) == {v["task"] for v in beetle}


def test_min_confidence_uses_recorded_scores_and_keeps_unscored(parser, golden, tmp_path):
    od = next(v for v in golden["vectors"] if v["task"] == "<OD>" and len(v["expected"]["labels"]) == 4)
    line = golden_line(od, str(tmp_path / "car.png"), scores=[0.9, 0.2, None, 0.5], text_score=None)
    [item] = labeled_images([line], parser, min_confidence=0.5)
    assert [r.score for r in item.regions] == pytest.approx([0.9, None, 0.5])
    assert [r.label for r in item.regions] == [od["expected"]["labels"][i] for i in (0, 2, 3)]
    caption = next(v for v in golden["vectors"] if v["task"] == "<CAPTION>")
    weak = golden_line(caption, str(tmp_path / "car.png"), text_score=0.1)
    [item] = labeled_images([weak], parser, min_confidence=0.5)
    assert item.texts == []


def test_missing_size_is_read_from_the_image(parser, golden, tmp_path):
    vec = next(v for v in golden["vectors"] if v["task"] == "<OCR_WITH_REGION>")
    path = tmp_path / "book_cover.png"
    Image.new("RGB", tuple(vec["image_size"]), "white").save(path)
    line = golden_line(vec, "book_cover.png")
    del line["width"], line["height"]
    [item] = labeled_images([line], parser, base_dir=tmp_path)  # a relative path resolves beside the file
    assert (item.width, item.height) == tuple(vec["image_size"])
    assert item.image_path == str(tmp_path / "book_cover.png")


def test_region_task_lines_with_pixel_boxes(parser, golden, tmp_path):
    vec = next(v for v in golden["vectors"] if v["task"] == "<REGION_TO_DESCRIPTION>")
    box = [33.6, 159.6, 596.8, 371.76]
    line = golden_line(vec, str(tmp_path / "beetle.png"), text_input=None, boxes=[box],
                       generated_text=[vec["generated_text"]], scores=[0.77])  # fmt: skip
    result = result_from_line(parser, line)
    assert list(result.detections.data["class_name"]) == ["turquoise Volkswagen Beetle"]
    assert result.detections.confidence[0] == pytest.approx(0.77)
    assert np.allclose(result.detections.xyxy[0], box, atol=TOL_PX)


def test_tiled_answers_re_encode_to_parseable_text(parser, golden):
    """Tiled runs store their merged boxes as Florence-2 text; re-parsing gives them back."""
    for vec in (v for v in golden["vectors"] if v["task"] in ("<OD>", "<CAPTION_TO_PHRASE_GROUNDING>")):
        first = parser.parse(vec["task"], vec["generated_text"], tuple(vec["image_size"]), text=vec["text_input"])
        text = encode_detections(parser, first)
        again = parser.parse(vec["task"], text, tuple(vec["image_size"]), text=vec["text_input"])
        assert list(again.detections.data["class_name"]) == list(first.detections.data["class_name"])
        assert np.abs(again.detections.xyxy - first.detections.xyxy).max() <= TOL_PX


def test_writer_writes_strict_json_one_line_each(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({"image": "a.png", "task": "<OD>", "generated_text": "x", "scores": [math.nan, np.float32(0.5)]})
        writer.write({"image": "b.png", "task": "<OD>", "generated_text": "y\nz"})
    raw = path.read_text().splitlines()
    assert len(raw) == 2
    assert json.loads(raw[0])["scores"] == [None, 0.5]
    assert "NaN" not in raw[0]


def test_torn_last_line_is_tolerated_and_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    good = [{"image": f"{i}.png", "task": "<OD>", "generated_text": "</s></s>"} for i in range(3)]
    path.write_text("".join(json.dumps(g) + "\n" for g in good) + '{"image": "3.png", "task": "<O')
    report = read_lines(path)
    assert len(report.lines) == 3 and report.torn_tail and not report.bad
    assert repair(path) is True
    assert path.read_text().endswith("\n") and len(read_lines(path).lines) == 3
    assert repair(path) is False


def test_corrupt_middle_line_is_skipped_and_reported(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"image": "a.png", "task": "<OD>", "generated_text": ""}\nnot json\n[1, 2]\n')
    report = read_lines(path)
    assert len(report.lines) == 1 and [n for n, _ in report.bad] == [2, 3]


def test_complete_last_line_without_newline_gets_one(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"image": "a.png", "task": "<OD>", "generated_text": ""}')
    assert repair(path) is False
    assert path.read_text().endswith("}\n")


def test_line_key_normalises_task_and_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = line_key({"image": "x.png", "task": "OD", "generated_text": ""})
    b = line_key({"image": str(tmp_path / "x.png"), "task": "<OD>", "text_input": None, "boxes": None})
    assert a == b
