"""Dense scenes: run a detection task per tile and merge with NMS (``sv.InferenceSlicer``).

Florence-2 sees every image at 768×768 and answers in at most 1024 tokens, so
a crowded or very large picture loses small objects and gets cut off. Tiling
asks the same question of overlapping crops at full resolution and merges the
answers with non-max suppression on the real token-probability confidences.

It uses only the engine's public ``run`` (each tile is one ordinary request), and
imports nothing from the engine (the engine imports this module: no cycle).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np
import supervision as sv
from PIL import Image

from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import get_task
from florence_ui.errors import InputError
from florence_ui.model.generation import GenerationSettings


class TileEngine(Protocol):
    """What tiling needs of an engine: its id and one ordinary ``run`` per tile."""

    model_id: str

    def run(self, image: Image.Image, task: str, text: str | None = None, **options: Any) -> FlorenceResult: ...


def run_tiled(
    engine: TileEngine,
    image: Image.Image,
    task: str,
    text: str | None = None,
    *,
    settings: GenerationSettings | None = None,
    time_limit: float | None = None,
    slice_wh: int = 768,
    overlap_wh: int = 128,
    iou_threshold: float = 0.5,
) -> FlorenceResult:
    """Tiled ``engine.run`` for tileable tasks (OD, open-vocabulary detection, grounding).

    ``engine.run(..., tile=True)`` is the way in (it checks the settings and the image first).
    """
    spec = get_task(task)
    if not spec.tileable:
        raise InputError(f"Tiled mode is for detection tasks, not {spec.name}.")
    started = time.perf_counter()
    raws: list[str] = []
    truncated = False
    # a host's deadline (time_limit) applies to each tile; without one the tile's own run decides
    limit = {"time_limit": time_limit} if time_limit is not None else {}

    def callback(tile: Any) -> sv.Detections:
        nonlocal truncated
        crop = tile if isinstance(tile, Image.Image) else Image.fromarray(np.ascontiguousarray(tile))
        part = engine.run(crop, spec.token, text, settings=settings, use_cache=False, **limit)
        raws.append(part.raw)  # tileable tasks take no boxes: one answer string per tile
        truncated |= part.truncated
        return part.detections

    slicer = sv.InferenceSlicer(
        callback=callback,
        slice_wh=(min(slice_wh, image.width), min(slice_wh, image.height)),
        overlap_wh=(min(overlap_wh, max(0, image.width - 1)), min(overlap_wh, max(0, image.height - 1))),
        overlap_filter=sv.OverlapFilter.NON_MAX_SUPPRESSION,
        iou_threshold=iou_threshold,
    )
    detections = slicer(np.asarray(image))
    result = FlorenceResult(spec.token, detections, None, raws, image.size, text, None)
    result.model = engine.model_id
    result.truncated = truncated
    result.timings = {"total_s": time.perf_counter() - started}
    result.notes = [f"Tiled: {len(raws)} tiles of {slice_wh}px, NMS at IoU {iou_threshold}."]
    return result
