"""Accepted labels to files: Label Studio JSON (import-ready), COCO and YOLO.

The public API, shared by the UI's download buttons and the batch CLI; each
takes the same ``list[LabeledImage]`` and writes into ``out_dir``:

* :func:`export_labelstudio_json` → ``tasks.json`` (one task per image with its
  prediction, the image hash in ``data``; images embedded unless told where
  they live) and ``label_config.xml`` (the config to create the project with).
  Import both into Label Studio and the regions appear as pre-annotations.
* :func:`export_coco` → ``images/`` and ``annotations.json``
  (``sv.DetectionDataset.as_coco``).
* :func:`export_yolo` → ``images/``, ``labels/`` and ``data.yaml``
  (supervision's YOLO line and ``data.yaml`` writers).
* :func:`zip_dir` packs any of them for a download.

Category names are the ones Label Studio gets (:func:`~florence_ui.labelstudio.convert.label_of`):
free-text regions (descriptions, OCR lines) become ``Description`` / ``Text``
and unnamed proposals ``object``. COCO and YOLO carry categories only; the texts
themselves (region texts, captions, OCR) are in the Label Studio JSON.
``min_confidence`` drops regions scoring below it (unscored regions are kept).
Class ids are the sorted category names, unless ``classes`` gives an order
(a workspace's label set, so ids agree across images and exports): those come
first, in that order, and any other category found follows, sorted.

Geometry is written from the regions' own polygons, never through a mask
(no ``H × W`` raster per region, no contour re-tracing that loses or merges parts):

* COCO: every annotation is ``iscrowd: 0`` with a polygon ``segmentation``
  holding *every* part of a multi-part answer (detectron2, mmdetection and YOLO
  converters skip crowd annotations, so an RLE ``iscrowd: 1`` answer would
  vanish from training). Boxes are rectangles, so one dataset has one format.
  ``bbox`` is the extent of those polygons and ``area`` the pixels they cover
  (pixel centres inside any part, as pycocotools' ``annToMask`` counts them).
* YOLO: boxes only → detection lines; any polygons → segmentation lines for
  every region (boxes as rectangles). A YOLO line holds one polygon, so a
  multi-part region is written as **one line per part**, each with the
  region's class (as supervision's own writer does for a mask of several
  pieces); nothing is dropped.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import supervision as sv
from supervision.dataset.formats.yolo import object_to_yolo, save_data_yaml

from florence_ui.core.labels import LabeledImage, Region
from florence_ui.labelstudio.convert import (
    ProjectSchema,
    fill_url,
    generate_label_config,
    image_name,
    kept_regions,
    label_of,
    to_task,
)

__all__ = ["export_coco", "export_yolo", "export_labelstudio_json", "zip_dir", "detection_dataset",
           "region_segments", "segments_area"]  # fmt: skip


def _unique_names(items: list[LabeledImage]) -> list[str]:
    """One file name per image; a clash (two ``img.png`` from different folders) gets the hash prefixed."""
    names, seen = [], set()
    for item in items:
        name = image_name(item)
        if name in seen:
            name = f"{item.image_hash[:12]}-{name}"
        seen.add(name)
        names.append(name)
    return names


def _as_exported(item: LabeledImage, min_confidence: float | None) -> LabeledImage:
    """The regions COCO / YOLO see: category names of :func:`label_of`, OCR quads as polygons."""
    regions = [replace(r, label=label_of(r), polygons=r.polygons or ([list(r.quad)] if r.quad else []))
               for r in kept_regions(item, min_confidence)]  # fmt: skip
    return replace(item, regions=regions)


def region_segments(region: Region, width: int, height: int) -> list[np.ndarray]:
    """Every polygon part of one exported region as ``(k, 2)`` pixels inside the image; a box → its rectangle.

    Parts with fewer than three vertices are no polygon (Florence-2's parser
    and supervision skip them too); a region left with none is its box.
    """
    parts = []
    for flat in region.polygons:
        points = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
        if len(points) >= 3:
            parts.append(np.column_stack([points[:, 0].clip(0, width), points[:, 1].clip(0, height)]))
    if parts:
        return parts
    x1, x2 = sorted(float(np.clip(v, 0, width)) for v in region.xyxy[0::2])
    y1, y2 = sorted(float(np.clip(v, 0, height)) for v in region.xyxy[1::2])
    return [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])]


def segments_area(parts: list[np.ndarray]) -> float:
    """Pixels covered by the union of the parts: pixel centres inside any part (COCO's ``area`` of a polygon).

    A scanline fill over the parts' extent only (even-odd inside each part, as
    pycocotools rasterises), so a region on a 50 MP photo costs its own box,
    not the image. It differs from pycocotools' count by boundary pixels at most.
    """
    points = np.concatenate(parts)
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int)
    canvas = np.zeros((max(1, y1 - y0), max(1, x1 - x0)), dtype=bool)
    centres_y = y0 + np.arange(canvas.shape[0]) + 0.5
    for part in parts:
        (px, py), (qx, qy) = part.T, np.roll(part, -1, axis=0).T
        crosses = (py[None, :] <= centres_y[:, None]) != (qy[None, :] <= centres_y[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = px + (centres_y[:, None] - py) / (qy - py) * (qx - px)
        for row in np.flatnonzero(crosses.any(axis=1)):
            edges = np.sort(xs[row, crosses[row]])
            # pixel i is inside a span [a, b) when its centre x0 + i + 0.5 is
            starts = np.ceil(edges[0::2] - x0 - 0.5).astype(int).clip(0, canvas.shape[1])
            ends = np.ceil(edges[1::2] - x0 - 0.5).astype(int).clip(0, canvas.shape[1])
            for a, b in zip(starts, ends, strict=False):
                canvas[row, a:b] = True
    return float(np.count_nonzero(canvas))


def _coco_rows(item: LabeledImage, class_ids: dict[str, int]) -> sv.Detections:
    """One image's regions as rows ``as_coco`` writes verbatim: polygons, their extent and area, never crowd."""
    if not item.regions:
        det = sv.Detections.empty()
        det.class_id = np.empty((0,), dtype=int)
        return det
    segments = [region_segments(r, item.width, item.height) for r in item.regions]
    extents = [np.concatenate(parts) for parts in segments]
    det = sv.Detections(
        xyxy=np.array([[*e.min(axis=0), *e.max(axis=0)] for e in extents], dtype=np.float64).round(2),
        class_id=np.array([class_ids[r.label] for r in item.regions], dtype=int),
    )
    det.data[sv.config.CLASS_NAME_DATA_FIELD] = np.array([r.label for r in item.regions], dtype=str)
    det.data[sv.config.COCO_RAW_SEGMENTATION] = _object_array(
        [[p.reshape(-1).round(2).tolist() for p in parts] for parts in segments]
    )
    det.data[sv.config.AREA_DATA_FIELD] = np.array([segments_area(parts) for parts in segments], dtype=float)
    det.data[sv.config.ISCROWD_DATA_FIELD] = np.zeros(len(det), dtype=int)
    return det


