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
  (``sv.DetectionDataset.as_yolo``).
* :func:`zip_dir` packs any of them for a download.

Category names are the ones Label Studio gets (:func:`~florence_ui.labelstudio.label_of`):
free-text regions (descriptions, OCR lines) become ``Description`` / ``Text``
and unnamed proposals ``object``. COCO and YOLO carry categories only; the texts
themselves (region texts, captions, OCR) are in the Label Studio JSON. When any
image has polygons (segmentation, OCR quads), COCO and YOLO are written with
masks for every region (boxes as rectangles), so one dataset has one format.
``min_confidence`` drops regions scoring below it (unscored regions are kept).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import supervision as sv

from .labels import LabeledImage
from .labelstudio import (
    ProjectSchema,
    fill_url,
    generate_label_config,
    image_name,
    kept_regions,
    label_of,
    to_task,
)

__all__ = ["export_coco", "export_yolo", "export_labelstudio_json", "zip_dir", "detection_dataset"]


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


def detection_dataset(items: list[LabeledImage], images_dir: str | Path, *,
                      min_confidence: float | None = None) -> sv.DetectionDataset:  # fmt: skip
    """Write each image into ``images_dir`` and return the ``sv.DetectionDataset`` of their accepted regions."""
    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    exported = [_as_exported(item, min_confidence) for item in items]
    classes = sorted({r.label for item in exported for r in item.regions})
    class_ids = {name: i for i, name in enumerate(classes)}
    with_masks = any(r.polygons for item in exported for r in item.regions)
    paths, annotations = [], {}
    for item, name in zip(exported, _unique_names(items), strict=True):
        path = images_dir / name
        path.write_bytes(item.image_bytes())
        det = item.detections(with_masks=with_masks)
        if len(det):
            det.class_id = np.array([class_ids[str(n)] for n in det.data["class_name"]], dtype=int)
        else:
            det = sv.Detections.empty()
            det.class_id = np.empty((0,), dtype=int)
            if with_masks:
                det.mask = np.zeros((0, item.height, item.width), dtype=bool)
        paths.append(str(path))
        annotations[str(path)] = det
    return sv.DetectionDataset(classes=classes, images=paths, annotations=annotations)


def export_coco(items: list[LabeledImage], out_dir: str | Path, *, min_confidence: float | None = None) -> Path:
    """COCO: ``out_dir/images/`` and ``out_dir/annotations.json`` (returned)."""
    out_dir = Path(out_dir)
    ds = detection_dataset(items, out_dir / "images", min_confidence=min_confidence)
    annotations = out_dir / "annotations.json"
    ds.as_coco(annotations_path=str(annotations))
    return annotations


def export_yolo(items: list[LabeledImage], out_dir: str | Path, *, min_confidence: float | None = None) -> Path:
    """YOLO: ``out_dir/images/``, ``out_dir/labels/`` and ``out_dir/data.yaml`` (returned).

    Boxes only → detection lines; any polygons → segmentation lines for all.
    """
    out_dir = Path(out_dir)
    ds = detection_dataset(items, out_dir / "images", min_confidence=min_confidence)
    data_yaml = out_dir / "data.yaml"
    ds.as_yolo(annotations_directory_path=str(out_dir / "labels"), data_yaml_path=str(data_yaml))
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
