"""Reviewed labels: the contract between review / batch and every exporter.

A :class:`LabeledImage` is one image with its accepted regions and accepted
image-level texts (captions, OCR). The UI's review state and the CLI's JSONL
reader both produce it; Label Studio, COCO, YOLO and JSON exporters only read
it. Regions are a list rather than one ``sv.Detections`` because a reviewer
mixes tasks on one image (boxes from ``<OD>``, masks from segmentation) and
``sv.Detections.merge`` refuses rows with and without masks; use
:meth:`LabeledImage.detections` for an ``sv.Detections`` view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from florence_ui.core.fields import CLASS_NAME, POLYGONS, PROMPT_BOX, SAM_POLYGONS, SOURCE_TASK
from florence_ui.core.images import image_identity
from florence_ui.core.tasks import OutputKind, get_task


class RegionKind(StrEnum):
    """What a region's geometry is (str-valued: the API's review JSON carries these strings as ``kind``)."""

    BOX = "box"
    POLYGON = "polygon"
    QUAD = "quad"
    REGION_TEXT = "region_text"  # the box a region task was asked about, with its answer as the label


@dataclass
class Region:
    """One accepted region, in pixels of the original image."""

    label: str
    xyxy: tuple[float, float, float, float]
    source_task: str
    score: float | None = None
    #: segmentation polygons, each a flat [x1, y1, x2, y2, ...] list
    polygons: list[list[float]] = field(default_factory=list)
    #: OCR quadrilateral, flat [x1, y1, ..., x4, y4]
    quad: list[float] | None = None
    #: region tasks: the number (1-based, drawing order) of the prompt box this region answers, fixed when the
    #: answer arrives, so every view shows "#n" of *that* box whatever is filtered or rejected
    box_index: int | None = None

    def __post_init__(self) -> None:
        # a polygon with an odd number of coordinates (a hand-edited file) drops the last one, as Florence-2's own
        # parser does; normalised here so drawing, masks and every exporter can pair coordinates safely
        self.polygons = [list(flat)[: len(flat) // 2 * 2] for flat in self.polygons]

    @property
    def kind(self) -> RegionKind:
        """``box``, ``polygon``, ``quad`` or ``region_text`` (a box whose label is free text)."""
        output = get_task(self.source_task).output
        if self.polygons:
            return RegionKind.POLYGON
        if output is OutputKind.QUADS and self.quad:
            return RegionKind.QUAD
        if output is OutputKind.REGION_TEXT:
            return RegionKind.REGION_TEXT
        return RegionKind.BOX

    @property
    def is_text(self) -> bool:
        """The label is free text (a description or OCR), not a category (the task's ``free_text_labels``)."""
        return get_task(self.source_task).free_text_labels


@dataclass
class ImageText:
    """An accepted image-level answer: a caption or the OCR text."""

    task: str
    text: str
    score: float | None = None


@dataclass
class LabeledImage:
    """One image and everything a reviewer accepted on it."""

    width: int
    height: int
    regions: list[Region] = field(default_factory=list)
    texts: list[ImageText] = field(default_factory=list)
    image_path: str | None = None
    image: Image.Image | None = None
    #: a file name to show (e.g. the uploaded file's), when image_path is not set
    name: str | None = None
    #: the original file's bytes when the file itself may be gone (the page keeps the upload's bytes): what
    #: Label Studio and the exporters receive, and what :attr:`image_hash` hashes
    image_data: bytes | None = None
    model: str | None = None
    revision: str | None = None

    @property
    def tasks(self) -> list[str]:
        seen = [r.source_task for r in self.regions] + [t.task for t in self.texts]
        return list(dict.fromkeys(seen))

    @property
    def model_version(self) -> str:
        """``model@revision: tasks`` — what Label Studio shows as the prediction's origin."""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.model or 'florence-2'}{rev}: {' '.join(self.tasks)}"

    def load_image(self) -> Image.Image:
        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise ValueError("LabeledImage has neither an image nor an image_path")
        with Image.open(self.image_path) as im:
            return im.convert("RGB")

    @property
    def file_suffix(self) -> str:
        """The extension :meth:`image_bytes` deserves: the kept file's own (from ``name``), else ``.png``."""
        if self.image_data is not None and self.name and "." in self.name.rsplit("/", 1)[-1]:
            return "." + self.name.rsplit(".", 1)[-1].lower()
        return ".png"

    def image_bytes(self) -> bytes:
        """The bytes Label Studio and the exporters get: the file's own (``image_data``, else
        ``image_path`` when no in-memory image is given), else a lossless PNG of the in-memory image."""
        if self.image_data is not None:
            return self.image_data
        if self.image is None and self.image_path:
            return Path(self.image_path).read_bytes()
        import io

        buf = io.BytesIO()
        self.load_image().save(buf, format="PNG")
        return buf.getvalue()

    @property
    def image_hash(self) -> str:
        """The image's identity (:func:`~florence_ui.core.images.image_identity`): the key that makes pushes idempotent.

        It follows :meth:`image_bytes`: the file's bytes when those are what is
        sent, else the canonical encoding of the in-memory pixels.
        """
        if self.image_data is not None:
            return image_identity(self.image_data)
        if self.image is None and self.image_path:
            return image_identity(self.image_path)
        return image_identity(self.load_image())

    def detections(self, min_score: float | None = None, with_masks: bool | None = None) -> sv.Detections:
        """The regions as one ``sv.Detections`` (class_name, confidence, source_task).

        Masks are rasterised from polygons when every kept region has one
        (or when ``with_masks`` is True, rows without polygons get a box mask).
        """
        rows = [r for r in self.regions if min_score is None or r.score is None or r.score >= min_score]
        if not rows:
            return sv.Detections.empty()
        det = sv.Detections(xyxy=np.array([r.xyxy for r in rows], dtype=np.float32))
        det.confidence = np.array([math.nan if r.score is None else r.score for r in rows], dtype=np.float32)
        det.data[CLASS_NAME] = np.array([r.label for r in rows], dtype=str)
        det.data[SOURCE_TASK] = np.array([r.source_task for r in rows], dtype=str)
        if with_masks is None:
            with_masks = all(r.polygons for r in rows)
        if with_masks:
            det.mask = np.stack([region_mask(r, self.width, self.height) for r in rows])
        return det


