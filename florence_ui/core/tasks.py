"""The Florence-2 task catalogue: the one table every other layer reads.

Florence-2 is steered by a task token. Each task takes one kind of input and
answers with one kind of output; the UI builds its controls from this table, the
CLI validates ``--task`` against it, the parser picks its converter from it and
the teaching view prints its explanation. Nothing else lists tasks again, so a
new task is one row here (plus, if it has a new output kind, a converter in
``parsing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    ),
    _T(
        "<REGION_TO_OCR>",
        "Region to OCR",
        _I.BOXES,
        _O.REGION_TEXT,
        "Reads the text inside each box you draw.",
    ),
    _T("<OCR>", "OCR", _I.NONE, _O.TEXT, "Reads all the text in the image as one string."),
    _T(
        "<OCR_WITH_REGION>",
        "OCR with regions",
        _I.NONE,
        _O.QUADS,
        "Reads each line of text and gives its quadrilateral (8 <loc_N> tokens: 4 corners).",
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
