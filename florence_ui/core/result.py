"""The one result type every layer reads: detections, text, and how they were made.

``detections`` is an ``sv.Detections`` (empty for caption / OCR tasks) whose
``data`` carries ``class_name``, ``source_task``, ``loc_bins`` and, where they
apply, ``polygons``, ``xyxyxyxy`` (OCR quads) and ``prompt_box`` (region
tasks). ``confidence`` is NaN when the result came from :meth:`parse` (text
only, no token probabilities). ``detections.mask`` is filled only by SAM
(:func:`florence_ui.model.refine.refine_result` / ``click_objects``), whose
rows also carry ``sam_polygons``, ``sam_score``, ``sam_box`` (and ``sam_points``
for clicks): a Florence-2 answer alone keeps no ``n × H × W`` raster in every
session's history, and :meth:`FlorenceResult.masks` and
:meth:`FlorenceResult.detections_with_masks` rasterise its polygons on demand. ``raw`` keeps the generated text with its
special tokens: the teaching view, the JSONL file and any re-parse start there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv

from florence_ui.core.fields import (
    CLASS_NAME,
    LOC_BINS,
    POLYGONS,
    PROMPT_BOX,
    QUADS,
    SAM_BOX,
    SAM_POINTS,
    SAM_POLYGONS,
    SAM_SCORE,
    SOURCE_TASK,
)
from florence_ui.core.tasks import OutputKind, get_task


def _num(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


@dataclass
class FlorenceResult:
    """What :meth:`FlorenceEngine.run` and :meth:`FlorenceEngine.parse` return."""

    task: str
    detections: sv.Detections
    text: str | None
    raw: str | list[str]
    image_size: tuple[int, int]
    text_input: str | None = None
    boxes: list[list[float]] | None = None
    #: the task-token prompts sent (one per box for region tasks)
    prompts: list[str] = field(default_factory=list)
    #: the natural-language prompts the processor turned them into
    model_prompts: list[str] = field(default_factory=list)
    #: input length in tokens (image tokens + prompt tokens), per prompt
    prompt_tokens: list[int] = field(default_factory=list)
    #: generated tokens, per sequence
    generated_tokens: list[int] = field(default_factory=list)
    #: generation hit ``max_new_tokens`` before the end token (answer cut off)
    truncated: bool = False
    text_score: float = math.nan
    #: per sequence, the generated tokens as (id, token, probability); empty after parse()
    output_tokens: list[list[tuple[int, str, float | None]]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cached_features: bool = False
    model: str | None = None
    revision: str | None = None
    #: things the engine did to the input that a person should know (clipped boxes, ...)
    notes: list[str] = field(default_factory=list)
    #: the SAM checkpoint that refined the rows (None: not refined); its masks are ``detections.mask``
    sam_model: str | None = None
    #: SAM's image embedding came from its cache (the image encoder was skipped)
    sam_cached: bool = False

    @property
    def refined(self) -> bool:
        """Whether SAM gave these rows masks (``detections.mask`` and the ``sam_*`` fields)."""
        return SAM_POLYGONS in self.detections.data

    @property
    def has_masks(self) -> bool:
        """Whether this answer has masks to make (polygon answers: segmentation, open-vocabulary polygons; SAM)."""
        return POLYGONS in self.detections.data or self.detections.mask is not None

    def masks(self) -> np.ndarray | None:
        """``(n, H, W)`` boolean masks, rasterised now from the polygons; None for answers without polygons.

        A row's mask is its polygon parts filled (vertices truncated to whole
        pixels, as supervision's Florence-2 reader does); a segmentation row
        with no polygon (an empty answer) is all False, and a box row of a
        mixed answer (open-vocabulary detection) is its box. Each call makes
        new arrays: keep them only as long as they are needed.
        """
        if not self.has_masks:
            return None
        if self.detections.mask is not None:  # SAM's masks, as it made them
            return np.array(self.detections.mask, dtype=bool, copy=True)
        det = self.detections
        width, height = (int(v) for v in self.image_size)
        out = np.zeros((len(det), height, width), dtype=bool)
        for i in range(len(det)):
            fill_row_mask(out[i], det.data[POLYGONS][i], det.xyxy[i], self._row_is_polygon(i))
        return out

    def detections_with_masks(self) -> sv.Detections:
        """A copy of :attr:`detections` with ``mask`` filled by :meth:`masks` (for supervision's mask tools)."""
        det = self.detections[np.arange(len(self.detections))]
        det.mask = self.masks()
        return det

    def _row_is_polygon(self, i: int) -> bool:
        task = str(self.detections.data.get(SOURCE_TASK, [self.task] * len(self.detections))[i])
        return get_task(task).output is OutputKind.POLYGONS

    @property
    def raw_list(self) -> list[str]:
        return self.raw if isinstance(self.raw, list) else [self.raw]

    def regions(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per detection row."""
        det = self.detections
        rows: list[dict[str, Any]] = []
        for i in range(len(det)):
            row: dict[str, Any] = {
                "index": i,
                "label": str(det.data[CLASS_NAME][i]),
                "class_id": int(det.class_id[i]) if det.class_id is not None else None,
                "confidence": _num(det.confidence[i]) if det.confidence is not None else None,
                "box": [round(float(v), 2) for v in det.xyxy[i]],
                SOURCE_TASK: str(det.data.get(SOURCE_TASK, [self.task] * len(det))[i]),
                LOC_BINS: [int(b) for b in det.data[LOC_BINS][i]] if LOC_BINS in det.data else [],
            }
            if PROMPT_BOX in det.data:
                row[PROMPT_BOX] = [round(float(v), 2) for v in det.data[PROMPT_BOX][i]]
            if QUADS in det.data:
                quad = np.asarray(det.data[QUADS][i]).reshape(-1)
                row["quad"] = [round(float(v), 2) for v in quad]
            if POLYGONS in det.data:
                row[POLYGONS] = [np.asarray(p).reshape(-1).round(2).tolist() for p in det.data[POLYGONS][i]]
            if SAM_POLYGONS in det.data:  # refined by SAM: its outline, its score and its box beside Florence-2's
                row[SAM_POLYGONS] = [np.asarray(p).reshape(-1).round(2).tolist() for p in det.data[SAM_POLYGONS][i]]
                row[SAM_SCORE] = _num(det.data[SAM_SCORE][i]) if SAM_SCORE in det.data else None
                if SAM_BOX in det.data:
                    row[SAM_BOX] = [round(float(v), 2) for v in det.data[SAM_BOX][i]]
            if SAM_POINTS in det.data:
                row[SAM_POINTS] = [[float(x), float(y), int(label)] for x, y, label in det.data[SAM_POINTS][i]]
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the UI's results JSON and the API's answer)."""
        spec = get_task(self.task)
        return {
            "task": self.task,
            "task_name": spec.name,
            "text_input": self.text_input,
            "boxes": self.boxes,
            "image_size": list(self.image_size),
            "text": self.text,
            "text_score": _num(self.text_score),
            "regions": self.regions(),
            "raw": self.raw,
            "prompts": self.prompts,
            "model_prompts": self.model_prompts,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "output_tokens": self.output_tokens,
            "truncated": self.truncated,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "cached_features": self.cached_features,
            "model": self.model,
            "revision": self.revision,
            "notes": self.notes,
        } | ({"sam_model": self.sam_model, "sam_cached": self.sam_cached} if self.sam_model else {})


def fill_row_mask(mask: np.ndarray, polygons: Any, xyxy: Any, polygon_row: bool) -> np.ndarray:
    """Fill one row's ``(H, W)`` mask in place: its polygon parts, else (box rows) its box."""
    height, width = mask.shape
    parts = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in (polygons or [])]
    if parts or polygon_row:
        for part in parts:
            if len(part) >= 3:
                np.logical_or(mask, sv.polygon_to_mask(part.astype(np.int32), (width, height)).astype(bool), out=mask)
        return mask
    x1, y1, x2, y2 = np.asarray(xyxy, dtype=np.float32).astype(int)
    mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
    return mask
