"""What every button of the page does, as plain methods on a per-process controller.

The controller holds the shared engine and default settings; every method
takes the browser's :class:`UISession` and mutates only it, so two browser
sessions never see each other's boxes or reviews. Methods raise
``InputError`` / ``ImageLoadError`` / ``ValueError`` for bad input and the
Gradio wiring in :mod:`florence_ui.ui.app` turns those into warnings; tests
call these methods directly, without a browser.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Generator, Sequence
from types import SimpleNamespace
from typing import Any

from PIL import Image

from florence_ui.core import limits
from florence_ui.core.images import ImageLoadError, open_image, rotate_quarter_turns
from florence_ui.core.review import ACCEPTED, PENDING, REJECTED, ReviewSession
from florence_ui.core.tasks import CAPTION_TASK, GROUNDING_TASK, TASKS, InputKind, Task, get_task
from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError, StreamEvent
from florence_ui.render.annotate import (
    Mark,
    draw,
    draw_clicks,
    marks_from_items,
    marks_from_result,
    save_png,
    upscale_factor,
)
from florence_ui.render.teaching import grid_overlay, md_tokens
from florence_ui.ui.session import UISession

Progress = Callable[[float, str], None]
#: ``on_token(n_done, n_max)``: what an engine that reports its generated tokens calls (see :func:`token_progress`)
OnToken = Callable[[int, int], None]
#: where the steps of one run sit on the progress bar: prepare → vision + generate (tokens) → draw
PREPARE_AT, GENERATE_FROM, GENERATE_TO, DRAW_AT = 0.05, 0.15, 0.85, 0.9
#: the page's answer-length default on CPU hardware (the API keeps the server's defaults)
CPU_PAGE_MAX_NEW_TOKENS = 256
#: set to 0 to give the page the server's defaults on CPU too (beams, max new tokens as started)
CPU_PAGE_DEFAULTS_ENV = "FLORENCE_UI_CPU_PAGE_DEFAULTS"
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


def page_settings(
    engine: Any, settings: GenerationSettings, environ: dict[str, str] | None = None
) -> GenerationSettings:
    """What the page's sliders start at: on CPU hardware greedy and shorter answers, else the server's defaults.

    Why: beam search with 3 beams and 1024 new tokens is what Florence-2's authors use, but on a CPU Space
    a first visitor waits a minute for it; greedy (1 beam) with at most
    :data:`CPU_PAGE_MAX_NEW_TOKENS` answers the examples in seconds, nearly always with the same regions.
    The sliders show the values and stay changeable; API calls keep the server's defaults
    (``--num-beams`` / ``--max-new-tokens``). ``FLORENCE_UI_CPU_PAGE_DEFAULTS=0`` turns this off.
    """
    environ = os.environ if environ is None else environ
    if str(getattr(engine, "device", "")) != "cpu" or environ.get(CPU_PAGE_DEFAULTS_ENV, "1").strip() == "0":
        return settings
    return GenerationSettings(min(settings.max_new_tokens, CPU_PAGE_MAX_NEW_TOKENS), 1).checked()


def token_progress(progress: Progress, desc: str, start: float = GENERATE_FROM, end: float = GENERATE_TO) -> OnToken:
    """An ``on_token(n_done, n_max)`` callback that moves ``progress`` from ``start`` to ``end`` with the tokens."""

    def on_token(n_done: int, n_max: int) -> None:
        share = min(1.0, max(0.0, n_done / n_max)) if n_max else 0.0
        progress(start + (end - start) * share, f"{desc} {n_done}/{n_max} tokens")

    return on_token


def tileable() -> list[str]:
    """Names of the tasks the "Tiled" switch applies to (the task table's ``tileable`` rows)."""
    return [t.name for t in TASKS if t.tileable]


def can_refine(engine: Any) -> bool:
    """True when the engine has a SAM segmenter to refine masks with (``FlorenceEngine.from_pretrained(sam=...)``)."""
    return getattr(engine, "sam_name", None) is not None and callable(getattr(engine, "refine", None))


def accepts_on_token(run: Callable[..., Any]) -> bool:
    """True when an engine's ``run`` takes an ``on_token`` callback (the streaming door, when the engine has it).

    Not through a wrapper (``functools.wraps``: ZeroGPU's ``spaces.GPU`` slot, see ``model.zerogpu``): the slot
    may run the call in another process, where a callback into this page's progress bar cannot reach it.
    """
    if getattr(run, "__wrapped__", None) is not None:
        return False
    try:
        return "on_token" in inspect.signature(run).parameters
    except (TypeError, ValueError):
        return False


class Controller:
    """Actions of the page over one shared engine."""

    def __init__(self, engine: FlorenceEngine, settings: GenerationSettings | None = None) -> None:
        self.engine = engine
        #: the server's defaults: what API calls get when they pass none
        self.settings = (settings or GenerationSettings()).checked()
        #: what the page's sliders start at (:func:`page_settings`)
        self.page_settings = page_settings(engine, self.settings)

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
        *,
        tile: bool = False,
        refine: bool = False,
    ) -> Any:
        """Run one task on the session's image and add its answer to the review (as pending)."""
        steps = self.run_steps(session, task, text, settings, progress, boxes, tile=tile, refine=refine, stream=False)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def run_steps(
        self,
        session: UISession,
        task: str,
        text: str | None = None,
        settings: GenerationSettings | None = None,
        progress: Progress | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
        *,
        tile: bool = False,
        refine: bool = False,
        stream: bool = True,
    ) -> Generator[StreamEvent, None, Any]:
        """:meth:`run`, yielding the answer as it is generated (``StreamEvent``\\ s); returns the result.

        Streams through ``engine.stream`` when the engine has it and is not wrapped (a ZeroGPU slot may run
        the call in another process, see :func:`accepts_on_token`); otherwise one ``engine.run`` call. Bad
        input fails before anything runs, as with :meth:`run`. ``tile``: the dense-scene mode for the tasks
        that tile (:func:`tileable`); ``refine``: SAM masks for every box of the answer (``engine.refine``).
        """
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
        if tile and not spec.tileable:
            raise InputError(f"{spec.name} does not tile: the tiled mode is for {', '.join(tileable())}.")
        engine = self.engine
        if refine and not can_refine(engine):
            raise InputError(
                "Refining masks needs SAM, and this server runs without it: start it with --sam MODEL "
                "(e.g. --sam slimsam), or untick “Refine masks with SAM”."
            )
        given, cap = len(boxes), limits.current().max_boxes
        capped = spec.needs_boxes and given > cap
        if capped:  # a web request's limit; the CLI's batch jobs take every box
            boxes = list(boxes)[:cap]
        what = f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}" if spec.needs_boxes else "the image"
        progress(PREPARE_AT, f"Preparing {spec.name} on {what}{' (tiled)' if tile else ''}…")
        asked_about = session.review.image_key, session.image.size
        desc = f"Florence-2: {spec.name} on {what} (vision + generation)…"
        progress(GENERATE_FROM, desc)
        args = (session.image, spec.token, text if spec.needs_text else None, boxes if spec.needs_boxes else None)
        options: dict[str, Any] = {"settings": settings or self.settings, "tile": tile}
        direct = accepts_on_token(engine.run)  # not wrapped for a GPU slot: callbacks and streams reach the page
        result = None
        if stream and direct and callable(getattr(engine, "stream", None)):
            moved = token_progress(progress, desc)
            for event in engine.stream(*args, **options):
                if event.done:
                    result = event.result
                else:
                    moved(event.step, event.max_steps)
                    yield event
        else:
            if direct and not tile:  # an engine that reports its tokens moves the bar with them
                options["on_token"] = token_progress(progress, desc)
            result = engine.run(*args, **options)
        if refine:
            progress(GENERATE_TO, "SAM: refining the masks…")
            result = engine.refine(result, session.image)
        if capped:
            result.notes.insert(0, f"{given} boxes were given; only the first {cap} were run (the per-request limit, "
                                   "FLORENCE_UI_MAX_BOXES). Run the rest in another request.")  # fmt: skip
        progress(DRAW_AT, "Drawing the answer…")
        return self.file_result(session, result, asked_about)

    @staticmethod
    def file_result(session: UISession, result: Any, asked_about: tuple[str | None, tuple[int, int]]) -> Any:
        """Add a finished answer to the session's review (pending), or to the image it was asked about."""
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

    # ---- SAM clicks: one click = one labelled object ----------------------------------------------------
    @staticmethod
    def add_click(session: UISession, x: float, y: float, negative: bool = False) -> None:
        """A click on the result picture (its pixels; the picture is upscaled for small images) as a SAM point."""
        if session.image is None:
            raise InputError("No image yet: upload, paste or pick an example first, then click on an object.")
        factor = upscale_factor(session.image.size)
        px, py = float(x) / factor, float(y) / factor
        width, height = session.image.size
        if not (0 <= px <= width and 0 <= py <= height):
            raise InputError(f"That click ({px:.0f}, {py:.0f}) is outside the {width}x{height} image.")
        if negative and not any(label == 1 for _, _, label in session.clicks):
            raise InputError("A negative (Shift-) click removes part of an object: click the object itself first.")
        if len(session.clicks) >= limits.current().max_boxes:
            raise InputError(f"At most {limits.current().max_boxes} clicks per request (FLORENCE_UI_MAX_BOXES): "
                             "segment these first.")  # fmt: skip
        session.clicks.append((round(px, 2), round(py, 2), 0 if negative else 1))

    @staticmethod
    def click_hint(session: UISession) -> str:
        """What the clicks so far will become."""
        objects = sum(1 for *_, label in session.clicks if label == 1)
        if not session.clicks:
            return ("Click an object on the result picture: each click is one object (Shift-click, or tick "
                    "*negative*, to take a part away). Then **Segment the clicks**.")  # fmt: skip
        negatives = len(session.clicks) - objects
        extra = f" and {negatives} negative click{'s' if negatives != 1 else ''}" if negatives else ""
        return f"{objects} object{'s' if objects != 1 else ''}{extra}: **Segment the clicks** labels them in one batch."

    def segment_clicks(self, session: UISession, settings: GenerationSettings | None = None) -> Any:
        """Every click object → SAM mask → its box → Florence-2 names it; one region per object, in the review."""
        if session.image is None:
            raise InputError("No image yet: upload, paste or pick an example first.")
        if not session.clicks:
            raise InputError("No clicks yet: click an object on the result picture first.")
        engine = self.engine
        if not can_refine(engine):
            raise InputError("Click segmentation needs SAM: start the app with --sam MODEL (e.g. --sam slimsam).")
        asked_about = session.review.image_key, session.image.size
        points = [(x, y) for x, y, _ in session.clicks]
        labels = [label for *_, label in session.clicks]
        result = engine.click(session.image, points, labels, settings=settings or self.settings)
        session.clicks = []
        return self.file_result(session, result, asked_about)

    def partial_image(self, session: UISession, task: str, event: StreamEvent) -> Image.Image | None:
        """The picture with the accepted regions and the boxes whose four ``<loc_N>`` tokens are complete so far.

        None when the event has no boxes to draw (a text answer, or before the first box completes).
        """
        if session.image is None or event.detections is None or len(event.detections) == 0:
            return None
        so_far = marks_from_result(SimpleNamespace(task=task, detections=event.detections))
        accepted = marks_from_items(session.review.by_status(ACCEPTED), self.class_id)
        return self.result_image(session, [*accepted, *so_far])

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
        if session.clicks:
            picture = draw_clicks(picture, session.clicks, upscale_factor(session.image.size))
        return grid_overlay(picture) if session.grid else picture

    def result_file(self, session: UISession, folder: str, marks: Sequence[Mark] | None = None) -> str | None:
        """:meth:`result_image` written as a lossless PNG into ``folder`` (a component's ``GRADIO_CACHE``), which
        gradio serves as is: faster than handing it the PIL image to encode (see ``render.annotate.save_png``)."""
        picture = self.result_image(session, marks)
        return None if picture is None else save_png(picture, folder)


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
    "accepts_on_token",
    "page_settings",
    "token_progress",
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
