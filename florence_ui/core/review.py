"""Human-in-the-loop review state for one image: accept, reject or relabel each answer.

One :class:`ReviewSession` lives in each browser session (``gr.State``). Every
task run on the current image adds its regions (and its caption / OCR text) as
*pending*; the reviewer accepts, rejects or relabels them; accepted items
accumulate across tasks and leave as a :class:`LabeledImage`. Loading another
image starts a fresh review. Plain Python, no gradio, so it is tested directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from PIL import Image

from florence_ui.core.labels import ImageText, LabeledImage, Region, regions_from_result
from florence_ui.core.tasks import get_task


class ReviewStatus(StrEnum):
    """Where a review item stands. str-valued on purpose: the review table, the API (``review_update`` takes the
    string, ``review`` returns it) and exported files hold these strings, and a member equals its string."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


#: the members under short names, for ``if item.status == ACCEPTED``
PENDING, ACCEPTED, REJECTED = ReviewStatus.PENDING, ReviewStatus.ACCEPTED, ReviewStatus.REJECTED
#: the valid status strings, in review order (what error messages list)
STATUSES: tuple[str, ...] = tuple(s.value for s in ReviewStatus)


@dataclass
class ReviewItem:
    """A region or an image-level text under review."""

    id: int
    status: ReviewStatus
    region: Region | None = None
    text: ImageText | None = None
    run: int = 0  # which task run produced it (1-based)

    @property
    def label(self) -> str:
        return self.region.label if self.region else (self.text.text if self.text else "")

    @property
    def score(self) -> float | None:
        return self.region.score if self.region else (self.text.score if self.text else None)

    @property
    def task(self) -> str:
        return self.region.source_task if self.region else (self.text.task if self.text else "")


@dataclass
class ReviewSession:
    """Review state of the current image. ``image_key`` changes → everything resets."""

    image_key: str | None = None
    width: int = 0
    height: int = 0
    items: list[ReviewItem] = field(default_factory=list)
    runs: int = 0
    model: str | None = None
    revision: str | None = None

    # ---- lifecycle ----------------------------------------------------------------
    def start(self, image_key: str, size: tuple[int, int]) -> bool:
        """Switch to an image; returns True if that reset the review."""
        if image_key == self.image_key:
            return False
        self.image_key, (self.width, self.height) = image_key, size
        self.items, self.runs = [], 0
        return True

    def add_result(self, result: Any) -> list[ReviewItem]:
        """Add every region (and the text answer, if any) of a task run as pending."""
        self.runs += 1
        self.model = result.model or self.model
        self.revision = getattr(result, "revision", None) or self.revision
        new: list[ReviewItem] = []
        for region in regions_from_result(result):
            new.append(ReviewItem(self._next_id(new), PENDING, region=region, run=self.runs))
        if result.text:
            score = None if math.isnan(result.text_score) else round(float(result.text_score), 4)
            text = ImageText(result.task, result.text, score)
            new.append(ReviewItem(self._next_id(new), PENDING, text=text, run=self.runs))
        self.items.extend(new)
        return new

    def _next_id(self, pending: list[ReviewItem]) -> int:
        return max([i.id for i in self.items + pending], default=0) + 1

    # ---- edits ----------------------------------------------------------------------
    def get(self, item_id: int) -> ReviewItem:
        for item in self.items:
            if item.id == int(item_id):
                return item
        raise KeyError(f"No review item #{item_id} on this image")

    def set_status(self, item_ids: list[int] | int, status: ReviewStatus | str) -> int:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        status = ReviewStatus(status)
        ids = [item_ids] if isinstance(item_ids, int) else list(item_ids)
        for item_id in ids:
            self.get(item_id).status = status
        return len(ids)

    def relabel(self, item_id: int, label: str) -> None:
        """Change a region's label or a caption's text; empty labels are refused."""
        label = (label or "").strip()
        if not label:
            raise ValueError("A label cannot be empty")
        item = self.get(item_id)
        if item.region is not None:
            item.region = replace(item.region, label=label)
        elif item.text is not None:
            item.text = replace(item.text, text=label)

    def accept_above(self, threshold: float, include_unscored: bool = False) -> int:
        """Bulk-accept pending items scoring at least ``threshold``; returns how many."""
        count = 0
        for item in self.items:
            if item.status != PENDING:
                continue
            score = item.score
            if (score is None and include_unscored) or (score is not None and score >= threshold):
                item.status = ACCEPTED
                count += 1
        return count

    def set_all(self, status: ReviewStatus | str, only_pending: bool = True) -> int:
        status = ReviewStatus(status)
        targets = [i for i in self.items if not only_pending or i.status == PENDING]
        for item in targets:
            item.status = status
        return len(targets)

    # ---- views ----------------------------------------------------------------------
    def by_status(self, status: ReviewStatus | str) -> list[ReviewItem]:
        return [i for i in self.items if i.status == status]

    def counts(self) -> dict[str, int]:
        return {s: len(self.by_status(s)) for s in STATUSES}

    def rows(self) -> list[list[Any]]:
        """The review table: id, status, task, label, confidence, box."""
        out = []
        for item in self.items:
            box = [round(v, 1) for v in item.region.xyxy] if item.region else "(whole image)"
            score = "" if item.score is None else round(float(item.score), 3)
            out.append([item.id, str(item.status), get_task(item.task).name, item.label, score, str(box)])
        return out

    def labeled_image(
        self, image: Image.Image | None = None, image_path: str | None = None, name: str | None = None
    ) -> LabeledImage:
        """Everything accepted on this image, ready for Label Studio / COCO / YOLO."""
        accepted = self.by_status(ACCEPTED)
        return LabeledImage(
            width=self.width,
            height=self.height,
            regions=[i.region for i in accepted if i.region is not None],
            texts=[i.text for i in accepted if i.text is not None],
            image=image,
            image_path=image_path,
            name=name,
            model=self.model,
            revision=self.revision,
        )
