"""Tiled mode: every tile and the whole image in one vision call and one generate, tile-cut boxes merged.

Two engines: the tiny Florence-2 (real pipeline, noise answers) counts the
calls; a white-box detector double (answers the bounding box of the white
pixels it is shown, in the crop's coordinates) checks the geometry of the
merge: an object cut by a tile edge comes back as two parts, which the IOS
non-max merge joins into the one box the whole-image pass also finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from florence_ui import FlorenceEngine, InputError
from florence_ui.core.result import FlorenceResult
from florence_ui.model.generation import GenerationSettings
from florence_ui.model.loading import LoadedModel
from florence_ui.model.tiling import run_tiled, tileable_tasks

FAST = GenerationSettings(max_new_tokens=8, num_beams=1)


class Counting(FlorenceEngine):
    """The real engine, counting its vision calls and generate calls."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.vision_calls: list[int] = []
        self.generate_calls: list[int] = []

    def image_features(self, images, *, use_cache=True):
        self.vision_calls.append(len(images))
        return super().image_features(images, use_cache=use_cache)

    def generate(self, requests, **options):
        self.generate_calls.append(len(requests))
        return super().generate(requests, **options)


def test_all_tiles_and_the_whole_image_go_in_one_vision_call_and_one_generate(engine):
    loaded = LoadedModel(engine.model, engine.processor, engine.model_id, None, engine.device, engine.dtype)
    counting = Counting(loaded)
    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 500, 3), dtype=np.uint8))
    result = counting.run(big, "<OD>", tile=True, slice_wh=256, overlap_wh=32, settings=FAST)
    tiles = len(result.raw) - 1
    assert tiles >= 4 and counting.vision_calls == [tiles + 1] and counting.generate_calls == [tiles + 1]
    assert result.image_size == (500, 300) and "the whole image" in result.notes[0]
    alone = counting.run(big, "<OD>", tile=True, slice_wh=256, overlap_wh=32, whole_image=False, settings=FAST)
    assert len(alone.raw) == tiles and counting.vision_calls[-1] == tiles


@dataclass
class _Request:
    image: Image.Image
    features: object = None


class WhiteBoxDetector:
    """Test double: 'detects' the white pixels of each crop as one box (confidence 0.9)."""

    model_id = "white-box"

    def prepare(self, image, task, text=None, **options):
        return _Request(image)

    def image_features(self, images, *, use_cache=True):
        return [type("F", (), {"features": None})() for _ in images]

    def generate(self, requests, **options):
        out = []
        for request in requests:
            pixels = np.asarray(request.image)
            ys, xs = np.nonzero(pixels.min(axis=2) == 255)
            if len(xs):
                xyxy = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=float)
                det = sv.Detections(xyxy=xyxy, confidence=np.array([0.9]), class_id=np.array([0]))
            else:
                det = sv.Detections.empty()
            out.append(FlorenceResult("<OD>", det, None, "", request.image.size))
        return out


def test_a_tile_cut_object_is_merged_into_one_box():
    scene = np.zeros((300, 500, 3), dtype=np.uint8)
    scene[50:150, 200:300] = 255  # straddles the first vertical tile edge (tiles of 256, overlap 32)
    image = Image.fromarray(scene)
    merged = run_tiled(WhiteBoxDetector(), image, "<OD>", slice_wh=256, overlap_wh=32)
    assert merged.detections.xyxy.round().tolist() == [[200.0, 50.0, 300.0, 150.0]]
    parts = run_tiled(WhiteBoxDetector(), image, "<OD>", slice_wh=256, overlap_wh=32, merge="suppress",
                      whole_image=False)  # fmt: skip
    assert len(parts.detections) >= 2  # NMS on IoU keeps the two parts: what the merge is for
    with pytest.raises(InputError, match="merge must be one of"):
        run_tiled(WhiteBoxDetector(), image, "<OD>", merge="average")


def test_tileable_tasks_are_the_table_rows_that_tile():
    from florence_ui.core.tasks import TASKS

    assert tileable_tasks() == [task for task in TASKS if task.tileable] != []