def _object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, value in enumerate(items):
        out[i] = value
    return out


def _write_images(items: list[LabeledImage], images_dir: Path) -> list[Path]:
    images_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for item, name in zip(items, _unique_names(items), strict=True):
        path = images_dir / name
        path.write_bytes(item.image_bytes())
        paths.append(path)
    return paths


def _classes(exported: list[LabeledImage], order: Sequence[str] | None = None) -> tuple[list[str], dict[str, int]]:
    classes = list(dict.fromkeys(order or ()))
    classes += sorted({r.label for item in exported for r in item.regions} - set(classes))
    return classes, {name: i for i, name in enumerate(classes)}


def detection_dataset(items: list[LabeledImage], images_dir: str | Path, *, min_confidence: float | None = None,
                      classes: Sequence[str] | None = None) -> sv.DetectionDataset:  # fmt: skip
    """Write each image into ``images_dir`` and return the ``sv.DetectionDataset`` of their accepted regions.

    Each row carries its COCO geometry in ``data`` (the polygons of
    :func:`region_segments`, their area, ``iscrowd`` 0) and no mask, so
    ``as_coco`` writes the polygons as they are.
    """
    exported = [_as_exported(item, min_confidence) for item in items]
    classes, class_ids = _classes(exported, classes)
    paths = _write_images(items, Path(images_dir))
    annotations = {str(path): _coco_rows(item, class_ids) for item, path in zip(exported, paths, strict=True)}
    return sv.DetectionDataset(classes=classes, images=[str(p) for p in paths], annotations=annotations)


