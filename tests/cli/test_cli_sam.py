"""``florence-ui predict --sam MODEL``: each line gets SAM's outlines and scores, and export writes them.

Runs the real command (in-process ``main`` for speed; the tiny offline
Florence-2 and the tiny offline SAM): the documented fields are present and
parallel to ``scores``, ``export --format coco`` writes SAM's polygons, and a
missing or wrong ``--sam`` is the clear message with exit code 2 before any
image is processed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from florence_ui.batch.results_file import read_lines
from florence_ui.cli import EXIT_USAGE, main

FAST = ["--num-beams", "1", "--max-new-tokens", "12"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sam-cli")
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (60 + 10 * i, 80, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_predict_with_sam_writes_documented_fields(images, tiny_checkpoint, tiny_sam_checkpoint, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    boxes = json.dumps([[5, 5, 40, 40], [20, 10, 70, 50]])
    code = main(["predict", str(images), "--task", "<REGION_TO_CATEGORY>", "--task", "<CAPTION>", "--boxes", boxes,
                 "--out", str(out), "--model", str(tiny_checkpoint), "--sam", str(tiny_sam_checkpoint),
                 "--device", "cpu", "--quiet", *FAST])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "sam: " in capsys.readouterr().err
    lines = read_lines(out).lines
    boxed = [line for line in lines if line["task"] == "<REGION_TO_CATEGORY>"]
    texts = [line for line in lines if line["task"] == "<CAPTION>"]
    assert len(boxed) == 2 and len(texts) == 2
    for line in boxed:
        n = line["num_regions"]
        assert n == 2 and line["sam_model"] == str(tiny_sam_checkpoint)
        assert len(line["sam_polygons"]) == len(line["sam_scores"]) == len(line["sam_boxes"]) == len(line["scores"])
        for parts, score in zip(line["sam_polygons"], line["sam_scores"], strict=True):
            assert isinstance(parts, list) and all(len(p) % 2 == 0 and len(p) >= 6 for p in parts)
            assert score is None or 0 <= abs(score) < 10  # SAM's IoU estimate (random weights: any value)
    assert all("sam_polygons" not in line for line in texts)  # nothing to refine in a caption

    coco = tmp_path / "coco"
    assert main(["export", str(out), "--format", "coco", "--out", str(coco), "--model", str(tiny_checkpoint)]) == 0
    annotations = json.loads((coco / "annotations.json").read_text())["annotations"]
    wanted = sorted(round(float(v), 2) for line in boxed for parts in line["sam_polygons"] for p in parts for v in p)
    written = sorted(round(float(v), 2) for a in annotations for seg in a["segmentation"] for v in seg)
    assert wanted and written == wanted  # COCO got SAM's outlines, every part


def test_a_missing_sam_is_exit_2_with_the_message(images, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    code = main(["predict", str(images), "--task", "<OD>", "--out", str(out), "--model", str(tiny_checkpoint),
                 "--sam", str(tmp_path / "no-such-sam"), "--device", "cpu", "--quiet", *FAST])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "Could not load SAM model" in err and "does not exist" in err and "Traceback" not in err
    assert not read_lines(out).lines  # stopped before any image


def test_a_florence_checkpoint_given_as_sam_is_refused(images, tiny_checkpoint, tmp_path, capsys):
    code = main(["predict", str(images), "--task", "<OD>", "--out", str(tmp_path / "r.jsonl"), "--model",
                 str(tiny_checkpoint), "--sam", str(tiny_checkpoint), "--quiet", *FAST])  # fmt: skip
    assert code == EXIT_USAGE and "not SAM" in capsys.readouterr().err


def test_sam_with_ray_is_a_usage_error(images, tmp_path, capsys):
    code = main(["predict", str(images), "--task", "<OD>", "--out", str(tmp_path / "r.jsonl"), "--sam", "slimsam",
                 "--engine", "ray"])  # fmt: skip
    assert code == EXIT_USAGE and "--engine local" in capsys.readouterr().err
