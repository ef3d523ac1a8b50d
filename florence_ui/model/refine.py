"""Florence-2 + SAM: its boxes become SAM masks (refine), and a click becomes one labelled object.

Florence-2 knows *what* and roughly *where*; SAM knows the exact outline of
whatever a box or a click points at. Two compositions, both through public
doors only (``FlorenceEngine.run`` and ``SamSegmenter.segment``):

* :func:`refine_result` — every box of an answer (detection, grounding,
  open-vocabulary, region tasks, boxes drawn by hand and asked about) is one
  SAM box prompt, all in one decoder call; referring-expression and region
  segmentation give SAM the box of Florence-2's polygon (as Grounded-SAM-2
  does) and keep that polygon in ``data[POLYGONS]`` beside SAM's mask.
* :func:`click_objects` — one positive click (with its shift-clicks) is one
  object: SAM's mask → its box → Florence-2's region task on all the boxes in
  one ``run`` → one region per object, labelled by Florence-2, outlined and
  scored by SAM.

What a refined row carries (see :mod:`florence_ui.core.fields`): ``mask``
(``detections.mask``, ``(n, H, W)`` bool), ``data[SAM_POLYGONS]`` (the mask's
outlines, what review and the exporters use as the region's geometry),
``data[SAM_SCORE]`` (SAM's IoU estimate, beside Florence-2's ``confidence``),
``data[SAM_BOX]`` (the mask's extent), and for clicks ``data[SAM_POINTS]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
from PIL import Image

from florence_ui.core import limits
from florence_ui.core.fields import SAM_BOX, SAM_POINTS, SAM_POLYGONS, SAM_SCORE
from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import NAME_REGION_TASK, Task, get_task
from florence_ui.errors import InputError

if TYPE_CHECKING:
    from florence_ui.model.engine import FlorenceEngine
    from florence_ui.model.sam import SamSegmenter

__all__ = ["CLICK_TASK", "click_objects", "refine_result", "refinable"]

#: what a click is named with by default: the category of the object inside SAM's box
CLICK_TASK: Task = NAME_REGION_TASK


def refinable(result: FlorenceResult) -> bool:
    """Whether SAM has boxes to refine: a spatial answer that is not read text (OCR lines are not objects)."""
    spec = get_task(result.task)
    return spec.has_regions and not spec.reads_text and len(result.detections) > 0


def refine_result(
    result: FlorenceResult, image: Image.Image, segmenter: SamSegmenter, *, use_cache: bool = True
) -> FlorenceResult:
    """A copy of ``result`` whose rows have SAM masks, outlines and scores; ``result`` itself is untouched.

    Every row's box is one SAM box prompt, all rows in one decoder call on the
    image's (cached) embedding. Rows keep Florence-2's box (``xyxy``), label,
    confidence and polygons; SAM adds ``mask``, ``SAM_POLYGONS``, ``SAM_SCORE``
    and ``SAM_BOX``. An answer without boxes (a caption) or of read text (OCR
    lines are not objects) comes back unrefined, with a note. More rows than
    ``FLORENCE_UI_MAX_BOXES`` (a tiled dense scene) go in several decoder calls
    on the one embedding. ``timings`` gains ``sam_embed_s`` / ``sam_decode_s``;
    the result records ``sam_model`` and whether the embedding was cached.
    """
    if not isinstance(image, Image.Image):
        raise InputError("The image must be a PIL image.")
    if tuple(image.size) != tuple(int(v) for v in result.image_size):
        raise InputError(
            f"The image is {image.size[0]}x{image.size[1]} but the answer is for a "
            f"{result.image_size[0]}x{result.image_size[1]} image: refine with the image it was asked about."
        )
    det = result.detections[np.arange(len(result.detections))]  # a copy: the caller's result keeps no masks
    out = replace(result, detections=det, notes=list(result.notes), timings=dict(result.timings))
    if not refinable(result):
        why = "it is read text (OCR), not objects" if get_task(result.task).reads_text else "it has no boxes"
        out.notes.append(f"Nothing for SAM to refine in this {get_task(result.task).name} answer: {why}.")
        return out
    started = time.perf_counter()
    timings: dict[str, float] = {}
    boxes = [[float(v) for v in box] for box in det.xyxy]
    step = max(1, limits.current().max_boxes)
    parts = []
    for start in range(0, len(boxes), step):
        got: dict[str, float] = {}
        parts.append(segmenter.segment(image, boxes=boxes[start : start + step], use_cache=use_cache, timings=got))
        for key, value in got.items():
            timings[key] = timings.get(key, 0.0) + value if key != "sam_cached" else timings.get(key, value)
    sam = parts[0] if len(parts) == 1 else sv.Detections.merge(parts)
    det.mask = sam.mask
    for key in (SAM_SCORE, SAM_BOX, SAM_POLYGONS):
        det.data[key] = sam.data[key]
    out.sam_model, out.sam_cached = segmenter.model_id, bool(timings.get("sam_cached"))
    out.timings |= {k: v for k, v in timings.items() if k != "sam_cached"}
    out.timings["sam_s"] = time.perf_counter() - started
    empty = int(sum(1 for p in det.data[SAM_POLYGONS] if not len(p)))
    if empty:
        out.notes.append(f"SAM found no mask in {empty} of {len(det)} boxes; those rows keep Florence-2's geometry.")
    return out


def click_objects(
    engine: FlorenceEngine,
    segmenter: SamSegmenter,
    image: Image.Image,
    points: Sequence[Sequence[float]],
    point_labels: Sequence[int] | None = None,
    task: Task | str = CLICK_TASK,
    *,
    use_cache: bool = True,
    **run_options: Any,
) -> FlorenceResult:
    """Clicks → one labelled, segmented, scored region per object (see :func:`~florence_ui.model.sam.group_clicks`).

    Each positive click starts an object and each negative (shift-) click
    corrects the object clicked before it. SAM segments all objects in one
    decoder call; each mask's extent becomes a prompt box of ``task`` (a region
    task: category by default, or description), and Florence-2 answers all the
    boxes in one :meth:`~florence_ui.model.engine.FlorenceEngine.run`. The
    result is that task's result (one row per object, in click order: label,
    confidence, ``prompt_box``) with SAM's ``mask``, ``SAM_POLYGONS``,
    ``SAM_SCORE``, ``SAM_BOX`` and ``SAM_POINTS`` added. An object whose mask is
    empty (SAM found nothing there) is left out, with a note naming its click.
    ``run_options`` go to ``run`` (``settings``, ``num_beams``, ``time_limit`` ...).
    """
    spec = get_task(task.token if isinstance(task, Task) else task)
    if not spec.needs_boxes:
        raise InputError(
            f"{spec.name} does not take boxes, so it cannot name a clicked object: use a region task "
            "(region to category, or region to description)."
        )
    if not isinstance(image, Image.Image):
        raise InputError("The image must be a PIL image.")
    image = image.convert("RGB") if image.mode != "RGB" else image
    started = time.perf_counter()
    timings: dict[str, float] = {}
    sam = segmenter.segment(image, points=points, point_labels=point_labels, use_cache=use_cache, timings=timings)
    found = [i for i in range(len(sam)) if sam.mask[i].any()]
    notes = []
    if len(found) < len(sam):
        missed = [i for i in range(len(sam)) if i not in found]
        clicks = ", ".join(
            f"object {i + 1} at {tuple(round(v) for v in sam.data[SAM_POINTS][i][0][:2])}" for i in missed
        )
        notes.append(f"SAM found no mask for {clicks}: click inside the object.")
    if not found:
        raise InputError("SAM found no object at the clicked points. " + " ".join(notes))
    sam = sam[np.asarray(found)]
    # supervision's xyxy is the inclusive pixel extent; the prompt box covers those pixels (right/bottom edges + 1)
    width, height = image.size
    boxes = [
        [float(x1), float(y1), min(float(x2) + 1, width), min(float(y2) + 1, height)] for x1, y1, x2, y2 in sam.xyxy
    ]
    result = engine.run(image, spec.token, boxes=boxes, **run_options)
    det = result.detections
    if len(det) != len(sam):  # a region task answers one row per prompt box (parsing.merge_rows_per_box)
        raise InputError(f"{spec.name} answered {len(det)} rows for {len(sam)} clicked objects; cannot pair them.")
    det.mask = sam.mask
    for key in (SAM_SCORE, SAM_BOX, SAM_POLYGONS, SAM_POINTS):
        det.data[key] = sam.data[key]
    result.sam_model, result.sam_cached = segmenter.model_id, bool(timings.get("sam_cached"))
    result.timings |= {k: v for k, v in timings.items() if k != "sam_cached"}
    result.timings["total_s"] = time.perf_counter() - started
    result.notes[:0] = notes
    return result
