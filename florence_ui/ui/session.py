"""What one browser session holds (kept in a ``gr.State``, never in module globals).

Two browser tabs never share this object: each gets its own copy of the
state's initial value, so their boxes and reviews stay apart. The model is
not here: it is loaded once per process and shared (see ``FlorenceEngine``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..engine import image_key
from ..labels import LabeledImage
from ..review import ReviewSession


@dataclass
class UISession:
    """Per-browser state: the current image, its prompt boxes, its review, its results."""

    image: Image.Image | None = None
    image_name: str = "image.png"
    boxes: list[list[float]] = field(default_factory=list)
    review: ReviewSession = field(default_factory=ReviewSession)
    results: list[Any] = field(default_factory=list)  # FlorenceResult history for this image
    #: Label Studio settings typed into the page (the API key is kept here, never echoed back)
    labelstudio: dict[str, Any] = field(default_factory=dict)
    #: the file the current image came from (box edits with the same file skip re-hashing the pixels)
    image_path: str | None = None
    #: clockwise quarter turns the user applied in the image annotator
    image_turns: int = 0
    #: what the result image shows: "latest" (latest run + accepted), "all" (everything not rejected), "accepted"
    show: str = "latest"
    #: overlay Florence-2's 1000-bin grid on the result image (teaching view)
    grid: bool = False
    #: the run the teaching view explains (1-based); None = the latest run
    teach_run: int | None = None
    #: the status line of the latest run (timings, warnings), kept to redraw the page
    status: str = ""

    def set_image(self, image: Image.Image, name: str = "image.png") -> bool:
        """Make ``image`` current; returns True when it is a different image (review reset)."""
        image = image.convert("RGB") if image.mode != "RGB" else image
        changed = self.review.start(image_key(image), image.size)
        self.image, self.image_name = image, name
        if changed:
            self.boxes, self.results = [], []
            self.teach_run, self.status = None, ""
        return changed

    def labeled_image(self) -> LabeledImage:
        """What the reviewer accepted on the current image."""
        return self.review.labeled_image(image=self.image, name=self.image_name)
