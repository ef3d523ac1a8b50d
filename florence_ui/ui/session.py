"""What one browser session holds (kept in a ``gr.State``, never in module globals).

Two browser tabs never share this object: each gets its own copy of the
state's initial value, so their boxes and reviews stay apart. The model is
not here: it is loaded once per process and shared (see ``FlorenceEngine``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from florence_ui.core.images import image_identity
from florence_ui.core.labels import LabeledImage
from florence_ui.core.review import ReviewSession
from florence_ui.ui.workspace_view import WorkspaceState

#: how many earlier images' reviews one session keeps (results hold polygons, not masks; bounded all the same)
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
    #: (image, runs, picked run) the teaching panel last refreshed for: it skips redraws that change none of them
    teach_shown: tuple[str | None, int, int | None] | None = None
    #: SAM click prompts on the current image, ``(x, y, label)`` in image pixels (1 positive, 0 negative)
    clicks: list[tuple[float, float, int]] = field(default_factory=list)
    #: what this browser has open in the Workspace tab (plain data; the workspace itself is on disk)
    workspace: WorkspaceState | None = None

    #: reviews of earlier images of this session, by image hash: going back to an image restores its work
    archive: OrderedDict[str, tuple[ReviewSession, list[Any]]] = field(default_factory=OrderedDict)
    #: (image, the bytes of the file it was opened from): see :attr:`image_data`
    _file: tuple[Image.Image, bytes] | None = field(default=None, repr=False)

    @property
    def image_data(self) -> bytes | None:
        """The current image's file bytes: its identity, and what a push or an export sends.

        Kept in memory because gradio's copy of an upload may be cleaned up
        before the push. None when the image has no file, is turned, or was
        replaced or cleared since (the bytes belong to that one image object).
        """
        if self._file is not None and self._file[0] is self.image:
            return self._file[1]
        return None

    def set_image(self, image: Image.Image, name: str = "image.png", *, file: str | Path | bytes | None = None,
                  turns: int = 0) -> bool:  # fmt: skip
        """Make ``image`` current; returns True when it is a different image.

        ``file`` is where ``image`` was opened from (a path, or the uploaded
        bytes) and ``turns`` the annotator's clockwise quarter turns applied to
        it. The image's identity is :func:`~florence_ui.core.images.image_identity`:
        the file's bytes when the image is that file as it is, the same key the
        CLI gives the same photo; a turned image (or one with no file) is keyed
        by its pixels, since its pixels and regions are in the turned frame.

        The review of the image being left is archived (not dropped), and an
        image seen before in this session gets its review and runs back: a
        reviewer who opens the wrong file, or compares two photos, loses nothing.
        """
        image = image.convert("RGB") if image.mode != "RGB" else image
        data = None
        if file is not None and turns % 4 == 0:
            data = bytes(file) if isinstance(file, bytes | bytearray) else Path(file).read_bytes()
        key = image_identity(data if data is not None else image)
        changed = key != self.review.image_key
        if changed:
            self.archive_current()
            restored = self.archive.pop(key, None)
            if restored is not None:
                self.review, self.results = restored
            else:
                self.review, self.results = ReviewSession(), []
                self.review.start(key, image.size)
            self.boxes, self.clicks = [], []
            self.teach_run, self.status = None, ""
        self.image, self.image_name = image, name
        self._file = (image, data) if data is not None else None
        self.image_path = str(file) if isinstance(file, str | Path) else None
        self.image_turns = turns % 4
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
        item = self.review.labeled_image(image=self.image, name=self.image_name)
        item.image_data = self.image_data  # the file's own bytes (and so its identity) when the image is a file
        return item