def region_mask(region: Region, width: int, height: int) -> np.ndarray:
    """A boolean mask for one region: its polygons filled, else its box."""
    mask = np.zeros((height, width), dtype=bool)
    if region.polygons:
        for flat in region.polygons:
            points = np.asarray(flat, dtype=np.float32).reshape(-1, 2).round().astype(np.int32)
            if len(points) >= 3:
                mask |= sv.polygon_to_mask(points, (width, height)).astype(bool)
        return mask
    x1, y1, x2, y2 = (int(round(v)) for v in region.xyxy)
    mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
    return mask


def regions_from_result(result: Any) -> list[Region]:
    """Every row of a :class:`FlorenceResult` as a :class:`Region` (pending review).

    A row SAM refined (``sam_polygons`` not empty) becomes SAM's outline, and its
    box the outline's extent, so review, Label Studio, COCO and YOLO all get the
    crisp mask; Florence-2's own polygon stays in the result (and results.jsonl)
    for the teaching view. Its ``score`` stays Florence-2's confidence.
    """
    out = []
    for row in result.regions():
        sam_parts = row.get(SAM_POLYGONS) or []
        refined = any(len(p) >= 6 for p in sam_parts)
        out.append(
            Region(
                label=row["label"],
                xyxy=tuple(_extent(sam_parts) if refined else row["box"]),
                source_task=row[SOURCE_TASK],
                score=row["confidence"],
                polygons=sam_parts if refined else row.get(POLYGONS, []),
                quad=row.get("quad"),
                # region tasks have one row per prompt box, in box order (parsing.merge_rows_per_box)
                box_index=row["index"] + 1 if PROMPT_BOX in row else None,
            )
        )
    return out


def _extent(flats: list[list[float]]) -> tuple[float, float, float, float]:
    """The box around flat [x1, y1, ...] polygons (what COCO's ``bbox`` of those polygons is)."""
    points = np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1, 2) for f in flats if len(f) >= 2])
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)
