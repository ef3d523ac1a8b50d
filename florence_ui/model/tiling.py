"""Dense scenes: ask a detection task of overlapping tiles and of the whole image, then merge (``sv.InferenceSlicer``).

Florence-2 sees every image at 768×768 and answers in at most 1024 tokens, so
a crowded or very large picture loses small objects and gets cut off. Tiling
asks the same question of overlapping crops at full resolution, plus one pass
over the whole image (large objects that no tile holds whole), and merges the
answers on the real token-probability confidences.

The tiles go through ``sv.InferenceSlicer``'s batch callback: every tile of a
batch (and the whole image, in the first batch) is one request of the engine's
public pipeline, with one ``image_features`` call and one ``generate`` for all
of them, not one ``run`` per tile. A batch holds at most
``FLORENCE_UI_MAX_BOXES`` tiles, the same cap as the rows of one request. An
object cut by a tile edge comes back as two partial boxes whose IoU is small
but whose intersection over the smaller box (IOS) is high, so the default merge
is non-max *merge* on IOS: the parts become one box.

Only the engine's public doors are used (``prepare``, ``image_features``,
``generate``), and nothing is imported from the engine (the engine imports this
module: no cycle).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import supervision as sv
from PIL import Image

from florence_ui.core import limits
from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import TASKS, Task, get_task
from florence_ui.errors import InputError
from florence_ui.model.generation import GenerationSettings

__all__ = ["TILE_MERGES", "TileEngine", "run_tiled", "tileable_tasks"]

#: how tile answers are merged: non-max merge on IOS joins tile-cut parts; NMS on IoU keeps the best of duplicates
TILE_MERGES = {
    "merge": (sv.OverlapFilter.NON_MAX_MERGE, sv.OverlapMetric.IOS),
    "suppress": (sv.OverlapFilter.NON_MAX_SUPPRESSION, sv.OverlapMetric.IOU),
}


class TileEngine(Protocol):
    """What tiling needs of an engine: its id and the pipeline's three public doors."""

    model_id: str

    def prepare(self, image: Image.Image, task: str, text: str | None = None, **options: Any) -> Any: ...

    def image_features(self, images: Sequence[Image.Image], *, use_cache: bool = True) -> list[Any]: ...

    def generate(
        self, requests: Sequence[Any], *, use_cache: bool = True, time_limit: float | None = None
    ) -> list[FlorenceResult]: ...


def tileable_tasks() -> list[Task]:
    """The tasks the page's "Tiled" switch applies to (the task table's ``tileable`` flag)."""
    return [task for task in TASKS if task.tileable]


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
    whole_image: bool = True,
    merge: str = "merge",
) -> FlorenceResult:
    """Tiled detection for tileable tasks (OD, open-vocabulary detection, grounding): batched tiles + whole image.

    ``engine.run(..., tile=True)`` is the way in (it checks the settings and the
    image first). ``merge``: ``"merge"`` (non-max merge on IOS, default) or
    ``"suppress"`` (NMS on IoU); ``iou_threshold`` is that metric's threshold.
    ``whole_image``: also ask the whole image, merged with the tiles. A host's
    deadline (``time_limit``) applies to each batch's one ``generate``.
    """
    spec = get_task(task)
    if not spec.tileable:
        raise InputError(f"Tiled mode is for detection tasks, not {spec.name}.")
    if merge not in TILE_MERGES:
        raise InputError(f"merge must be one of {', '.join(TILE_MERGES)}, got {merge!r}.")
    overlap_filter, metric = TILE_MERGES[merge]
    started = time.perf_counter()
    raws: list[str] = []
    state: dict[str, Any] = {"truncated": False, "whole": None, "calls": 0, "vision_s": 0.0, "generate_s": 0.0}
    limit = {"time_limit": time_limit} if time_limit is not None else {}

    def ask(crops: list[Image.Image]) -> list[FlorenceResult]:
        """One vision call and one generate for ``crops``: requests of the engine's pipeline."""
        requests = [engine.prepare(crop, spec.token, text, settings=settings) for crop in crops]
        t0 = time.perf_counter()
        features = engine.image_features([r.image for r in requests], use_cache=False)
        state["vision_s"] += time.perf_counter() - t0
        shared = [replace(r, features=f.features) for r, f in zip(requests, features, strict=True)]
        t1 = time.perf_counter()
        results = engine.generate(shared, use_cache=False, **limit)
        state["generate_s"] += time.perf_counter() - t1
        state["calls"] += 1
        for part in results:
            raws.append(part.raw)  # tileable tasks take no boxes: one answer string per crop
            state["truncated"] |= part.truncated
        return results

    def callback(tiles: list[np.ndarray]) -> list[sv.Detections]:
        crops = [Image.fromarray(np.ascontiguousarray(tile)) for tile in tiles]
        first = whole_image and state["whole"] is None and state["calls"] == 0
        results = ask(([image] if first else []) + crops)
        if first:
            state["whole"] = results.pop(0).detections
        return [part.detections for part in results]

    slicer = sv.InferenceSlicer(
        callback=callback,
        slice_wh=(min(slice_wh, image.width), min(slice_wh, image.height)),
        overlap_wh=(min(overlap_wh, max(0, image.width - 1)), min(overlap_wh, max(0, image.height - 1))),
        overlap_filter=overlap_filter,
        overlap_metric=metric,
        iou_threshold=iou_threshold,
        batch_size=max(2, limits.current().max_boxes),
    )
    tiled = slicer(np.asarray(image))
    tiles = len(raws) - (1 if state["whole"] is not None else 0)
    detections = tiled
    if state["whole"] is not None and len(state["whole"]):
        detections = _merge(sv.Detections.merge([_plain(tiled), _plain(state["whole"])]), merge, iou_threshold)
    result = FlorenceResult(spec.token, detections, None, raws, image.size, text, None)
    result.model = engine.model_id
    result.truncated = bool(state["truncated"])
    result.timings = {
        "vision_s": state["vision_s"],
        "generate_s": state["generate_s"],
        "total_s": time.perf_counter() - started,
    }
    how = "non-max merge at IOS" if merge == "merge" else "NMS at IoU"
    whole = " + the whole image" if state["whole"] is not None else ""
    result.notes = [
        f"Tiled: {tiles} tiles of {slice_wh}px{whole} in {state['calls']} batched call(s), {how} {iou_threshold}."
    ]
    return result


def _plain(detections: sv.Detections) -> sv.Detections:
    """Detections without slicer metadata, so the tiled and the whole-image sets merge cleanly."""
    out = sv.Detections(
        xyxy=detections.xyxy,
        mask=detections.mask,
        confidence=detections.confidence,
        class_id=detections.class_id,
        tracker_id=detections.tracker_id,
        data=dict(detections.data),
    )
    return out


def _merge(detections: sv.Detections, merge: str, threshold: float) -> sv.Detections:
    if len(detections) == 0:
        return detections
    if detections.confidence is None:
        detections.confidence = np.ones(len(detections), dtype=float)
    if merge == "merge":
        return detections.with_nmm(threshold=threshold, overlap_metric=sv.OverlapMetric.IOS)
    return detections.with_nms(threshold=threshold, overlap_metric=sv.OverlapMetric.IOU)
