"""Generated text → ``sv.Detections`` (or a string), for every task in the catalogue.

The heavy lifting is the processor's own ``post_process_generation`` (``<loc_N>``
→ pixels) and supervision's ``Detections.from_vlm`` (→ arrays). This
module only fills what those leave out: ``class_name`` where from_vlm gives
none, ``class_id`` from a shared registry, a real ``confidence`` from token
probabilities, the source task, the prompt box of region tasks, the polygons
and the ``<loc_N>`` bins each row came from (for export and the teaching view).

Segmentation answers keep their polygons, never full-resolution masks: a mask
is ``H × W`` booleans per row (64 boxes on a 50 MP photo ≈ 3 GB, held in every
session's history), while drawing, review and every exporter read polygons.
:meth:`FlorenceResult.masks` rasterises them when something needs a mask.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv

from florence_ui.core.fields import CLASS_NAME, LOC_BINS, POLYGONS, PROMPT_BOX, SOURCE_TASK
from florence_ui.core.geometry import LOC_RE, bins_to_xyxy, canonical_locs, parse_loc_bins
from florence_ui.core.tasks import OutputKind, get_task
from florence_ui.model.scoring import Instance, align, sequence_bins, sequence_score, text_pieces, walk_instances

Pieces = list[tuple[str, float]]
MIN_POLYGON_POINTS = 3


class ClassRegistry:
    """Class name → stable integer id, first come first numbered, thread-safe.

    One registry per engine keeps ``class_id`` (and so annotator colours) the
    same for the same name across tasks and images of a session.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def ids(self, names: Sequence[str]) -> np.ndarray:
        with self._lock:
            for name in names:
                self._ids.setdefault(str(name), len(self._ids))
            return np.array([self._ids[str(n)] for n in names], dtype=int)

    @property
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._ids, key=self._ids.__getitem__)


@dataclass
class Parsed:
    """What one task's answer parses to; :class:`FlorenceResult` wraps it."""

    text: str | None
    detections: sv.Detections
    text_score: float = math.nan


_NOT_TEXT = re.compile(rf"</?s>|<pad>|<unk>|{LOC_RE.pattern}")


def clean_text(text: str) -> str:
    """Drop special tokens and ``<loc_N>`` echoes from a text answer.

    Repeated until nothing changes: one pass over ``<s</s>>`` or
    ``<loc_<loc_1>2>`` would leave the ``<s>`` / ``<loc_2>`` its removal formed.
    Each pass shortens the text, so this ends.
    """
    while True:
        cleaned = _NOT_TEXT.sub("", text)
        if cleaned == text:
            return cleaned.strip()
        text = cleaned


def _post(processor: Any, task: str, text: str, image_size: tuple[int, int]) -> Any:
    return processor.post_process_generation(text, task=task, image_size=tuple(image_size))[task]


