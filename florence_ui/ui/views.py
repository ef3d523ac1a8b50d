"""The session → what the page shows: result picture, status, review table, teaching view.

Every action ends by redrawing the same set of outputs from the session alone
(:func:`page_views`), so the page can never show a state the session does not
hold, and a handler only has to change the session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import gradio as gr

from florence_ui.core.fields import CLASS_NAME
from florence_ui.core.review import ACCEPTED, PENDING, REJECTED
from florence_ui.core.tasks import OutputKind, get_task
from florence_ui.errors import InputError
from florence_ui.model.explain import Explanation, explain
from florence_ui.render.annotate import describe
from florence_ui.render.teaching import bin_rows, explain_markdown, token_spans
from florence_ui.ui.controller import Controller
from florence_ui.ui.session import UISession

REVIEW_HEADERS = ["✓", "id", "status", "task", "label / text (editable)", "confidence", "box x1, y1, x2, y2 (px)"]
REVIEW_TYPES = ["bool", "number", "str", "str", "str", "str", "str"]
BOX_HEADERS = ["#", "x1", "y1", "x2", "y2", "size"]
BIN_HEADERS = ["region", "label", "token", "axis", "bin", "pixel = (bin + 0.5) × size / 1000", "pixel"]
STATUS_BADGE = {PENDING: "• pending", ACCEPTED: "✓ accepted", REJECTED: "✗ rejected"}
EMPTY_STATUS = "Pick a task and press **Run**. Model and total time, and any warning, show here."


def review_rows(session: UISession, ticked: Iterable[int] = ()) -> list[list[Any]]:
    """The review table: a tick box, then ``ReviewSession.rows()`` with readable status badges."""
    ticked = set(ticked)
    numbers = {i.id: i.region.box_index for i in session.review.items if i.region is not None}
    rows = []
    for item_id, status, task, label, score, box in session.review.rows():
        if numbers.get(item_id) is not None:
            task = f"{task} · box #{numbers[item_id]}"  # the number the result image draws for this region
        rows.append([item_id in ticked, item_id, STATUS_BADGE.get(status, status), task, label, str(score), box])
    return rows


def result_view(controller: Controller, session: UISession) -> Any:
    """The result picture and its alt text (the drawn labels in words, from the very marks that were drawn)."""
    if session.image is None:
        return gr.update(value=None, alt_text=None)
    marks = controller.result_marks(session)
    return gr.update(value=controller.result_image(session, marks), alt_text=describe(marks))


def review_summary(session: UISession) -> str:
    counts = session.review.counts()
    if not session.review.items:
        return "No regions yet. Every region and caption of every task you run on this image lands here as *pending*."
    return (
        f"**{counts[PENDING]}** pending · **{counts[ACCEPTED]}** accepted · **{counts[REJECTED]}** rejected "
        f"(from {session.review.runs} run{'s' if session.review.runs != 1 else ''} on this image). "
        "Accepted regions are drawn with ✓, a tint and a thicker outline; rejected ones are hidden."
    )


def answer_text(result: Any | None) -> str:
    """The answer in words: the caption / OCR text, one line per box, or a count of regions by label."""
    if result is None:
        return ""
    spec = get_task(result.task)
    if spec.output is OutputKind.TEXT:
        return result.text or "(empty answer)"
    names = [str(n) for n in result.detections.data.get(CLASS_NAME, [])]
    if spec.needs_boxes:
        return "\n".join(f"#{i + 1}: {name or '(no answer)'}" for i, name in enumerate(names))
    if not names:
        return "(no regions found)"
    counts: dict[str, int] = {}
    for name in names:
        counts[name or "(unnamed region)"] = counts.get(name or "(unnamed region)", 0) + 1
    listed = ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in counts.items())
    return f"{len(names)} region{'s' if len(names) != 1 else ''}: {listed}"


def teaching_run(session: UISession) -> Any | None:
    if not session.results:
        return None
    n = session.teach_run or len(session.results)
    return session.results[min(max(1, n), len(session.results)) - 1]


def teaching_choices(session: UISession) -> list[tuple[str, int]]:
    """The run picker's choices: ``Run n: task name``, valued 1-based."""
    return [(f"Run {n + 1}: {get_task(r.task).name}", n + 1) for n, r in enumerate(session.results)]


#: explanations kept (process-wide, least recently used out): each holds per-token attention grids and the eye
EXPLANATIONS_KEPT = 8


class ExplanationCache:
    """Explanations by run: computed when the teaching view (or ``/teaching``) first asks, then reused.

    Keyed by the result object itself (never by a number that a new run could
    reuse) and bounded for the whole process, so memory does not grow with the
    number of browser sessions. A normal run never computes one.
    """

    def __init__(self, size: int = EXPLANATIONS_KEPT) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[Any, Explanation]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, engine: Any, image: Any, result: Any) -> Explanation:
        key = id(result)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] is result:
                self._items.move_to_end(key)
                return hit[1]
        made = explain(engine, image, result)
        with self._lock:
            self._items[key] = (result, made)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return made

    def peek(self, result: Any) -> Explanation | None:
        """The explanation of ``result`` if one was made (never computes)."""
        with self._lock:
            hit = self._items.get(id(result))
            return hit[1] if hit is not None and hit[0] is result else None


EXPLANATIONS = ExplanationCache()


def explanation_for(controller: Controller, session: UISession, result: Any) -> Explanation:
    """The explanation of one of the session's runs (on the session's current image), cached."""
    if session.image is None:
        raise InputError("No image: the teaching view explains a run on the current image; run a task first.")
    return EXPLANATIONS.get(controller.engine, session.image, result)


def teaching_outputs(controller: Controller, session: UISession) -> tuple[Any, Any, Any, Any]:
    """Markdown, highlighted raw output, bins table and the run picker for the teaching tab."""
    result = teaching_run(session)
    choices = teaching_choices(session)
    picker = gr.update(choices=choices, value=(session.teach_run or len(choices)) if choices else None)
    if result is None:
        empty = "Run a task: the exact prompt, its token count, the raw output and the bins → pixels table show here."
        return empty, [], [], picker
    return (
        explain_markdown(result, controller.engine.num_image_tokens),
        token_spans(result.raw),
        bin_rows(result),
        picker,
    )


def page_views(controller: Controller, session: UISession, ticked: Iterable[int] = ()) -> tuple[Any, ...]:
    """Values for :data:`florence_ui.ui.app.VIEW_NAMES`, in order."""
    latest = session.results[-1] if session.results else None
    result_json = None
    if latest is not None:
        result_json = latest.to_dict()
    teach_md, teach_tokens, teach_bins, teach_picker = teaching_outputs(controller, session)
    return (
        result_view(controller, session),
        session.status or EMPTY_STATUS,
        answer_text(latest),
        result_json,
        review_rows(session, ticked),
        review_summary(session),
        teach_md,
        teach_tokens,
        teach_bins,
        teach_picker,
    )
