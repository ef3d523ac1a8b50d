"""What one browser session holds (kept in a ``gr.State``, never in module globals).

Two browser tabs never share this object: each gets its own copy of the
state's initial value, so their boxes and reviews stay apart. The model is
not here: it is loaded once per process and shared (see ``FlorenceEngine``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..engine import image_key
from ..labels import LabeledImage
from ..review import ReviewSession

#: how many earlier images' reviews one session keeps (results hold masks, so this is bounded)
MAX_ARCHIVED = 10


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

    #: reviews of earlier images of this session, by image hash: going back to an image restores its work
    archive: OrderedDict[str, tuple[ReviewSession, list[Any]]] = field(default_factory=OrderedDict)

    def set_image(self, image: Image.Image, name: str = "image.png") -> bool:
        """Make ``image`` current; returns True when it is a different image.

        The review of the image being left is archived (not dropped), and an
        image seen before in this session gets its review and runs back: a
        reviewer who opens the wrong file, or compares two photos, loses nothing.
        """
        image = image.convert("RGB") if image.mode != "RGB" else image
        key = image_key(image)
        changed = key != self.review.image_key
        if changed:
            self.archive_current()
            restored = self.archive.pop(key, None)
            if restored is not None:
                self.review, self.results = restored
            else:
                self.review, self.results = ReviewSession(), []
                self.review.start(key, image.size)
            self.boxes = []
            self.teach_run, self.status = None, ""
        self.image, self.image_name = image, name
        return changed

    def archive_current(self) -> None:
        """Keep the current image's review (if it has anything) for a later return to that image."""
        if self.review.image_key and self.review.items:
            self.archive[self.review.image_key] = (self.review, self.results)
            self.archive.move_to_end(self.review.image_key)
            while len(self.archive) > MAX_ARCHIVED:
                self.archive.popitem(last=False)

    def labeled_image(self) -> LabeledImage:
        """What the reviewer accepted on the current image."""
        return self.review.labeled_image(image=self.image, name=self.image_name)