def _tidy_boxes(xyxy: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Corners in order (x1 ≤ x2, y1 ≤ y2) and inside the image.

    The model is free to write ``<loc_900><loc_0><loc_100><loc_999>``: a
    reversed box has a negative area that breaks annotators, NMS and exporters.
    Swapping is what :func:`~florence_ui.core.geometry.validate_box` does for a
    user's box, so a model's box is read the same way.
    """
    width, height = image_size
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    lo, hi = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
    out = np.concatenate([lo, hi], axis=1)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out


def _from_vlm(task: str, parsed: Any, size: tuple[int, int]) -> sv.Detections:
    """supervision's Florence-2 reader, with its boxes tidied (see :func:`_tidy_boxes`)."""
    det = sv.Detections.from_vlm(sv.VLM.FLORENCE_2, {task: parsed}, resolution_wh=size)
    det.xyxy = _tidy_boxes(det.xyxy, size)
    return det


def _empty(image_size: tuple[int, int]) -> sv.Detections:
    return sv.Detections.empty()


def _polygons_of(instances: list[list[list[float]]]) -> list[list[np.ndarray]]:
    """Polygon parts per instance, keeping only what from_vlm keeps (≥3 vertices)."""
    kept = []
    for parts in instances:
        arrays = [np.reshape(np.asarray(p, dtype=np.float32), (-1, 2)) for p in parts]
        arrays = [a for a in arrays if len(a) >= MIN_POLYGON_POINTS]
        if arrays:
            kept.append(arrays)
    return kept


def _object_array(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _finish(
    det: sv.Detections,
    names: Sequence[str],
    task: str,
    registry: ClassRegistry,
    scores: Sequence[float],
    bins: Sequence[Sequence[int]],
) -> sv.Detections:
    det.data[CLASS_NAME] = (
        np.array([str(n) for n in names], dtype=object).astype(str) if len(names) else np.array([], dtype=str)
    )
    det.class_id = registry.ids(list(names)) if len(names) else np.array([], dtype=int)
    det.confidence = np.array(scores, dtype=np.float32) if len(scores) else np.array([], dtype=np.float32)
    det.data[SOURCE_TASK] = np.array([task] * len(det), dtype=str) if len(det) else np.array([], dtype=str)
    det.data[LOC_BINS] = _object_array([list(b) for b in bins])
    return det


def _boxes_task(processor, task, text, size, pieces, registry) -> sv.Detections:
    """OD, dense captions, proposals, grounding, open-vocabulary, OCR quads."""
    spec = get_task(task)
    parsed = _post(processor, task, text, size)
    instances = walk_instances(pieces, spec.loc_group)
    dequant = _dequantizer(processor, size)
    if spec.mixed_polygons:
        return _ovd(parsed, size, instances, dequant, registry, task, pieces)
    det = _from_vlm(task, parsed, size)
    if spec.output is OutputKind.QUADS:
        coords = [list(q) for q in parsed["quad_boxes"]]
        names = [clean_text(label) for label in parsed["labels"]]
    else:
        coords = [list(b) for b in parsed["bboxes"]]
        names = [str(label) for label in parsed.get("labels", [""] * len(det))]
    matched = align(coords, instances, dequant)
    return _finish(det, names, task, registry, _scores(matched), _bins(matched))


def _ovd(parsed, size, instances, dequant, registry, task, pieces) -> sv.Detections:
    """Open-vocabulary detection may answer with boxes, polygons, or both."""
    det = _from_vlm(task, parsed, size)
    names = [str(n) for n in parsed["bboxes_labels"]]
    matched = align([list(b) for b in parsed["bboxes"]], instances, dequant)
    scores, bins = _scores(matched), _bins(matched)
    # pair labels with instances before dropping unusable ones (< 3 vertices), so the labels stay aligned
    labelled = [(label, kept[0]) for label, parts in zip(parsed.get("polygons_labels", []), parsed.get("polygons") or [],
                                                          strict=False) if (kept := _polygons_of([parts]))]  # fmt: skip
    if not labelled:
        return _finish(det, names, task, registry, scores, bins)
    xyxy = list(det.xyxy)
    whole = sequence_score(pieces)
    polys = [parts for _, parts in labelled]
    for label, parts in labelled:
        xyxy.append(sv.polygon_to_xyxy(np.concatenate(parts)))
        names.append(str(label))
        scores.append(whole)
        bins.append(sequence_bins(pieces))
    out = sv.Detections(xyxy=np.array(xyxy, dtype=np.float32).reshape(-1, 4))
    # box rows have no polygon (their mask, made on demand, is the box: FlorenceResult.masks)
    out.data[POLYGONS] = _object_array([[] for _ in range(len(det))] + polys)
    return _finish(out, names, task, registry, scores, bins)


def _segmentation(processor, task, text, size, pieces, label, registry) -> sv.Detections:
    """Referring-expression / region segmentation: one row per instance, its polygons in ``data[POLYGONS]``.

    The box is what ``from_vlm`` gives (the extent of the integer vertices of
    every usable part), computed here so no ``H × W`` mask is rasterised.
    """
    parsed = _post(processor, task, text, size)
    polys = _polygons_of(parsed["polygons"])
    boxes = [sv.polygon_to_xyxy(np.concatenate([p.astype(np.int32) for p in parts])) for parts in polys]
    det = sv.Detections(xyxy=_tidy_boxes(np.array(boxes, dtype=np.float32).reshape(-1, 4), size))
    det.data[POLYGONS] = _object_array(polys)
    score, bins = sequence_score(pieces), sequence_bins(pieces)
    return _finish(det, [label] * len(det), task, registry, [score] * len(det), [bins] * len(det))


def _region_text(task, text, size, pieces, prompt_box, registry) -> sv.Detections:
    """Region → category / description / OCR: one row, the answer as its label."""
    bins = sequence_bins(pieces)
    if prompt_box is not None:
        xyxy = np.array([prompt_box], dtype=np.float32)
    elif len(bins) >= 4:
        xyxy = np.array([bins_to_xyxy(bins[:4], size)], dtype=np.float32)
    else:
        return _finish(_empty(size), [], task, registry, [], [])
    det = sv.Detections(xyxy=_tidy_boxes(xyxy, size))
    return _finish(det, [clean_text(text)], task, registry, [sequence_score(pieces)], [bins])


def _dequantizer(processor, size):
    import torch

    def to_pixels(bins: tuple[int, ...]) -> list[float]:
        tensor = torch.tensor(bins).reshape(-1, 4 if len(bins) == 4 else 2)
        return processor.post_processor.dequantize(tensor, size=size).flatten().tolist()

    return to_pixels


def _nan_mean(values: np.ndarray) -> float:
    """Mean of the known values, NaN when none is known (parse() scores are all NaN) — without numpy's warning."""
    known = np.asarray(values, dtype=np.float64)
    known = known[np.isfinite(known)]
    return float(known.mean()) if len(known) else math.nan


def _scores(matched: list[Instance | None]) -> list[float]:
    return [m.score if m is not None else math.nan for m in matched]


def _bins(matched: list[Instance | None]) -> list[list[int]]:
    return [list(m.bins) if m is not None else [] for m in matched]


def parse_one(
    processor: Any,
    task: str,
    text: str,
    image_size: tuple[int, int],
    *,
    registry: ClassRegistry,
    pieces: Pieces | None = None,
    text_input: str | None = None,
    prompt_box: Sequence[float] | None = None,
) -> Parsed:
    """Parse one generated sequence of ``task`` (one prompt box for region tasks).

    Any text parses: ``<loc_N>`` past the last bin is read as the last bin
    (:func:`~florence_ui.core.geometry.canonical_locs`), boxes come out ordered and
    inside the image, and an answer with nothing to parse (truncated, no
    ``<loc_N>``, stray special or task tokens) gives no rows rather than an error.
    """
    spec = get_task(task)
    size = (int(image_size[0]), int(image_size[1]))
    text = canonical_locs(text)
    pieces = pieces if pieces is not None else text_pieces(text)
    if spec.output is OutputKind.TEXT:
        answer = clean_text(_post(processor, spec.token, text, size))
        return Parsed(answer, _finish(_empty(size), [], spec.token, registry, [], []), sequence_score(pieces))
    if spec.output is OutputKind.REGION_TEXT:
        return Parsed(None, _region_text(spec.token, text, size, pieces, prompt_box, registry))
    if spec.output is OutputKind.POLYGONS:
        label = (text_input or "").strip() if spec.needs_text else "segment"
        det = _segmentation(processor, spec.token, text, size, pieces, label, registry)
        return Parsed(None, det)
    return Parsed(None, _boxes_task(processor, spec.token, text, size, pieces, registry))


def merge_rows_per_box(
    parts: list[sv.Detections], prompt_boxes: Sequence[Sequence[float]], image_size: tuple[int, int], task: str
) -> sv.Detections:
    """Region tasks: exactly one row per prompt box, in box order.

    A segmentation answer with several instances is merged into one row (all
    their polygons); an answer with none keeps its box with no polygon (an
    empty mask) and NaN confidence, so row ``i`` always answers box ``i``.
    """
    rows = []
    for det, box in zip(parts, prompt_boxes, strict=True):
        if len(det) == 1:
            row = det
        elif len(det) == 0:
            row = sv.Detections(xyxy=np.array([box], dtype=np.float32))
            if get_task(task).output is OutputKind.POLYGONS:
                row.data[POLYGONS] = _object_array([[]])
            row.class_id = np.array([-1])
            row.confidence = np.array([math.nan], dtype=np.float32)
            row.data[CLASS_NAME] = np.array([""], dtype=str)
            row.data[SOURCE_TASK] = np.array([task], dtype=str)
            row.data[LOC_BINS] = _object_array([[]])
        else:
            polys = [p for item in det.data.get(POLYGONS, []) for p in item]
            row = sv.Detections(xyxy=np.array([[*det.xyxy[:, :2].min(0), *det.xyxy[:, 2:].max(0)]], dtype=np.float32))
            row.class_id = det.class_id[:1]
            row.confidence = np.array([_nan_mean(det.confidence)], dtype=np.float32)
            row.data[CLASS_NAME] = det.data[CLASS_NAME][:1]
            row.data[SOURCE_TASK] = det.data[SOURCE_TASK][:1]
            row.data[LOC_BINS] = _object_array([[b for item in det.data[LOC_BINS] for b in item]])
            if POLYGONS in det.data:
                row.data[POLYGONS] = _object_array([polys])
        rows.append(row)
    merged = sv.Detections.merge(rows) if rows else _empty(image_size)
    merged.data[PROMPT_BOX] = np.array([list(b) for b in prompt_boxes], dtype=np.float32).reshape(-1, 4)
    return merged


def text_input_box(text_input: str | None, image_size: tuple[int, int]) -> list[float] | None:
    """The pixel box a ``<loc_N>`` region prompt names (for parse() without boxes), corners ordered."""
    bins = parse_loc_bins(text_input or "")
    if len(bins) < 4:
        return None
    return [float(v) for v in _tidy_boxes(np.array([bins_to_xyxy(bins[:4], image_size)]), image_size)[0]]
