"""Accepted labels → Label Studio JSON and labeling configs (pure functions, no HTTP).

Everything here reads :class:`~florence_ui.core.labels.LabeledImage` and returns
plain dicts / strings, so it is tested on the golden Florence-2 outputs without
a server; ``labelstudio_client`` does the SDK calls with what this builds.

How our labels become Label Studio regions (one prediction per image):

* boxes → ``RectangleLabels`` (``x, y, width, height`` in percent of the
  original image size, ``original_width/height`` on every result);
* segmentation polygons (Florence-2's, or SAM's outlines of a refined region)
  → ``PolygonLabels`` (``points`` in percent), one Label Studio region per
  polygon part; or, with ``masks_as="brush"``, the region's filled mask as one
  ``BrushLabels`` region in Label Studio's RLE (``label_studio_sdk.converter.brush``),
  which :func:`brush_mask` decodes back to the very same pixels;
* OCR quads → ``PolygonLabels`` with their 4 corners (rotation kept exactly);
* regions whose label is free text (region descriptions, dense captions, OCR
  lines) → the geometry under a fixed label (``Description`` / ``Text``) plus
  a per-region ``TextArea`` holding the text (same result ``id``);
* captions and OCR of the whole image → image-level ``TextArea`` s.

Regions without a name (``<REGION_PROPOSAL>``) get :data:`UNNAMED_LABEL`.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from florence_ui.core.labels import ImageText, LabeledImage, Region, RegionKind
from florence_ui.core.tasks import get_task
from florence_ui.errors import MissingInProject

#: task data field holding the image (the ``$image`` of the generated config)
DATA_KEY = "image"
#: task data field with :attr:`LabeledImage.image_hash`: finds the task again on a re-push, across restarts
HASH_KEY = "florence_ui_image_hash"
#: label for regions Florence-2 gives no name (region proposals)
UNNAMED_LABEL = "object"
#: labels of regions whose own label is free text (the text goes to the per-region TextArea)
TEXT_LABEL, DESCRIPTION_LABEL = "Text", "Description"

# control names of a generated config, by the kind of result they hold
BOXES, POLYGONS, REGION_TEXT, CAPTION, OCR = "boxes", "polygons", "region_text", "caption", "ocr"
#: masks as Label Studio brush strokes (RLE): the ``masks_as="brush"`` choice for segmentation regions
BRUSH = "brush"
DEFAULT_NAMES = {BOXES: "label", POLYGONS: "polygon", BRUSH: "brush", REGION_TEXT: "region_text", CAPTION: "caption",
                 OCR: "ocr"}  # fmt: skip
_LABEL_TAGS = {BOXES: "RectangleLabels", POLYGONS: "PolygonLabels", BRUSH: "BrushLabels"}
_RESULT_TYPES = {BOXES: "rectanglelabels", POLYGONS: "polygonlabels", BRUSH: "brushlabels"}
_SHAPES = (BOXES, POLYGONS, BRUSH)
#: how segmentation regions go to Label Studio: outlines (``PolygonLabels``) or filled masks (``BrushLabels`` RLE)
MASK_FORMATS = ("polygons", "brush")


# ---- what our labels need -----------------------------------------------------------
#: characters XML 1.0 cannot hold at all (C0 controls but tab / newline / return, lone surrogates, U+FFFE/F)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def label_of(region: Region) -> str:
    """The category Label Studio (and COCO / YOLO) gets for a region.

    Labels become ``<Label value="...">`` attributes of the labeling config, so
    what XML cannot carry is taken out: a NUL in a model's answer made the
    config unparsable, and a tab or newline comes back from the attribute as a
    space, so the project would lack the very label we generated it for. Runs
    of whitespace therefore become one space, and characters XML forbids go.
    """
    if region.is_text:
        return TEXT_LABEL if get_task(region.source_task).reads_text else DESCRIPTION_LABEL
    return " ".join(_NOT_XML.sub("", region.label).split()) or UNNAMED_LABEL


def shape_of(region: Region, masks_as: str = "polygons") -> str:
    """``polygons`` for segmentation and OCR quads (``brush`` for segmentation with ``masks_as="brush"``), else ``boxes``."""
    if masks_as not in MASK_FORMATS:
        raise ValueError(f"masks_as must be one of {', '.join(MASK_FORMATS)}, got {masks_as!r}")
    if region.polygons:
        return BRUSH if masks_as == BRUSH else POLYGONS
    return POLYGONS if region.kind is RegionKind.QUAD and region.quad else BOXES


def text_kind(text: ImageText) -> str:
    """Image-level texts go to the ``ocr`` or the ``caption`` TextArea."""
    return OCR if get_task(text.task).reads_text else CAPTION


def kept_regions(item: LabeledImage, min_confidence: float | None = None) -> list[Region]:
    """Regions at or above ``min_confidence`` (unscored regions are always kept, as in ``detections``)."""
    return [r for r in item.regions if min_confidence is None or r.score is None or r.score >= min_confidence]


@dataclass
class Requirements:
    """What a set of images needs from a labeling config: labels per shape, text areas."""

    labels: dict[str, Counter] = field(default_factory=lambda: {kind: Counter() for kind in _SHAPES})
    region_texts: int = 0
    image_texts: Counter = field(default_factory=Counter)  # caption / ocr → count

    @classmethod
    def of(
        cls, items: list[LabeledImage], min_confidence: float | None = None, masks_as: str = "polygons"
    ) -> Requirements:
        req = cls()
        for item in items:
            for region in kept_regions(item, min_confidence):
                req.labels[shape_of(region, masks_as)][label_of(region)] += 1
                req.region_texts += int(region.is_text)
            for text in item.texts:
                req.image_texts[text_kind(text)] += 1
        return req


def generate_label_config(
    items: list[LabeledImage], min_confidence: float | None = None, masks_as: str = "polygons"
) -> str:
    """A labeling config holding exactly what ``items`` need (for a new project)."""
    from label_studio_sdk.label_interface import LabelInterface
    from label_studio_sdk.label_interface.create import labels

    req = Requirements.of(items, min_confidence, masks_as)
    tags: dict[str, Any] = {DATA_KEY: ("Image", {"value": f"${DATA_KEY}", "zoom": "true"}, ())}
    for kind in _SHAPES:
        if req.labels[kind]:
            tags[DEFAULT_NAMES[kind]] = labels(sorted(req.labels[kind]), tag_type=_LABEL_TAGS[kind])
    if req.region_texts:
        tags[DEFAULT_NAMES[REGION_TEXT]] = ("TextArea", {"perRegion": "true", "editable": "true",
                                                         "displayMode": "region-list"}, ())  # fmt: skip
    for kind in (CAPTION, OCR):
        if req.image_texts[kind]:
            tags[DEFAULT_NAMES[kind]] = ("TextArea", {"editable": "true", "rows": "3"}, ())
    if len(tags) == 1:  # nothing accepted yet: a usable box config all the same
        tags[DEFAULT_NAMES[BOXES]] = labels([UNNAMED_LABEL], tag_type=_LABEL_TAGS[BOXES])
    return LabelInterface.create(tags)


# ---- what a project offers ------------------------------------------------------------
@dataclass
class ProjectSchema:
    """The parts of a labeling config we write into: control names and their labels."""

    image: str = DATA_KEY  # the Image tag's name (``to_name`` of every result)
    data_key: str = DATA_KEY  # its ``$value`` without the ``$``
    controls: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_NAMES))  # kind → control name
    labels: dict[str, list[str]] = field(default_factory=dict)  # kind → labels of that control

    @classmethod
    def from_config(cls, config: str) -> ProjectSchema:
        """Read a project's config: the first Image and the controls that point at it."""
        from label_studio_sdk.label_interface import LabelInterface

        li = LabelInterface(config)
        images = [o for o in li.objects if o.tag.lower() == "image"]
        if not images:
            raise ValueError("The project's labeling config has no <Image> tag: it cannot hold image regions.")
        image = images[0]
        schema = cls(image=image.name, data_key=str(image.value).lstrip("$"), controls={}, labels={})
        for control in li.controls:
            if image.name not in (control.to_name or []):
                continue
            tag = control.tag.lower()
            if tag in ("rectanglelabels", "polygonlabels", "brushlabels"):
                kind = {"rectanglelabels": BOXES, "polygonlabels": POLYGONS, "brushlabels": BRUSH}[tag]
                if kind not in schema.controls:
                    schema.controls[kind] = control.name
                    schema.labels[kind] = list(control.labels or [])
            elif tag == "textarea":
                per_region = str(control.attr.get("perRegion", "false")).lower() == "true"
                kinds = [REGION_TEXT] if per_region else [CAPTION, OCR]
                for kind in kinds:
                    if kind not in schema.controls or control.name == DEFAULT_NAMES[kind]:
                        schema.controls[kind] = control.name
        return schema

    @classmethod
    def default_for(
        cls, items: list[LabeledImage], min_confidence: float | None = None, masks_as: str = "polygons"
    ) -> ProjectSchema:
        """The schema of :func:`generate_label_config` for the same items."""
        return cls.from_config(generate_label_config(items, min_confidence, masks_as))


