"""The Florence-2 task catalogue: the one table every other layer reads.

Florence-2 is steered by a task token. Each task takes one kind of input and
answers with one kind of output; the UI builds its controls from this table, the
CLI validates ``--task`` against it, the parser picks its converter from it and
the teaching view prints its explanation. Everything that differs between tasks
is a field of a row (or follows from its output kind, like how its ``<loc_N>``
tokens group): code elsewhere reads those fields and never compares task tokens,
so a new task is one row here (plus, if it has a new output kind, a converter in
``parsing``). The few tasks the product names on purpose (the page's first task,
the caption-then-ground cascade) are the role constants at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class InputKind(StrEnum):
    """What the user must give besides the image."""

    NONE = "none"
    TEXT = "text"
    BOXES = "boxes"


class OutputKind(StrEnum):
    """What the model answers with, after parsing."""

    TEXT = "text"  # a string for the whole image (captions, OCR)
    BOXES = "boxes"  # labelled axis-aligned boxes
    POLYGONS = "polygons"  # segmentation polygons (rendered as masks)
    QUADS = "quads"  # OCR quadrilaterals with their text
    REGION_TEXT = "region_text"  # one text answer per prompt box


class LocGroup(IntEnum):
    """How many ``<loc_N>`` tokens of an answer make one instance: the parser and the score walker group them so."""

    NONE = 0  # the answer is text: no location tokens
    POINTS = 2  # polygon vertices, x y pairs, as many as the outline needs
    BOX = 4  # x1 y1 x2 y2
    QUAD = 8  # the four corners of an OCR quadrilateral


#: the grouping follows the output kind (region-text answers may echo their prompt box, read as a box)
_LOC_GROUPS: dict[OutputKind, LocGroup] = {
    OutputKind.TEXT: LocGroup.NONE,
    OutputKind.BOXES: LocGroup.BOX,
    OutputKind.POLYGONS: LocGroup.POINTS,
    OutputKind.QUADS: LocGroup.QUAD,
    OutputKind.REGION_TEXT: LocGroup.BOX,
}


@dataclass(frozen=True)
class Task:
    """One row of the catalogue."""

    token: str
    name: str
    input: InputKind
    output: OutputKind
    explanation: str
    #: the tiled (``sv.InferenceSlicer``) mode makes sense for this task
    tileable: bool = False
    #: placeholder shown in text boxes of the UI / help of the CLI
    text_hint: str = ""
    #: each region's label is free text (a description, a line of OCR), not a category: Label Studio gets it in a
    #: per-region TextArea under the label ``Text`` / ``Description``, COCO / YOLO under that category
    free_text_labels: bool = False
    #: the answer is text read off the image (OCR), not words about it: its free-text regions are ``Text`` and its
    #: image-level answer goes to the ``ocr`` TextArea rather than ``caption``
    reads_text: bool = False
    #: the answer may mix boxes and polygons (open-vocabulary detection): the parser keeps both, one row each
    mixed_polygons: bool = False

    @property
    def needs_text(self) -> bool:
        return self.input is InputKind.TEXT

    @property
    def needs_boxes(self) -> bool:
        return self.input is InputKind.BOXES

    @property
    def has_regions(self) -> bool:
        """True when the answer is spatial (boxes, masks, quads)."""
        return self.output is not OutputKind.TEXT

    @property
    def is_caption(self) -> bool:
        """An image-level description (what the caption-then-ground cascade can start from); OCR is not one."""
        return self.output is OutputKind.TEXT and not self.reads_text

    @property
    def loc_group(self) -> LocGroup:
        """How the answer's ``<loc_N>`` tokens group into instances (see :class:`LocGroup`)."""
        return _LOC_GROUPS[self.output]


_T = Task
_I = InputKind
_O = OutputKind

