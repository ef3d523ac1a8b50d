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

    def set_image(self, image: Image.Image, name: str = "image.png") -> bool:
        """Make ``image`` current; returns True when it is a different image (review reset)."""
        image = image.convert("RGB") if image.mode != "RGB" else image
        changed = self.review.start(image_key(image), image.size)
        self.image, self.image_name = image, name
        if changed:
            self.boxes, self.results = [], []
        return changed

    def labeled_image(self) -> LabeledImage:
        """What the reviewer accepted on the current image."""
        return self.review.labeled_image(image=self.image)