@dataclass
class LabelCheck:
    """Our labels against a project's: what is missing, with how many regions each would lose."""

    missing_labels: dict[str, dict[str, int]]  # kind → {label: regions}
    missing_controls: dict[str, int]  # kind → results that need a control the project lacks
    available: dict[str, list[str]]  # kind → labels the project has

    @classmethod
    def of(
        cls,
        items: list[LabeledImage],
        schema: ProjectSchema,
        min_confidence: float | None = None,
        masks_as: str = "polygons",
    ) -> LabelCheck:
        req = Requirements.of(items, min_confidence, masks_as)
        missing_labels: dict[str, dict[str, int]] = {}
        missing_controls: dict[str, int] = {}
        for kind in _SHAPES:
            if not req.labels[kind]:
                continue
            if kind not in schema.controls:
                missing_controls[kind] = sum(req.labels[kind].values())
            have = set(schema.labels.get(kind, []))
            lacking = {label: n for label, n in sorted(req.labels[kind].items()) if label not in have}
            if lacking:
                missing_labels[kind] = lacking
        if req.region_texts and REGION_TEXT not in schema.controls:
            missing_controls[REGION_TEXT] = req.region_texts
        for kind, count in req.image_texts.items():
            if count and kind not in schema.controls:
                missing_controls[kind] = count
        return cls(missing_labels, missing_controls, {k: list(v) for k, v in schema.labels.items()})

    @property
    def ok(self) -> bool:
        return not self.missing_labels and not self.missing_controls

    def missing_label_names(self) -> list[str]:
        return sorted({label for labels in self.missing_labels.values() for label in labels})

    def describe(self) -> str:
        if self.ok:
            return "The project has every label and field these regions need."
        lines = []
        for kind, labels in self.missing_labels.items():
            listed = ", ".join(f"{label!r} ({n} region{'s' * (n != 1)})" for label, n in labels.items())
            lines.append(f"Labels missing from the project's {_LABEL_TAGS[kind]}: {listed}.")
        names = {BOXES: "RectangleLabels", POLYGONS: "PolygonLabels", BRUSH: "BrushLabels", REGION_TEXT: "per-region TextArea",
                 CAPTION: "TextArea for captions", OCR: "TextArea for OCR text"}  # fmt: skip
        for kind, n in self.missing_controls.items():
            lines.append(f"The project has no {names[kind]} ({n} result{'s' * (n != 1)} need one).")
        lines.append("Choose: add them to the project's config, map them onto its labels, or leave those regions out.")
        return "\n".join(lines)