def export_coco(items: list[LabeledImage], out_dir: str | Path, *, min_confidence: float | None = None,
                classes: Sequence[str] | None = None) -> Path:  # fmt: skip
    """COCO: ``out_dir/images/`` and ``out_dir/annotations.json`` (returned); see the module notes on geometry."""
    out_dir = Path(out_dir)
    ds = detection_dataset(items, out_dir / "images", min_confidence=min_confidence, classes=classes)
    annotations = out_dir / "annotations.json"
    ds.as_coco(annotations_path=str(annotations))
    return annotations


def export_yolo(items: list[LabeledImage], out_dir: str | Path, *, min_confidence: float | None = None,
                classes: Sequence[str] | None = None) -> Path:  # fmt: skip
    """YOLO: ``out_dir/images/``, ``out_dir/labels/`` and ``out_dir/data.yaml`` (returned).

    Boxes only → detection lines; any polygons → segmentation lines for all,
    one line per polygon part (a YOLO line holds one polygon).
    """
    out_dir = Path(out_dir)
    exported = [_as_exported(item, min_confidence) for item in items]
    classes, class_ids = _classes(exported, classes)
    with_polygons = any(r.polygons for item in exported for r in item.regions)
    labels_dir = out_dir / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    for item, path in zip(exported, _write_images(items, out_dir / "images"), strict=True):
        shape = (item.height, item.width)
        lines = []
        for region in item.regions:
            class_id = class_ids[region.label]
            if not with_polygons:
                lines.append(object_to_yolo(np.asarray(region.xyxy, dtype=np.float32), class_id, shape))
                continue
            for part in region_segments(region, item.width, item.height):
                lines.append(object_to_yolo(sv.polygon_to_xyxy(part), class_id, shape, polygon=part))
        (labels_dir / f"{path.stem}.txt").write_text("".join(f"{line}\n" for line in lines))
    data_yaml = out_dir / "data.yaml"
    save_data_yaml(data_yaml_path=str(data_yaml), classes=classes)
    return data_yaml


def export_labelstudio_json(
    items: list[LabeledImage],
    out_dir: str | Path,
    *,
    min_confidence: float | None = None,
    image_url: str | Callable[[LabeledImage], str] | None = None,
    copy_images: bool = False,
) -> Path:
    """Label Studio JSON: ``out_dir/tasks.json`` (returned) and ``out_dir/label_config.xml``.

    ``image_url`` says how each task references its image. ``None`` embeds the
    image as a ``data:`` URI, so the file imports into any Label Studio with no
    storage set up (fine for a few images; large batches should reference
    files). A string is a template with ``{name}`` and ``{hash}``, e.g.
    ``"/data/local-files/?d=images/{name}"`` (with ``copy_images=True`` and a
    local-files storage rooted at ``out_dir``) or ``"https://bucket/{name}"``;
    a function gets the item and returns the URL.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = generate_label_config(items, min_confidence)
    schema = ProjectSchema.from_config(config)
    tasks = []
    for item, name in zip(items, _unique_names(items), strict=True):
        if copy_images:
            (out_dir / "images").mkdir(exist_ok=True)
            (out_dir / "images" / name).write_bytes(item.image_bytes())
        if image_url is None:
            url = data_uri(item, name)
        elif callable(image_url):
            url = image_url(item)
        else:
            url = fill_url(image_url, name, item.image_hash)
        tasks.append(to_task(item, url, schema, min_confidence=min_confidence))
    (out_dir / "label_config.xml").write_text(config)
    path = out_dir / "tasks.json"
    path.write_text(json.dumps(tasks, indent=1, ensure_ascii=False))
    return path


def data_uri(item: LabeledImage, name: str | None = None) -> str:
    """The image as a ``data:`` URI (Label Studio's Image tag shows these without any storage)."""
    mime = mimetypes.guess_type(name or image_name(item))[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(item.image_bytes()).decode()}"


def zip_dir(directory: str | Path, zip_path: str | Path | None = None) -> Path:
    """Pack ``directory`` into ``zip_path`` (default: ``<directory>.zip``) for a download."""
    directory = Path(directory)
    zip_path = Path(zip_path) if zip_path else directory.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(directory))
    return zip_path