TASKS: tuple[Task, ...] = (
    _T("<CAPTION>", "Caption", _I.NONE, _O.TEXT, "One short sentence describing the whole image."),
    _T(
        "<DETAILED_CAPTION>",
        "Detailed caption",
        _I.NONE,
        _O.TEXT,
        "A few sentences describing the image in more detail.",
    ),
    _T(
        "<MORE_DETAILED_CAPTION>",
        "More detailed caption",
        _I.NONE,
        _O.TEXT,
        "A full paragraph about the image: objects, colours, layout, background.",
    ),
    _T(
        "<OD>",
        "Object detection",
        _I.NONE,
        _O.BOXES,
        "Finds objects and names their category; each box is 4 <loc_N> tokens after the name.",
        tileable=True,
    ),
    _T(
        "<DENSE_REGION_CAPTION>",
        "Dense region captions",
        _I.NONE,
        _O.BOXES,
        "Finds regions and writes a short description for each instead of a bare category.",
        free_text_labels=True,
    ),
    _T(
        "<REGION_PROPOSAL>",
        "Region proposals",
        _I.NONE,
        _O.BOXES,
        "Boxes around everything that looks like an object, without names.",
    ),
    _T(
        "<CAPTION_TO_PHRASE_GROUNDING>",
        "Phrase grounding",
        _I.TEXT,
        _O.BOXES,
        "Given a caption, finds the image region for each phrase in it.",
        tileable=True,
        text_hint="A green car parked in front of a yellow building.",
    ),
    _T(
        "<OPEN_VOCABULARY_DETECTION>",
        "Open-vocabulary detection",
        _I.TEXT,
        _O.BOXES,
        "Finds every instance of whatever you name, even categories outside COCO.",
        tileable=True,
        text_hint="wheels",
        mixed_polygons=True,
    ),
    _T(
        "<REFERRING_EXPRESSION_SEGMENTATION>",
        "Referring-expression segmentation",
        _I.TEXT,
        _O.POLYGONS,
        "Outlines the object that your phrase refers to as a polygon of <loc_N> points.",
        text_hint="a car",
    ),
    _T(
        "<REGION_TO_SEGMENTATION>",
        "Region to segmentation",
        _I.BOXES,
        _O.POLYGONS,
        "Outlines the main object inside each box you draw as a polygon.",
    ),
    _T(
        "<REGION_TO_CATEGORY>",
        "Region to category",
        _I.BOXES,
        _O.REGION_TEXT,
        "Names the category of the object inside each box you draw.",
    ),
    _T(
        "<REGION_TO_DESCRIPTION>",
        "Region to description",
        _I.BOXES,
        _O.REGION_TEXT,
        "Describes what is inside each box you draw in a short phrase.",
        free_text_labels=True,
    ),
    _T(
        "<REGION_TO_OCR>",
        "Region to OCR",
        _I.BOXES,
        _O.REGION_TEXT,
        "Reads the text inside each box you draw.",
        free_text_labels=True,
        reads_text=True,
    ),
    _T("<OCR>", "OCR", _I.NONE, _O.TEXT, "Reads all the text in the image as one string.", reads_text=True),
    _T(
        "<OCR_WITH_REGION>",
        "OCR with regions",
        _I.NONE,
        _O.QUADS,
        "Reads each line of text and gives its quadrilateral (8 <loc_N> tokens: 4 corners).",
        free_text_labels=True,
        reads_text=True,
    ),
)

TASKS_BY_TOKEN: dict[str, Task] = {t.token: t for t in TASKS}
TASK_TOKENS: tuple[str, ...] = tuple(TASKS_BY_TOKEN)


def get_task(token_or_name: str) -> Task:
    """Look a task up by token (``<OD>``), bare token (``OD``) or human name.

    Raises ``ValueError`` listing the valid tokens, so a typo in the CLI or an API
    call gets an answer a person can act on.
    """
    key = token_or_name.strip()
    if key in TASKS_BY_TOKEN:
        return TASKS_BY_TOKEN[key]
    wrapped = f"<{key.strip('<>').upper()}>"
    if wrapped in TASKS_BY_TOKEN:
        return TASKS_BY_TOKEN[wrapped]
    for task in TASKS:
        if task.name.lower() == key.lower():
            return task
    raise ValueError(f"Unknown Florence-2 task {token_or_name!r}. Valid tasks: {', '.join(TASK_TOKENS)}")


# ---- the tasks the product names on purpose ----------------------------------------------------------
#: the task the page's dropdown and the API's ``task`` field start on
DEFAULT_TASK: Task = TASKS_BY_TOKEN["<OD>"]
#: the caption the caption-then-ground cascade writes when the chosen task is not a caption (:attr:`Task.is_caption`)
CAPTION_TASK: Task = TASKS_BY_TOKEN["<CAPTION>"]
#: the task that finds every phrase of a caption: the cascade's second step
GROUNDING_TASK: Task = TASKS_BY_TOKEN["<CAPTION_TO_PHRASE_GROUNDING>"]
#: the task that finds every instance of a named class: the workspace's "detect the label set", one text per class
DETECT_TASK: Task = TASKS_BY_TOKEN["<OPEN_VOCABULARY_DETECTION>"]
#: the task that names what is inside a box: the workspace's "name the selected region"
NAME_REGION_TASK: Task = TASKS_BY_TOKEN["<REGION_TO_CATEGORY>"]
#: the ML backend's picks for a labelling config's controls (``labelstudio/backend_config.py``)
DETAILED_CAPTION_TASK: Task = TASKS_BY_TOKEN["<MORE_DETAILED_CAPTION>"]
OCR_TASK: Task = TASKS_BY_TOKEN["<OCR>"]
OCR_REGIONS_TASK: Task = TASKS_BY_TOKEN["<OCR_WITH_REGION>"]
REFERRING_SEGMENT_TASK: Task = TASKS_BY_TOKEN["<REFERRING_EXPRESSION_SEGMENTATION>"]
#: what a smart-tool box gets in a project that draws polygons
REGION_SEGMENT_TASK: Task = TASKS_BY_TOKEN["<REGION_TO_SEGMENTATION>"]
#: every object of the fixed vocabulary, no text: the MCP ``detect`` tool
OBJECTS_TASK: Task = TASKS_BY_TOKEN["<OD>"]
#: a sentence about what is inside a box: the MCP ``describe_regions`` tool and a click's description
DESCRIBE_REGION_TASK: Task = TASKS_BY_TOKEN["<REGION_TO_DESCRIPTION>"]