def extend_config(config: str, check: LabelCheck, schema: ProjectSchema) -> str:
    """The project's config with the missing labels and controls added (the "add them" choice).

    New controls go beside the Image tag; re-read the schema from the result.
    """
    root = ET.fromstring(config, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    by_name = {el.get("name"): el for el in root.iter() if el.get("name")}
    image = by_name[schema.image]
    parent = next((p for p in root.iter() if image in list(p)), root)
    controls = dict(schema.controls)
    for kind in (*_SHAPES, REGION_TEXT, CAPTION, OCR):
        if kind in check.missing_controls:
            name = DEFAULT_NAMES[kind]
            while name in by_name:
                name += "_florence"
            if kind in _LABEL_TAGS:
                el = ET.SubElement(parent, _LABEL_TAGS[kind], name=name, toName=schema.image)
            else:
                attrs = {"perRegion": "true", "editable": "true"} if kind == REGION_TEXT else {"editable": "true"}
                el = ET.SubElement(parent, "TextArea", name=name, toName=schema.image, **attrs)
            by_name[name] = el
            controls[kind] = name
        if kind in check.missing_labels:
            for label in check.missing_labels[kind]:
                ET.SubElement(by_name[controls[kind]], "Label", value=label)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


# ---- results ------------------------------------------------------------------------------
def _pct(value: float, size: int) -> float:
    return round(min(max(float(value) / size * 100.0, 0.0), 100.0), 6)


def _score(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def _clipped_span(a: float, b: float, size: int) -> tuple[float, float]:
    """Two corners on one axis, ordered and clipped to ``0..size`` pixels."""
    lo, hi = sorted((min(max(float(a), 0.0), float(size)), min(max(float(b), 0.0), float(size))))
    return lo, hi


def brush_value(region: Region, width: int, height: int) -> dict[str, Any]:
    """A segmentation region's filled mask (:func:`~florence_ui.core.labels.region_mask`) as Label Studio brush RLE."""
    from label_studio_sdk.converter.brush import mask2rle

    from florence_ui.core.labels import region_mask

    mask = region_mask(region, width, height).astype("uint8") * 255
    return {"format": "rle", "rle": [int(v) for v in mask2rle(mask)]}


def brush_mask(value: dict[str, Any], width: int, height: int) -> Any:
    """A ``brushlabels`` value's RLE back to an ``(H, W)`` bool mask (what Label Studio decodes and shows)."""
    import numpy as np
    from label_studio_sdk.converter.brush import decode_rle

    pixels = np.asarray(decode_rle(value["rle"]), dtype=np.uint8).reshape(height, width, 4)
    return pixels[:, :, 3] > 0


def region_geometry(region: Region, width: int, height: int, masks_as: str = "polygons") -> list[dict[str, Any]]:
    """The ``value`` geometry of a region, in percent: one dict per Label Studio region.

    Percentages keep 6 decimals, so ``value * size / 100`` gives the pixels back
    within ``size * 5e-9`` px per coordinate (corners and polygon points; a
    rectangle's far corner ``x + width`` within twice that). Geometry outside the
    image is clipped to its edge, a rectangle's corners first, so ``width`` is
    the part inside the image and the box never grows past it (polygons come
    with an even number of coordinates: :class:`~florence_ui.core.labels.Region` sees to it).
    With ``masks_as="brush"`` a segmentation region is one brush RLE of its filled mask.
    """
    if shape_of(region, masks_as) == BRUSH:
        return [brush_value(region, width, height)]
    if shape_of(region) == POLYGONS:
        flats = region.polygons or [region.quad or []]
        return [{"points": [[_pct(x, width), _pct(y, height)] for x, y in zip(flat[0::2], flat[1::2], strict=True)],
                 "closed": True} for flat in flats if len(flat) >= 6]  # fmt: skip
    x1, y1, x2, y2 = region.xyxy
    (x1, x2), (y1, y2) = _clipped_span(x1, x2, width), _clipped_span(y1, y2, height)
    return [{"x": _pct(x1, width), "y": _pct(y1, height), "width": _pct(x2 - x1, width),
             "height": _pct(y2 - y1, height), "rotation": 0}]  # fmt: skip


@dataclass
class Conversion:
    """One image's prediction, and what could not go into it (never silently)."""

    prediction: dict[str, Any]
    regions_accepted: int
    regions_sent: int  # accepted regions represented in the prediction
    ls_regions: int  # Label Studio regions (a multi-part polygon is one per part)
    texts_sent: int
    left_out: list[str] = field(default_factory=list)

    @property
    def result(self) -> list[dict[str, Any]]:
        return self.prediction["result"]


def to_prediction(
    item: LabeledImage,
    schema: ProjectSchema | None = None,
    *,
    label_map: dict[str, str] | None = None,
    leave_out_missing: bool = False,
    min_confidence: float | None = None,
    masks_as: str = "polygons",
) -> Conversion:
    """One prediction with all accepted regions and texts of ``item``, for ``schema``'s controls.

    ``label_map`` renames our labels to the project's. A region whose label (after
    mapping) or control the project lacks raises :class:`MissingInProject`, unless
    ``leave_out_missing``: then it is left out and listed in ``Conversion.left_out``.
    ``masks_as``: segmentation regions as ``polygons`` (PolygonLabels) or ``brush`` (BrushLabels RLE).
    """
    schema = schema or ProjectSchema.default_for([item], min_confidence, masks_as)
    label_map = label_map or {}
    regions = kept_regions(item, min_confidence)
    check = LabelCheck.of([item], schema, min_confidence, masks_as)
    if not leave_out_missing:
        unresolved = _unresolved(check, label_map)
        if not unresolved.ok:
            raise MissingInProject(unresolved)
    w, h = item.width, item.height
    common = {"to_name": schema.image, "original_width": w, "original_height": h, "image_rotation": 0}
    result: list[dict[str, Any]] = []
    left_out: list[str] = []
    scores: list[float] = []
    sent = ls_regions = 0
    for i, region in enumerate(regions, start=1):
        kind = shape_of(region, masks_as)
        label = label_map.get(label_of(region), label_of(region))
        geometries = region_geometry(region, w, h, masks_as)
        why = _why_not(schema, kind, label, region.is_text) or ("" if geometries else "a polygon needs 3 points")
        if why:
            left_out.append(f"{label_of(region)!r} region #{i} ({get_task(region.source_task).name}): {why}")
            continue
        score = _score(region.score)
        for j, geometry in enumerate(geometries):
            rid = f"r{i}" if j == 0 else f"r{i}p{j}"
            extra = {"score": score} if score is not None else {}
            result.append({"id": rid, "from_name": schema.controls[kind], **common, "type": _RESULT_TYPES[kind],
                           "value": {**geometry, _RESULT_TYPES[kind]: [label]}, **extra})  # fmt: skip
            if region.is_text:
                result.append({"id": rid, "from_name": schema.controls[REGION_TEXT], **common, "type": "textarea",
                               "value": {**geometry, "text": [region.label]}, **extra})  # fmt: skip
            ls_regions += 1
        sent += 1
        if score is not None:
            scores.append(score)
    texts_sent = 0
    for kind in (CAPTION, OCR):
        texts = [t for t in item.texts if text_kind(t) == kind]
        if not texts:
            continue
        if kind not in schema.controls:
            left_out += [f"{get_task(t.task).name} text: the project has no TextArea for it" for t in texts]
            continue
        known = [s for s in (_score(t.score) for t in texts) if s is not None]
        entry = {"id": f"{kind}", "from_name": schema.controls[kind], **common, "type": "textarea",
                 "value": {"text": [t.text for t in texts]}}  # fmt: skip
        if known:
            entry["score"] = round(sum(known) / len(known), 4)
            scores += known
        result.append(entry)
        texts_sent += len(texts)
    prediction: dict[str, Any] = {"model_version": item.model_version, "result": result}
    if scores:
        prediction["score"] = round(sum(scores) / len(scores), 4)
    return Conversion(prediction, len(regions), sent, ls_regions, texts_sent, left_out)


def _why_not(schema: ProjectSchema, kind: str, label: str, is_text: bool) -> str | None:
    if kind not in schema.controls:
        return f"the project has no {_LABEL_TAGS[kind]}"
    if schema.labels.get(kind) is not None and label not in schema.labels[kind]:
        return f"the project's {_LABEL_TAGS[kind]} has no label {label!r}"
    if is_text and REGION_TEXT not in schema.controls:
        return "the project has no per-region TextArea for its text"
    return None


def _unresolved(check: LabelCheck, label_map: dict[str, str]) -> LabelCheck:
    """What is still missing once ``label_map`` is applied (mapped targets must exist)."""
    missing: dict[str, dict[str, int]] = {}
    for kind, labels in check.missing_labels.items():
        have = set(check.available.get(kind, []))
        lacking = {lab: n for lab, n in labels.items() if label_map.get(lab) not in have}
        if lacking:
            missing[kind] = lacking
    return LabelCheck(missing, dict(check.missing_controls), check.available)


def image_name(item: LabeledImage) -> str:
    """The file name an image gets in Label Studio and in exports (its own, else one from its hash)."""
    if item.image_path:
        return item.image_path.replace("\\", "/").rsplit("/", 1)[-1]
    if item.name:  # in-memory images are sent as PNG; the hash keeps same-named uploads apart
        stem = item.name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "image"
        return f"{stem}-{item.image_hash[:8]}{item.file_suffix}"
    return f"image-{item.image_hash[:12]}{item.file_suffix}"


def fill_url(template: str, name: str, image_hash: str) -> str:
    """An image URL from a template: ``{name}`` and ``{hash}`` filled in, any other text kept as is."""
    return template.replace("{name}", name).replace("{hash}", image_hash)


def task_data(item: LabeledImage, image_url: str, schema: ProjectSchema | None = None) -> dict[str, Any]:
    """A task's ``data``: the image reference and the image hash that makes re-pushes idempotent."""
    key = schema.data_key if schema else DATA_KEY
    return {key: image_url, HASH_KEY: item.image_hash, "florence_ui_image_name": image_name(item)}


def to_task(item: LabeledImage, image_url: str, schema: ProjectSchema | None = None, **kwargs: Any) -> dict[str, Any]:
    """An import-ready Label Studio task: ``{"data": ..., "predictions": [...]}``."""
    conversion = to_prediction(item, schema, **kwargs)
    return {"data": task_data(item, image_url, schema), "predictions": [conversion.prediction]}
