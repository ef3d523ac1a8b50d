"""Detect the label set: every class of the workspace's label set, looked for on one image or the whole queue.

A labelling team knows its classes before it looks at a single image; asking
Florence-2 for each of them by hand, image after image, is the slow part of a
first pass. :func:`detect_label_set` asks for all of them at once per image
(:meth:`~florence_ui.model.engine.FlorenceEngine.run_texts`: one vision call,
one ``generate`` with one row per class) and stores each answer as a run, its
regions pending, so review starts from boxes already named after the label set.

The label rule: each text prompt *is* a class, so every box Florence-2 finds
for it answers that class. Florence-2 echoes a phrase with each box (usually the
prompt, sometimes more, "a green car", or nothing); a phrase that is itself a
class of the label set (by name or synonym, :meth:`Workspace.canonical_label`)
keeps that class, any other phrase gives the box the class that was asked,
and the phrase stays in the run's raw answer. Class ids follow the label set's
order. An image that fails (its file gone, the model erring on it) is reported
and the queue goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from florence_ui.core.fields import CLASS_NAME
from florence_ui.core.tasks import DETECT_TASK, get_task
from florence_ui.errors import FlorenceUIError, InputError, WorkspaceError

if TYPE_CHECKING:
    from florence_ui.core.result import FlorenceResult
    from florence_ui.model.engine import FlorenceEngine
    from florence_ui.model.generation import GenerationSettings
    from florence_ui.workspace.workspace import Workspace

__all__ = ["DEFAULT_DETECT_TASK", "DetectFailure", "DetectReport", "ImageDetections", "detect_label_set"]

#: the task that finds every instance of a named class (phrase grounding also takes one text per class)
DEFAULT_DETECT_TASK = DETECT_TASK.token
#: failures and notes :meth:`DetectReport.summary` spells out before "and N more"
_SHOWN = 3


@dataclass(frozen=True)
class ImageDetections:
    """What one image got: the ids of its new (pending) regions and how many of each class."""

    image_id: int
    name: str
    region_ids: tuple[int, ...]
    per_class: dict[str, int]

    @property
    def regions(self) -> int:
        return len(self.region_ids)


@dataclass(frozen=True)
class DetectFailure:
    """An image that could not be detected, and why (a sentence to show as it is)."""

    image_id: int
    name: str
    error: str


@dataclass
class DetectReport:
    """The outcome of :func:`detect_label_set`: per-image counts, failures, and notes worth a person's attention."""

    task: str
    #: the classes asked, in order, as the label set names them (a synonym asked is its class)
    classes: list[str]
    images: list[ImageDetections] = field(default_factory=list)
    failures: list[DetectFailure] = field(default_factory=list)
    #: things the engine or the label rule did that a person should know ("a text was dropped", "cut off", ...)
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[int, int]:
        """New regions per image id (0 for an image where nothing was found)."""
        return {item.image_id: item.regions for item in self.images}

    @property
    def regions(self) -> int:
        return sum(item.regions for item in self.images)

    @property
    def per_class(self) -> dict[str, int]:
        """New regions per class over every image, in the order of :attr:`classes` (classes found nowhere left out)."""
        total: Counter[str] = Counter()
        for item in self.images:
            total.update(item.per_class)
        order = {name: i for i, name in enumerate(self.classes)}
        return dict(sorted(total.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    def summary(self) -> str:
        """One sentence for the page, the CLI and the API ("Detected 5 regions of 2 classes on 2 images ...")."""
        n_images = len(self.images)
        found = ", ".join(f"{name} {count}" for name, count in self.per_class.items())
        text = (
            f"Detected {self.regions} region{'s' if self.regions != 1 else ''} "
            f"({found or 'none of ' + ', '.join(self.classes)}) on {n_images} image{'s' if n_images != 1 else ''}"
            f" with {get_task(self.task).name.lower()} of {len(self.classes)} "
            f"class{'es' if len(self.classes) != 1 else ''}"
        )
        text += "; they are pending review." if self.regions else "."
        if self.failures:
            shown = "; ".join(f"{f.name}: {f.error}" for f in self.failures[:_SHOWN])
            more = f" (and {len(self.failures) - _SHOWN} more)" if len(self.failures) > _SHOWN else ""
            text += f" {len(self.failures)} image{'s' if len(self.failures) != 1 else ''} failed{more}: {shown}"
        return text


def detect_label_set(
    ws: Workspace,
    engine: FlorenceEngine,
    image_ids: Sequence[int] | None = None,
    *,
    task: str = DEFAULT_DETECT_TASK,
    settings: GenerationSettings | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    classes: Sequence[str] | None = None,
    cap: int | None = None,
) -> DetectReport:
    """Look for every class of the label set (or ``classes``) on ``image_ids`` (all images when None).

    Each image is one :meth:`~florence_ui.model.engine.FlorenceEngine.run_texts`
    call, one stored run per class (:meth:`Workspace.add_result`, regions
    pending), labelled by the rule in the module docstring. ``progress(done,
    total, message)`` is called once before the first image and after each one.
    ``cap``: the most classes one image is asked about (a web request passes
    ``limits.current().max_boxes``; the rest are left out with a note).

    Refused before any model call, with a :class:`WorkspaceError`: a label set
    with no class, a read-only workspace. Unknown or text-less task, settings
    out of range: :class:`InputError`. An image that fails is in ``failures``.
    """
    try:
        spec = get_task(task)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if not spec.needs_text:
        raise InputError(
            f"{spec.name} takes no text, so it cannot look for the label set's classes: use open-vocabulary "
            "detection (the default) or phrase grounding."
        )
    names = [" ".join(str(n).split()) for n in (ws.class_names() if classes is None else classes)]
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        raise WorkspaceError(
            f"The label set of workspace {ws.name!r} has no class yet, so there is nothing to detect: add the classes "
            "first (e.g. car, person), then detect the label set."
        )
    if ws.readonly:
        raise WorkspaceError(
            f"Workspace {ws.name!r} is read-only ({ws.readonly_reason or 'opened read-only'}): detections could not "
            "be saved, so none were run. Open it writable and detect again."
        )
    settings = engine.settings_for(settings)  # checked once: bad settings fail before the first image
    ids = [summary.id for summary in ws.images()] if image_ids is None else [int(i) for i in image_ids]
    report = DetectReport(task=spec.token, classes=list(dict.fromkeys(ws.canonical_label(n) for n in names)))
    report_progress = progress or (lambda _done, _total, _message: None)
    total = len(ids)
    report_progress(0, total, f"Detecting {len(names)} class{'es' if len(names) != 1 else ''} on {total} "
                              f"image{'s' if total != 1 else ''}…")  # fmt: skip
    for done, image_id in enumerate(ids, 1):
        name = f"image #{image_id}"
        stored: list[int] = []
        try:
            name = ws.image(image_id).name
            image = ws.image_pil(image_id)
            # one image alone is the interactive case (ask again, keep the features); a queue sees each image once
            # and must not push the page's images out of the engine's cache
            results = engine.run_texts(image, spec.token, names, settings=settings, use_cache=total == 1, cap=cap)
            per_class: Counter[str] = Counter()
            for result in results:
                labels = label_as_asked(ws, result)
                stored += ws.add_result(image_id, result, settings=settings)
                per_class.update(labels)
                report.notes += [f"{name}: {note}" for note in result.notes if f"{name}: {note}" not in report.notes]
        except FlorenceUIError as exc:  # the file gone, an unreadable image, a refused request, the store
            report.failures.append(DetectFailure(image_id, name, _partial(str(exc), stored)))
            outcome = "failed"
        except Exception as exc:  # noqa: BLE001 - the model failing on one image must not end a queue's run
            report.failures.append(DetectFailure(image_id, name, _partial(f"{type(exc).__name__}: {exc}", stored)))
            outcome = "failed"
        else:
            report.images.append(ImageDetections(image_id, name, tuple(stored), dict(per_class)))
            outcome = f"{len(stored)} region{'s' if len(stored) != 1 else ''}"
        report_progress(done, total, f"{done} / {total}: {name} — {outcome}")
    return report


def label_as_asked(ws: Workspace, result: FlorenceResult) -> list[str]:
    """Give each box of one class's answer its class (the module's label rule) and the label set's class id.

    ``result.text_input`` is the class that was asked; a phrase the model
    answered with that is a class of the label set keeps it. Changes the
    result's ``class_name`` / ``class_id`` in place (the boxes, scores and raw
    answer stay the model's) and returns the labels, row for row.
    """
    det = result.detections
    if not len(det):
        return []
    known = ws.class_names()
    asked = ws.canonical_label(result.text_input or "")
    labels = []
    for phrase in det.data[CLASS_NAME]:
        mapped = ws.canonical_label(str(phrase)) if str(phrase).strip() else ""
        labels.append(mapped if mapped in known else asked)
    order = {name: i for i, name in enumerate(known)}
    extra = [label for label in dict.fromkeys(labels) if label not in order]  # a class passed in but not in the set
    order |= {label: len(known) + i for i, label in enumerate(extra)}
    det.data[CLASS_NAME] = np.array(labels, dtype=str)
    det.class_id = np.array([order[label] for label in labels], dtype=int)
    return labels


def _partial(error: str, stored: Sequence[Any]) -> str:
    """A failure's sentence, saying so when some of the image's classes were stored before it."""
    if not stored:
        return error
    return f"{error} ({len(stored)} region{'s' if len(stored) != 1 else ''} stored before it stay pending)"
