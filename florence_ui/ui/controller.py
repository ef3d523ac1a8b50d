"""What every button of the page does, as plain methods on a per-process controller.

The controller holds the shared engine and default settings; every method
takes the browser's :class:`UISession` and mutates only it, so two browser
sessions never see each other's boxes or reviews. Methods raise
``InputError`` / ``ImageLoadError`` / ``ValueError`` for bad input and the
Gradio wiring in :mod:`florence_ui.ui.app` turns those into warnings; tests
call these methods directly, without a browser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from florence_ui.core import limits
from florence_ui.core.images import ImageLoadError, open_image, rotate_quarter_turns
from florence_ui.core.review import ACCEPTED, PENDING, REJECTED, ReviewSession
from florence_ui.core.tasks import CAPTION_TASK, GROUNDING_TASK, TASKS, InputKind, Task, get_task
from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError
from florence_ui.render.annotate import Mark, draw, marks_from_items
from florence_ui.render.teaching import grid_overlay, md_tokens
from florence_ui.ui.session import UISession

Progress = Callable[[float, str], None]
SHOW_MODES = {"latest": "Latest run + accepted", "all": "Everything not rejected", "accepted": "Accepted only"}
_KIND = {InputKind.NONE: "whole image", InputKind.TEXT: "needs text", InputKind.BOXES: "uses your boxes"}


def task_choices() -> list[tuple[str, str]]:
    """(shown label, task token) for the task dropdown, whole-image tasks first."""
    order = (InputKind.NONE, InputKind.TEXT, InputKind.BOXES)
    tasks = sorted(TASKS, key=lambda t: order.index(t.input))
    return [(f"{t.name} — {_KIND[t.input]}", t.token) for t in tasks]


def task_help(task: Task) -> str:
    need = {
        InputKind.NONE: "Runs on the whole image.",
        InputKind.TEXT: f"Needs a text prompt, e.g. *{task.text_hint}*." if task.text_hint else "Needs a text prompt.",
        InputKind.BOXES: "Runs once for **every box you drew**, all in one batched call; answer #n belongs to box #n.",
    }[task.input]
    return f"**{task.name}** `{task.token}` — {md_tokens(task.explanation)} {need}"


def boxes_from_value(value: dict[str, Any] | None) -> list[list[float]]:
    """The annotator's boxes in drawing order (it keeps the newest first) as ``[x1, y1, x2, y2]`` pixels.

    Accepts the component's raw payload too (the page's events skip its
    preprocessing, see ``image_source``): raw boxes are in canvas units and
    carry the ``scaleFactor`` back to image pixels.
    """
    if not value:
        return []
    boxes = []
    for box in reversed(value.get("boxes") or []):
        try:
            scale = float(box.get("scaleFactor") or 1.0)
            boxes.append([round(float(box[k]) / scale, 1) for k in ("xmin", "ymin", "xmax", "ymax")])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
    return boxes


def image_source(value: dict[str, Any] | None) -> Any:
    """The image of an annotator value: a path (or array / PIL image), or a raw ``FileData`` dict's path.

    The page's events take the annotator's payload unprocessed
    (``preprocess=False``): the stock preprocessing re-encodes every upload
    (lossy) and fails with a bare exception on a corrupt file, whereas
    ``images.open_image`` reads the uploaded file itself, applies EXIF
    orientation and explains bad files.
    """
    source = (value or {}).get("image")
    if isinstance(source, dict):
        return source.get("path")
    return source


def annotator_value(session: UISession) -> dict[str, Any] | None:
    """The annotator's value for the session's image and boxes (numbered labels, newest first)."""
    if session.image is None:
        return None
    image: Any = session.image_path or session.image
    boxes = [
        {"xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3], "label": f"#{i + 1}"}
        for i, b in enumerate(session.boxes)
    ]
    return {"image": image, "boxes": list(reversed(boxes)), "orientation": session.image_turns}


def box_rows(boxes: Sequence[Sequence[float]]) -> list[list[Any]]:
    return [
        [i + 1, round(b[0]), round(b[1]), round(b[2]), round(b[3]), f"{round(b[2] - b[0])}×{round(b[3] - b[1])}"]
        for i, b in enumerate(boxes)
    ]


def box_hint(session: UISession) -> str:
    if session.image is None:
        return "Upload, paste or pick an example image, then draw boxes on it for the region tasks."
    n = len(session.boxes)
    if n == 0:
        return "No boxes yet: click **Create box** (or press **C**) on the image and drag to draw one."
    return f"**{n} box{'es' if n != 1 else ''}** drawn; region tasks answer each one (#1 … #{n})."


class Controller:
    """Actions of the page over one shared engine."""

    def __init__(self, engine: FlorenceEngine, settings: GenerationSettings | None = None) -> None:
        self.engine = engine
        self.settings = (settings or GenerationSettings()).checked()

    # ---- image and boxes ------------------------------------------------------------------
    def set_input(self, session: UISession, value: dict[str, Any] | None) -> bool:
        """Sync the annotator into the session; returns True when the image changed (review reset)."""
        source = image_source(value)
        if source is None:
            changed = session.image is not None
            session.archive_current()  # clearing the picture must not lose its review
            session.image, session.image_path, session.image_turns = None, None, 0
            session.boxes, session.results = [], []
            session.review = ReviewSession()
            session.teach_run, session.status = None, ""
            return changed
        turns = int((value or {}).get("orientation") or 0) % 4
        path = source if isinstance(source, str) else None
        changed = False
        if path is None or (path, turns) != (session.image_path, session.image_turns) or session.image is None:
            image = rotate_quarter_turns(open_image(source), turns)
            changed = session.set_image(image, name=_name_of(source), file=path, turns=turns)
            session.image_path, session.image_turns = path, turns
        session.boxes = boxes_from_value(value)
        return changed

    def remove_box(self, session: UISession, number: float | int | None) -> None:
        if not session.boxes:
            raise InputError("There are no boxes to remove.")
        if number is None or not 1 <= int(number) <= len(session.boxes):
            raise InputError(f"Pick a box number between 1 and {len(session.boxes)}.")
        del session.boxes[int(number) - 1]

    @staticmethod
    def clear_boxes(session: UISession) -> None:
        session.boxes = []

    # ---- running ----------------------------------------------------------------------------
    def settings_for(self, max_new_tokens: float | None, num_beams: float | None) -> GenerationSettings:
        return GenerationSettings(
            int(max_new_tokens) if max_new_tokens else self.settings.max_new_tokens,
            int(num_beams) if num_beams else self.settings.num_beams,
        ).checked()

    def run(
        self,
        session: UISession,
        task: str,
        text: str | None = None,
        settings: GenerationSettings | None = None,
        progress: Progress | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
    ) -> Any:
        """Run one task on the session's image and add its answer to the review (as pending)."""
        progress = progress or (lambda _f, _d: None)
        if session.image is None:
            raise InputError("No image yet: upload, paste or pick an example first.")
        spec = get_task(task)
        boxes = session.boxes if boxes is None else [list(map(float, b)) for b in boxes]
        if spec.needs_boxes and not boxes:
            raise InputError(
                f"{spec.name} needs at least one box: draw one on the image (Create box, or press C, then drag), "
                "or pass boxes=[[x1, y1, x2, y2]] through the API."
            )
        if spec.needs_text and not (text or "").strip():
            raise InputError(f"{spec.name} needs a text prompt, e.g. “{spec.text_hint}”.")
        given, cap = len(boxes), limits.current().max_boxes
        capped = spec.needs_boxes and given > cap
        if capped:  # a web request's limit; the CLI's batch jobs take every box
            boxes = list(boxes)[:cap]
        what = f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}" if spec.needs_boxes else "the image"
        progress(0.15, f"Florence-2: {spec.name} on {what}…")
        asked_about = session.review.image_key, session.image.size
        result = self.engine.run(
            session.image,
            spec.token,
            text if spec.needs_text else None,
            boxes if spec.needs_boxes else None,
            settings=settings or self.settings,
        )
        if capped:
            result.notes.insert(0, f"{given} boxes were given; only the first {cap} were run (the per-request limit, "
                                   "FLORENCE_UI_MAX_BOXES). Run the rest in another request.")  # fmt: skip
        progress(0.85, "Drawing the answer…")
        if session.review.image_key != asked_about[0]:
            _file_under(session, asked_about, result)
            raise InputError(
                "The image changed while Florence-2 was answering; that answer was filed under the previous image "
                "(open it again to review it). Run the task again for this image."
            )
        session.results.append(result)
        session.review.add_result(result)
        session.teach_run = None
        session.status = status_markdown(result)
        return result

    def caption_then_ground(
        self,
        session: UISession,
        caption_task: str = CAPTION_TASK.token,
        settings: GenerationSettings | None = None,
        progress: Progress | None = None,
    ) -> tuple[Any, Any]:
        """The two-step cascade: caption the image, then ground every phrase of that caption."""
        progress = progress or (lambda _f, _d: None)
        spec = get_task(caption_task)
        if not spec.is_caption:
            spec = CAPTION_TASK
        caption = self.run(session, spec.token, None, settings, lambda f, d: progress(f / 2, d))
        if not (caption.text or "").strip():
            raise InputError("The caption came back empty, so there are no phrases to ground.")
        grounding = self.run(
            session, GROUNDING_TASK.token, caption.text, settings, lambda f, d: progress(0.5 + f / 2, d)
        )
        session.status = status_markdown(grounding, before=caption)
        return caption, grounding

    # ---- review --------------------------------------------------------------------------------
    def apply_table(self, session: UISession, table: Any) -> tuple[bool, set[int]]:
        """Apply label edits typed into the review table; returns (anything relabelled, ticked ids)."""
        rows = _table_rows(table)
        changed, ticked, problems = False, set(), []
        for row in rows:
            try:
                item_id = int(float(row[1]))
                item = session.review.get(item_id)
            except (TypeError, ValueError, KeyError, IndexError):
                continue
            if _truthy(row[0]):
                ticked.add(item_id)
            label = "" if row[4] is None else str(row[4])
            if label != item.label:
                try:
                    session.review.relabel(item_id, label)
                    changed = True
                except ValueError as exc:
                    problems.append(f"#{item_id}: {exc}")
                    changed = True  # redraw the table so the old label comes back
        if problems:
            raise _Partial("; ".join(problems), changed, ticked)
        return changed, ticked

    def set_status(self, session: UISession, table: Any, status: str) -> int:
        """Accept / reject / reset the ticked rows."""
        try:
            _, ticked = self.apply_table(session, table)
        except _Partial as partial:  # a refused label edit must not block the status change
            ticked = partial.ticked
        if not ticked:
            raise InputError("Tick the ✓ box of one or more rows first.")
        return session.review.set_status(sorted(ticked), status)

    @staticmethod
    def accept_above(session: UISession, threshold: float, include_unscored: bool = False) -> int:
        if not session.review.items:
            raise InputError("Nothing to review yet: run a task first.")
        return session.review.accept_above(float(threshold), include_unscored=bool(include_unscored))

    # ---- drawing ---------------------------------------------------------------------------------
    def class_id(self, label: str) -> int:
        return int(self.engine.classes.ids([label])[0])

    def result_marks(self, session: UISession) -> list[Mark]:
        """What the result image draws for the session's "show" choice, each region numbered by its own box."""
        review = session.review
        latest = review.runs
        if session.show == "accepted":
            items = review.by_status(ACCEPTED)
        elif session.show == "all":
            items = [i for i in review.items if i.status != REJECTED]
        else:
            items = [i for i in review.items if i.status == ACCEPTED or (i.run == latest and i.status == PENDING)]
        prompt_boxes = {n + 1: (r.boxes or []) for n, r in enumerate(session.results)}
        return marks_from_items(items, self.class_id, prompt_boxes)

    def result_image(self, session: UISession, marks: Sequence[Mark] | None = None) -> Image.Image | None:
        """The page's picture: review regions drawn by state (+ the 1000-bin grid when asked)."""
        if session.image is None:
            return None
        picture = draw(session.image, self.result_marks(session) if marks is None else marks)
        return grid_overlay(picture) if session.grid else picture


