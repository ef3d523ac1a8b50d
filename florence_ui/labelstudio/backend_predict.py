"""Florence-2 answers → Label Studio predictions, for the ML backend (automatic and interactive).

Why this module exists: the backend's HTTP layer (:mod:`florence_ui.labelstudio.backend`)
should only speak the protocol. Here a :class:`~florence_ui.labelstudio.backend_config.Plan`
becomes engine calls through the engine's public doors (``run`` for one task,
``run_texts`` for one text per label: one vision pass, one batched ``generate``),
answers become :class:`~florence_ui.core.labels.Region` s with the project's labels,
and :func:`~florence_ui.labelstudio.convert.to_prediction` (the builder ``push`` uses)
writes the prediction: percent coordinates, ``original_width/height``, per-region
``score`` and a prediction ``score``. Regions whose word matches no label are left
out and counted (:attr:`Answer.left_out`), never given the closest label.

Interactive (``context.result`` of a smart tool), per region the person made:

* rectangle → its box; keypoint → a square box centred on it, :data:`KEYPOINT_BOX`
  of the image's shorter side (clipped to the image);
* the box goes to ``florence_task`` of the control it was drawn with when that task
  takes boxes, else ``<REGION_TO_SEGMENTATION>`` when the project has PolygonLabels,
  else ``<REGION_TO_CATEGORY>`` (its category mapped onto the RectangleLabels);
* a TextArea's text → ``<REFERRING_EXPRESSION_SEGMENTATION>`` when the project has
  PolygonLabels, else ``<CAPTION_TO_PHRASE_GROUNDING>`` (phrases mapped onto the labels;
  a phrase that is no label but whose text is the one label asked keeps it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from florence_ui.core import limits
from florence_ui.core.labels import ImageText, LabeledImage, Region, regions_from_result
from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import GROUNDING_TASK, NAME_REGION_TASK, REGION_SEGMENT_TASK, OutputKind, get_task
from florence_ui.labelstudio.backend_config import REFERRING, LabelMatcher, Plan
from florence_ui.labelstudio.convert import BOXES, POLYGONS, TEXT_LABEL, to_prediction

log = logging.getLogger(__name__)

#: a keypoint's box: this fraction of the image's shorter side, centred on the point
KEYPOINT_BOX = 0.1
SEGMENT_TASK = REGION_SEGMENT_TASK.token
_SIZE = re.compile(r"florence-2-(base|large)(-ft)?", re.IGNORECASE)


def model_version(model_id: str | None, revision: str | None) -> str:
    """``florence-2-<size>@<revision>``: stable for one checkpoint (Label Studio skips tasks it already predicted)."""
    text = str(model_id or "")
    found = _SIZE.search(text)
    if found:
        size = found.group(1).lower() + (found.group(2) or "").lower()
    else:  # a local directory or another repo: its last path part, tidied
        size = re.sub(r"[^a-z0-9._-]+", "-", text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()) or "model"
        size = size.removeprefix("florence-2-")
    return f"florence-2-{size}@{revision or 'main'}"


@dataclass
class Answer:
    """One task's prediction (None: nothing to predict) and what was left out of it."""

    prediction: dict[str, Any] | None
    left_out: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Predictor:
    """Runs a plan's Florence-2 calls on one image and builds the prediction (callers hold the model gate)."""

    engine: Any
    settings: Any = None  # GenerationSettings, or None for the engine's defaults
    keypoint_box: float = KEYPOINT_BOX

    @property
    def model_version(self) -> str:
        return model_version(self.engine.model_id, self.engine.revision)

    # ---- automatic pre-annotation ------------------------------------------------------
    def auto(self, plan: Plan, image: Image.Image) -> Answer:
        regions: list[Region] = []
        texts: list[ImageText] = []
        left_out = 0
        notes: list[str] = []
        for step in plan.steps:
            matcher = plan.matchers.get(step.kind)
            if step.task.needs_boxes:
                notes.append(f"{step.task.name} needs boxes drawn: it runs for smart tools only.")
                continue
            if step.task.needs_text:
                results = self.engine.run_texts(image, step.task.token, step.texts, settings=self.settings,
                                                cap=limits.current().max_boxes)  # fmt: skip
            else:
                results = [self.engine.run(image, step.task.token, settings=self.settings)]
            for result in results:
                notes += result.notes
                if step.task.output is OutputKind.TEXT:
                    texts.append(ImageText(step.task.token, result.text or "", _text_score(result)))
                    continue
                got, lost = _labelled(result, matcher, step.kind, asked=result.text_input)
                regions += got
                left_out += lost
        return self._answer(plan, image, regions, texts, left_out, notes)

    # ---- interactive (smart tools) -----------------------------------------------------
    def interactive(self, plan: Plan, image: Image.Image, context: dict[str, Any]) -> Answer:
        regions: list[Region] = []
        left_out = 0
        notes: list[str] = []
        width, height = image.size
        for item in context.get("result") or []:
            kind = str(item.get("type", "")).lower()
            value = item.get("value") or {}
            if kind in ("rectanglelabels", "rectangle", "keypointlabels", "keypoint"):
                box = self._box(kind, value, width, height)
                if box is None:
                    notes.append("A smart-tool region without its geometry was skipped.")
                    continue
                token = self._box_task(plan, str(item.get("from_name", "")))
                target = POLYGONS if get_task(token).output is OutputKind.POLYGONS else BOXES
                drawn = [str(v) for k, v in value.items() if k.endswith("labels") for v in (v or [])]
                result = self.engine.run(image, token, boxes=[box], settings=self.settings)
                asked = drawn[0] if drawn and target == POLYGONS else None
                got, lost = _labelled(result, plan.matchers.get(target), target, asked=asked)
            elif kind == "textarea":
                text = " ".join(str(t) for t in (value.get("text") or []) if str(t).strip())
                if not text:
                    continue
                target = POLYGONS if POLYGONS in plan.schema.controls else BOXES
                token = REFERRING if target == POLYGONS else GROUNDING_TASK.token
                result = self.engine.run(image, token, text=text, settings=self.settings)
                got, lost = _labelled(result, plan.matchers.get(target), target, asked=text)
            else:
                continue
            notes += result.notes
            regions += got
            left_out += lost
        return self._answer(plan, image, regions, [], left_out, notes)

    def _box(self, kind: str, value: dict[str, Any], width: int, height: int) -> list[float] | None:
        try:
            x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
            if kind.startswith("keypoint"):
                half = self.keypoint_box * min(width, height) / 2.0
                return [max(0.0, x - half), max(0.0, y - half), min(float(width), x + half),
                        min(float(height), y + half)]  # fmt: skip
            return [x, y, x + float(value["width"]) * width / 100.0, y + float(value["height"]) * height / 100.0]
        except (KeyError, TypeError, ValueError):
            return None

    @staticmethod
    def _box_task(plan: Plan, control: str) -> str:
        override = plan.overrides.get(control)
        if override:
            try:
                if get_task(override).needs_boxes:
                    return get_task(override).token
            except ValueError:
                pass
        return SEGMENT_TASK if POLYGONS in plan.schema.controls else NAME_REGION_TASK.token

    # ---- the prediction ------------------------------------------------------------------
    def _answer(self, plan: Plan, image: Image.Image, regions: list[Region], texts: list[ImageText],
                left_out: int, notes: list[str]) -> Answer:  # fmt: skip
        item = LabeledImage(image.width, image.height, regions=regions, texts=texts, image=image,
                            model=self.engine.model_id, revision=self.engine.revision)  # fmt: skip
        text_label = plan.matchers[BOXES].match(TEXT_LABEL) if BOXES in plan.matchers else None
        poly_text = plan.matchers[POLYGONS].match(TEXT_LABEL) if POLYGONS in plan.matchers else None
        label_map = {TEXT_LABEL: text_label or poly_text or TEXT_LABEL}
        conversion = to_prediction(item, plan.schema, label_map=label_map, leave_out_missing=True)
        left_out += len(conversion.left_out)
        notes += conversion.left_out
        prediction = dict(conversion.prediction)
        prediction["model_version"] = self.model_version
        return Answer(prediction, left_out, notes)


def _text_score(result: FlorenceResult) -> float | None:
    score = float(result.text_score)
    return None if score != score else round(score, 4)


def _labelled(result: FlorenceResult, matcher: LabelMatcher | None, kind: str,
              asked: str | None) -> tuple[list[Region], int]:  # fmt: skip
    """The result's regions with the project's labels, and how many matched none (left out)."""
    kept: list[Region] = []
    lost = 0
    for region in regions_from_result(result):
        if kind == BOXES:  # a box control: polygons and quads travel as their boxes
            region.polygons, region.quad = [], None
        if region.is_text:  # free text (OCR lines): the label is convert's Text, the words go to the TextArea
            kept.append(region)
            continue
        label = matcher.match(region.label) if matcher else None
        if label is None and matcher and asked:
            label = matcher.match(asked)  # the one label that was asked (open-vocabulary, referring segmentation)
        if label is None:
            lost += 1
            log.info("left out a %r region: no label of the project matches it", region.label)
            continue
        region.label = label
        kept.append(region)
    return kept, lost
