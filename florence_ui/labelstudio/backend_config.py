"""Which Florence-2 task a Label Studio project gets, read from its labelling config (the ML backend's table).

Why this module exists: a Label Studio ML backend is handed a project's labelling
config with every request and must decide, from the control tags alone, what to
ask Florence-2. The decision is one small table (:data:`AUTO_TASKS`), overridable
per control with a ``florence_task`` attribute, and the label matching that maps
Florence-2's words onto the project's labels (:class:`LabelMatcher`). Reading the
config goes through ``label_studio_sdk``'s ``LabelInterface`` and
:class:`~florence_ui.labelstudio.convert.ProjectSchema` (the control names the
prediction builder writes into); no second parser.

The table (first match per control; every control pointing at the first Image):

================================================  =======================================================
control tag                                       Florence-2 task
================================================  =======================================================
``RectangleLabels``, every label a COCO word       ``<OD>`` (one call; answers mapped onto the labels)
``RectangleLabels``, any other label               ``<OPEN_VOCABULARY_DETECTION>`` once per label (one
                                                   batched call, ``FlorenceEngine.run_texts``)
``RectangleLabels`` / ``PolygonLabels`` whose      ``<OCR_WITH_REGION>`` (lines of text; the text goes to
labels include ``Text``, with a per-region         the per-region TextArea)
``TextArea``
``PolygonLabels``                                  ``<REFERRING_EXPRESSION_SEGMENTATION>`` once per label
``TextArea`` named ``caption`` (not per region)    ``<MORE_DETAILED_CAPTION>``
``TextArea`` named ``ocr`` / ``text`` / ``transcription``  ``<OCR>``
================================================  =======================================================

Override: ``<RectangleLabels name="label" toName="image" florence_task="OD">``
(any task of :mod:`florence_ui.core.tasks` by its bare token, e.g. ``CAPTION_TO_PHRASE_GROUNDING``,
``OPEN_VOCABULARY_DETECTION``; XML needs ``&lt;OD&gt;`` for the bracketed form;
``florence_task="none"`` leaves the control out of automatic pre-annotation). A text
task runs once per label of the control. On the control a smart tool draws with, a
task taking boxes (``REGION_TO_DESCRIPTION``, ``REGION_TO_SEGMENTATION``) is what
that tool's rectangles and keypoints get.

Labels: a Florence-2 word maps to the control's label whose value (or ``alias``)
equals it, else whose ``predicted_values`` (comma-separated synonyms, as Label
Studio documents) holds it, case-insensitively. Nothing else: the closest label
is never guessed, an unmatched region is left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from florence_ui.core.tasks import (
    CAPTION_TASK,
    DEFAULT_TASK,
    DETAILED_CAPTION_TASK,
    DETECT_TASK,
    OCR_REGIONS_TASK,
    OCR_TASK,
    REFERRING_SEGMENT_TASK,
    OutputKind,
    Task,
    get_task,
)
from florence_ui.labelstudio.convert import BOXES, POLYGONS, REGION_TEXT, TEXT_LABEL, ProjectSchema

#: the attribute that overrides the table on one control tag
TASK_ATTRIBUTE = "florence_task"
#: ``florence_task="none"``: no automatic pre-annotation for this control
NO_TASK = "none"

#: the 80 COCO categories (plus the words Florence-2's <OD> commonly answers with): "generic" labels
COCO_WORDS = frozenset(
    "person bicycle car motorcycle airplane bus train truck boat traffic light fire hydrant stop sign parking meter "
    "bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee "
    "skis snowboard sports ball kite baseball bat baseball glove skateboard surfboard tennis racket bottle wine glass "
    "cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot dog pizza donut cake chair couch "
    "potted plant bed dining table toilet tv laptop mouse remote keyboard cell phone microwave oven toaster sink "
    "refrigerator book clock vase scissors teddy bear hair drier toothbrush wheel door window building tree man "
    "woman animal".split()
) | {"traffic light", "fire hydrant", "stop sign", "parking meter", "sports ball", "baseball bat", "baseball glove",
     "tennis racket", "wine glass", "hot dog", "potted plant", "dining table", "cell phone", "teddy bear",
     "hair drier"}  # fmt: skip

#: TextArea names that ask for image-level text: name → task
TEXTAREA_TASKS = {"caption": DETAILED_CAPTION_TASK.token, "ocr": OCR_TASK.token, "text": OCR_TASK.token,
                  "transcription": OCR_TASK.token}  # fmt: skip
#: the tasks the table picks for labels controls
OD, OPEN_VOCAB, OCR_REGIONS, REFERRING = (
    DEFAULT_TASK.token, DETECT_TASK.token, OCR_REGIONS_TASK.token, REFERRING_SEGMENT_TASK.token)  # fmt: skip


def _words(text: str) -> str:
    return " ".join(str(text).split()).casefold()


@dataclass
class LabelMatcher:
    """Florence-2's words → one control's labels: exact value / alias, then ``predicted_values``, ignoring case."""

    labels: list[str]
    synonyms: dict[str, str] = field(default_factory=dict)  # casefolded word → label

    @classmethod
    def of(cls, control) -> LabelMatcher:
        """From a ``LabelInterface`` control (its ``labels_attrs``: value, alias, predicted_values)."""
        labels = list(control.labels or [])
        synonyms: dict[str, str] = {}
        for label, tag in (getattr(control, "labels_attrs", None) or {}).items():
            attrs = tag.attr or {}
            for word in [attrs.get("value", ""), *str(attrs.get("predicted_values") or "").split(",")]:
                if _words(word) and _words(word) not in synonyms:
                    synonyms[_words(word)] = label
        return cls(labels, synonyms)

    def match(self, word: str) -> str | None:
        """The label ``word`` names, or None (never the closest one)."""
        key = _words(word)
        for label in self.labels:
            if _words(label) == key:
                return label
        return self.synonyms.get(key)

    @property
    def generic(self) -> bool:
        """Every label (or one of its synonyms) is a COCO-like word: plain ``<OD>`` can answer it."""
        words = {label: {_words(label)} for label in self.labels}
        for word, label in self.synonyms.items():
            words.setdefault(label, set()).add(word)
        return bool(self.labels) and all(ws & COCO_WORDS for ws in words.values())


@dataclass
class Step:
    """One Florence-2 call for one control: its task, and the texts (labels) a text task runs once each."""

    control: str
    kind: str  # convert's result kind: boxes / polygons / caption / ocr
    task: Task
    texts: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What the backend asks of each task's image, and how answers map onto the project's labels."""

    schema: ProjectSchema
    steps: list[Step]
    matchers: dict[str, LabelMatcher]  # kind (boxes / polygons) → labels of the control the builder writes into
    #: control name → its tag (lower case) and its florence_task override, for the interactive tools
    tags: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: str) -> Plan:
        """Read a labelling config (``ValueError`` with a sentence for one the backend cannot serve)."""
        from label_studio_sdk.label_interface import LabelInterface

        try:
            schema = ProjectSchema.from_config(config)
            li = LabelInterface(config)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - the SDK's XML errors have no common public base
            raise ValueError(f"the labelling config is not valid XML ({exc}).") from None
        plan = cls(schema, [], {})
        for control in li.controls:
            if schema.image not in (control.to_name or []):
                continue
            tag = control.tag.lower()
            plan.tags[control.name] = tag
            override = str(control.attr.get(TASK_ATTRIBUTE) or "").strip()
            if override:
                plan.overrides[control.name] = override
            kind = {"rectanglelabels": BOXES, "polygonlabels": POLYGONS}.get(tag)
            if kind is not None and schema.controls.get(kind) == control.name:
                plan.matchers[kind] = LabelMatcher.of(control)
        for control in li.controls:
            step = plan._step(control)
            if step is not None:
                plan.steps.append(step)
        return plan

    def _step(self, control) -> Step | None:
        name, tag = control.name, self.tags.get(control.name)
        override = self.overrides.get(name)
        if override and override.lower() == NO_TASK:
            return None
        kind = {"rectanglelabels": BOXES, "polygonlabels": POLYGONS}.get(tag or "")
        if kind is not None:
            if self.schema.controls.get(kind) != name:
                return None  # the builder writes into the first control of each kind only
            matcher = self.matchers[kind]
            if override:
                task = _task(override, name)
            elif REGION_TEXT in self.schema.controls and matcher.match(TEXT_LABEL):
                task = get_task(OCR_REGIONS)
            elif kind == POLYGONS:
                task = get_task(REFERRING)
            else:
                task = get_task(OD if matcher.generic else OPEN_VOCAB)
            return Step(name, kind, task, list(matcher.labels) if task.needs_text else [])
        if tag == "textarea" and str(control.attr.get("perRegion", "false")).lower() != "true":
            token = override or TEXTAREA_TASKS.get(name.lower())
            if not token:
                return None
            task = _task(token, name)
            if task.output is not OutputKind.TEXT:
                raise ValueError(f"The TextArea {name!r} can only hold a caption or OCR text, not {task.name}: set "
                                 f'{TASK_ATTRIBUTE}="{CAPTION_TASK.token}" (or another text task) on it.')  # fmt: skip
            return Step(name, "ocr" if task.reads_text else "caption", task)
        return None


def _task(token: str, control: str) -> Task:
    try:
        return get_task(token)
    except ValueError as exc:
        raise ValueError(f'The control {control!r} has {TASK_ATTRIBUTE}="{token}": {exc}') from None