def _file_under(session: UISession, asked_about: tuple[str | None, tuple[int, int]], result: Any) -> None:
    """An answer that arrived after the user switched images goes to the review of the image it is about."""
    key, size = asked_about
    if key is None:
        return
    entry = session.archive.get(key)
    if entry is None:
        review = ReviewSession()
        review.start(key, size)
        entry = session.archive[key] = (review, [])
    review, results = entry
    results.append(result)
    review.add_result(result)


class _Partial(InputError):
    """Some table edits were refused; the rest were applied."""

    def __init__(self, message: str, changed: bool, ticked: set[int]) -> None:
        super().__init__(message)
        self.changed, self.ticked = changed, ticked


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "✓")
    return bool(value)


def _table_rows(table: Any) -> list[list[Any]]:
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):  # a pandas DataFrame
        return table.values.tolist()
    if isinstance(table, dict):
        return list(table.get("data") or [])
    return [list(r) for r in table]


def _name_of(source: Any) -> str:
    if isinstance(source, str):
        return source.replace("\\", "/").rsplit("/", 1)[-1] or "image.png"
    return "image.png"


def status_markdown(result: Any, before: Any | None = None) -> str:
    """One status block: what ran, how long the model took, and every warning."""
    spec = get_task(result.task)
    timings = result.timings or {}
    model_s = timings.get("vision_s", 0.0) + timings.get("generate_s", 0.0)
    total_s = timings.get("total_s", model_s)
    if before is not None:
        first = before.timings or {}
        model_s += first.get("vision_s", 0.0) + first.get("generate_s", 0.0)
        total_s += first.get("total_s", 0.0)
    n = len(result.detections)
    what = f"{n} region{'s' if n != 1 else ''}" if spec.has_regions else "text answer"
    chain = f"{get_task(before.task).name} → " if before is not None else ""
    cached = " · image features reused" if result.cached_features else ""
    lines = [f"**{chain}{spec.name}** · {what} · model time **{model_s:.2f} s** · total **{total_s:.2f} s**{cached}"]
    for res in (before, result):
        if res is not None and res.truncated:
            lines.append(
                f"> ⚠️ **Truncated:** {get_task(res.task).name} stopped before finishing (*max new tokens* or "
                "the time limit); some regions or words are missing. Raise *Max new tokens* and run again."
            )
    notes = [note for res in (before, result) if res is not None for note in res.notes if "cut off" not in note]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


__all__ = [
    "Controller",
    "ImageLoadError",
    "InputError",
    "SHOW_MODES",
    "annotator_value",
    "box_hint",
    "box_rows",
    "boxes_from_value",
    "status_markdown",
    "task_choices",
    "task_help",
]
