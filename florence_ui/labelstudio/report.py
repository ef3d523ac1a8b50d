"""The model-assisted labelling report: what reviewers in Label Studio did with Florence-2's pre-annotations.

Pure logic over Label Studio's task JSON (the shape of its JSON export); the SDK
read lives in :mod:`florence_ui.labelstudio.pull`. For each task the newest
prediction from Florence-2 (:func:`is_ours`) is compared with the **final**
annotation (:func:`final_annotation`: the newest by ``created_at`` that was not
cancelled / skipped, the one Label Studio's own converter exports). Only
geometry results count (``rectanglelabels``, ``polygonlabels``; one Label
Studio region each, so a multi-part polygon counts per part); text areas do not.

**How a predicted region finds its final region** (:func:`match`), in order:

1. **Same region id.** Label Studio keeps a prediction's region ``id`` when a
   reviewer accepts, moves, resizes or relabels it, so a final region with the
   id of a predicted region *is* that prediction, whatever its IoU.
2. **IoU, for the regions left without a shared id** (annotations made outside
   the editor, ids regenerated): the one-to-one pairing that maximises the sum
   of IoUs among pairs with IoU ≥ :data:`MATCH_IOU` (0.5), found with scipy's
   ``linear_sum_assignment`` (scipy comes with supervision); any label, so a
   relabelled box is still paired.

A pair is **kept** when the label is the same and IoU ≥ :data:`KEPT_IOU`
(0.95), else **edited** (moved / resized below 0.95, or another label). A
predicted region with no pair is **deleted**; a final region with no pair was
**added** by a human. Counts per class go to the *predicted* label for kept /
edited / deleted (so ``predicted = kept + edited + deleted`` for every class)
and to the final label for added. ``mean_iou_edited`` is the mean IoU of the
edited pairs (a relabel in place has IoU 1).

**Precision and recall** are the usual detection figures, independent of ids:
per label, predictions and final regions are paired one-to-one (the same
assignment) at IoU ≥ 0.5; ``precision = matches / predicted``, ``recall =
matches / final`` (None when the denominator is 0).

IoU is box IoU (``sv.box_iou_batch``); a polygon is compared by its enclosing
box, a rotated rectangle by the box around its corners. Per-image time saved is
not estimated: nothing in the data measures it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

#: a pair at or above this IoU with the same label was kept unchanged
KEPT_IOU = 0.95
#: regions without a shared id pair up at or above this IoU; also the IoU of precision / recall
MATCH_IOU = 0.5
#: what every florence-ui prediction's ``model_version`` holds (push: ``microsoft/Florence-2-…``; ml-backend:
#: ``florence-2-<size>@<revision>``)
FLORENCE_MARK = "florence-2"
GEOMETRY_TYPES = ("rectanglelabels", "polygonlabels")
COUNT_KEYS = ("images", "predicted", "kept", "edited", "deleted", "added", "final", "true_positives")


# ---- Label Studio JSON → regions ------------------------------------------------------------------------
@dataclass(frozen=True)
class LSRegion:
    """One Label Studio geometry result in pixels of the original image."""

    id: str | None
    label: str
    xyxy: tuple[float, float, float, float]
    #: polygon vertices (a rotated rectangle's corners too), in pixels; None for an upright rectangle
    points: tuple[tuple[float, float], ...] | None = None


def result_regions(result: Sequence[dict[str, Any]], width: int | None = None,
                   height: int | None = None) -> list[LSRegion]:  # fmt: skip
    """The rectangles and polygons of one ``result`` list, percent × ``original_width/height`` → pixels.

    ``width`` / ``height`` stand in where a result lacks ``original_width/height``; a result with neither is
    skipped (its pixels cannot be known). Text areas, choices and other results are ignored.
    """
    out = []
    for entry in result or []:
        kind = entry.get("type")
        if kind not in GEOMETRY_TYPES:
            continue
        w, h = entry.get("original_width") or width, entry.get("original_height") or height
        value = entry.get("value") or {}
        if not w or not h:
            continue
        labels = value.get(kind) or []
        label = str(labels[0]) if labels else ""
        if kind == "polygonlabels":
            points = tuple((float(x) * w / 100.0, float(y) * h / 100.0) for x, y in value.get("points") or [])
            if len(points) < 3:
                continue
        else:
            x, y = float(value.get("x", 0)) * w / 100.0, float(value.get("y", 0)) * h / 100.0
            bw, bh = float(value.get("width", 0)) * w / 100.0, float(value.get("height", 0)) * h / 100.0
            angle = math.radians(float(value.get("rotation") or 0.0))
            if angle == 0.0:
                out.append(LSRegion(entry.get("id"), label, (x, y, x + bw, y + bh)))
                continue
            # Label Studio rotates a rectangle clockwise (y down) about its top-left corner
            cos, sin = math.cos(angle), math.sin(angle)
            points = tuple((x + dx * cos - dy * sin, y + dx * sin + dy * cos)
                           for dx, dy in ((0, 0), (bw, 0), (bw, bh), (0, bh)))  # fmt: skip
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        out.append(LSRegion(entry.get("id"), label, (min(xs), min(ys), max(xs), max(ys)), points))
    return out


def is_ours(model_version: str | None, wanted: str | None = None) -> bool:
    """A prediction from Florence-2: ``wanted``'s ``model@revision`` exactly (the part before ``": "``, as a
    push compares them), or with no ``wanted``, any ``model_version`` naming Florence-2."""
    mv = (model_version or "").split(": ")[0].strip()
    if wanted:
        return mv == wanted.split(": ")[0].strip()
    return FLORENCE_MARK in mv.lower()


def _newest(entries: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return max(entries, key=lambda e: (str(e.get("created_at") or ""), int(e.get("id") or 0)), default=None)


def final_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's human-final annotation: the newest (``created_at``, then id) not cancelled or skipped."""
    done = [a for a in task.get("annotations") or [] if not (a.get("was_cancelled") or a.get("skipped"))]
    return _newest(done)


def our_prediction(task: dict[str, Any], model_version: str | None = None) -> dict[str, Any] | None:
    """The task's newest prediction from Florence-2 (:func:`is_ours`); a prediction given as a bare id is skipped."""
    return _newest(p for p in task.get("predictions") or [] if isinstance(p, dict)
                   and is_ours(p.get("model_version"), model_version))  # fmt: skip


# ---- matching -------------------------------------------------------------------------------------------
def iou_matrix(a: Sequence[LSRegion], b: Sequence[LSRegion]) -> np.ndarray:
    """Box IoU of every region of ``a`` with every region of ``b`` (``sv.box_iou_batch``)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return sv.box_iou_batch(np.array([r.xyxy for r in a], dtype=float), np.array([r.xyxy for r in b], dtype=float))


def assign(iou: np.ndarray, min_iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """The one-to-one pairs (row, column) maximising total IoU among pairs with IoU ≥ ``min_iou``.

    Entries below ``min_iou`` are zeroed before the assignment, so they can never beat an allowed pair, and
    are then dropped: the result is a maximum-weight matching over the allowed pairs only.
    """
    if iou.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    allowed = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(allowed, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou]


@dataclass(frozen=True)
class Pair:
    """A predicted region and the final region it became."""

    predicted: LSRegion
    final: LSRegion
    iou: float
    by_id: bool

    @property
    def kept(self) -> bool:
        return self.predicted.label == self.final.label and self.iou >= KEPT_IOU


@dataclass
class TaskMatch:
    """One task: its pairs, the predicted regions deleted and the final regions added."""

    pairs: list[Pair] = field(default_factory=list)
    deleted: list[LSRegion] = field(default_factory=list)
    added: list[LSRegion] = field(default_factory=list)


def match(predicted: Sequence[LSRegion], final: Sequence[LSRegion]) -> TaskMatch:
    """Pair predicted with final regions: same id first, then IoU (≥ :data:`MATCH_IOU`) for the rest."""
    out = TaskMatch()
    final_ids: dict[str, int] = {}
    for j, region in enumerate(final):
        if region.id is not None:
            final_ids.setdefault(region.id, j)
    used_p, used_f = set(), set()
    for i, region in enumerate(predicted):
        j = final_ids.get(region.id) if region.id is not None else None
        if j is not None and j not in used_f:
            used_p.add(i)
            used_f.add(j)
            iou = float(iou_matrix([region], [final[j]])[0, 0])
            out.pairs.append(Pair(region, final[j], iou, True))
    rest_p = [i for i in range(len(predicted)) if i not in used_p]
    rest_f = [j for j in range(len(final)) if j not in used_f]
    iou = iou_matrix([predicted[i] for i in rest_p], [final[j] for j in rest_f])
    for r, c in assign(iou):
        used_p.add(rest_p[r])
        used_f.add(rest_f[c])
        out.pairs.append(Pair(predicted[rest_p[r]], final[rest_f[c]], float(iou[r, c]), False))
    out.deleted = [p for i, p in enumerate(predicted) if i not in used_p]
    out.added = [f for j, f in enumerate(final) if j not in used_f]
    return out


def true_positives(predicted: Sequence[LSRegion], final: Sequence[LSRegion],
                   min_iou: float = MATCH_IOU) -> dict[str, int]:  # fmt: skip
    """Per label, the one-to-one matches of predictions with final regions of that label at IoU ≥ ``min_iou``."""
    out: dict[str, int] = {}
    for label in sorted({r.label for r in predicted} & {r.label for r in final}):
        p = [r for r in predicted if r.label == label]
        f = [r for r in final if r.label == label]
        out[label] = len(assign(iou_matrix(p, f), min_iou))
    return out


# ---- the report --------------------------------------------------------------------------------------
def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


@dataclass
class Counts:
    """One row of the report (all classes, or one class)."""

    images: int = 0
    predicted: int = 0
    kept: int = 0
    edited: int = 0
    deleted: int = 0
    added: int = 0
    final: int = 0
    true_positives: int = 0
    edited_ious: list[float] = field(default_factory=list)

    @property
    def mean_iou_edited(self) -> float | None:
        return round(sum(self.edited_ious) / len(self.edited_ious), 4) if self.edited_ious else None

    @property
    def precision(self) -> float | None:
        return _ratio(self.true_positives, self.predicted)

    @property
    def recall(self) -> float | None:
        return _ratio(self.true_positives, self.final)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in COUNT_KEYS}
        out.update(mean_iou_edited=self.mean_iou_edited, precision=self.precision, recall=self.recall)
        return out


@dataclass
class Report:
    """The whole project: totals, per class, and the tasks that could not be compared."""

    totals: Counts = field(default_factory=Counts)
    per_class: dict[str, Counts] = field(default_factory=dict)
    #: tasks with a Florence-2 prediction but no final annotation yet (not counted anywhere else)
    unreviewed: int = 0
    #: reviewed tasks with no Florence-2 prediction: every final region there counts as added
    without_prediction: int = 0
    model_versions: list[str] = field(default_factory=list)

    def _row(self, label: str) -> Counts:
        return self.per_class.setdefault(label, Counts())

    def add(self, predicted: Sequence[LSRegion], final: Sequence[LSRegion]) -> TaskMatch:
        """Count one reviewed task (``predicted`` empty when it had no Florence-2 prediction)."""
        m = match(predicted, final)
        rows = [self.totals]
        self.totals.images += 1
        for label in sorted({r.label for r in (*predicted, *final)}):
            self._row(label).images += 1
        for region in predicted:
            self.totals.predicted += 1
            self._row(region.label).predicted += 1
        for region in final:
            self.totals.final += 1
            self._row(region.label).final += 1
        for pair in m.pairs:
            for row in (self.totals, self._row(pair.predicted.label)):
                if pair.kept:
                    row.kept += 1
                else:
                    row.edited += 1
                    row.edited_ious.append(pair.iou)
        for region in m.deleted:
            for row in (self.totals, self._row(region.label)):
                row.deleted += 1
        for region in m.added:
            for row in (self.totals, self._row(region.label)):
                row.added += 1
        for label, n in true_positives(predicted, final).items():
            for row in (*rows, self._row(label)):
                row.true_positives += n
        return m

    def add_task(self, task: dict[str, Any], model_version: str | None = None) -> bool:
        """Count one task of Label Studio's JSON export; False when it has no final annotation (not counted)."""
        annotation, prediction = final_annotation(task), our_prediction(task, model_version)
        if annotation is None:
            self.unreviewed += prediction is not None
            return False
        predicted = result_regions(prediction.get("result") or []) if prediction else []
        if prediction is None:
            self.without_prediction += 1
        elif prediction.get("model_version") and prediction["model_version"] not in self.model_versions:
            self.model_versions.append(prediction["model_version"])
        self.add(predicted, result_regions(annotation.get("result") or []))
        return True

    def to_dict(self) -> dict[str, Any]:
        return {**self.totals.as_dict(), "unreviewed": self.unreviewed,
                "images_without_prediction": self.without_prediction, "model_versions": self.model_versions,
                "kept_iou": KEPT_IOU, "match_iou": MATCH_IOU,
                "per_class": {k: v.as_dict() for k, v in sorted(self.per_class.items())}}  # fmt: skip

    def table(self) -> str:
        """A fixed-width table, one row per class and the total (what ``florence-ui pull`` prints)."""
        head = ("class", "predicted", "kept", "edited", "deleted", "added", "mIoU edited", "precision", "recall")
        rows = [(label, c) for label, c in sorted(self.per_class.items())] + [("all", self.totals)]
        cells = [head] + [(label, str(c.predicted), str(c.kept), str(c.edited), str(c.deleted), str(c.added),
                           _fmt(c.mean_iou_edited), _fmt(c.precision), _fmt(c.recall)) for label, c in rows]  # fmt: skip
        widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                 strict=True))) for row in cells]  # fmt: skip
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def markdown(self) -> str:
        """The same table in Markdown (the UI's Label Studio tab)."""
        head = "| class | predicted | kept | edited | deleted | added | mean IoU edited | precision | recall |"
        lines = [head, "|" + "---|" * 9]
        rows = [(label, c) for label, c in sorted(self.per_class.items())] + [("**all**", self.totals)]
        lines += [f"| {label} | {c.predicted} | {c.kept} | {c.edited} | {c.deleted} | {c.added} | "
                  f"{_fmt(c.mean_iou_edited)} | {_fmt(c.precision)} | {_fmt(c.recall)} |" for label, c in rows]  # fmt: skip
        notes = [f"{self.totals.images} reviewed image(s)"]
        if self.unreviewed:
            notes.append(f"{self.unreviewed} pre-annotated image(s) not reviewed yet (not counted)")
        if self.without_prediction:
            notes.append(f"{self.without_prediction} reviewed image(s) without a Florence-2 prediction")
        return "\n".join(lines) + "\n\n" + "; ".join(notes) + "."

    def chart(self, path: str | Path) -> Path:
        """A bar chart per class of kept / edited / deleted / added, as a PNG (matplotlib, no global backend)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        labels = sorted(self.per_class) or ["(none)"]
        rows = [self.per_class.get(label, Counts()) for label in labels]
        fig = Figure(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        x = np.arange(len(labels))
        bars = (("kept", "#2e7d32"), ("edited", "#f9a825"), ("deleted", "#c62828"), ("added", "#1565c0"))
        width = 0.8 / len(bars)
        for k, (key, colour) in enumerate(bars):
            ax.bar(x + (k - 1.5) * width, [getattr(r, key) for r in rows], width, label=key, color=colour)
        ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
        ax.set_ylabel("regions")
        ax.set_title(f"Florence-2 pre-annotations after review ({self.totals.images} image(s))")
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png")
        return path

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """``out_dir/report.json`` and ``out_dir/report.png``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "report.json"
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False))
        return path, self.chart(out_dir / "report.png")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def build_report(tasks: Iterable[dict[str, Any]], model_version: str | None = None) -> Report:
    """The report over Label Studio's JSON export of a project (tasks with their annotations and predictions)."""
    report = Report()
    for task in tasks:
        report.add_task(task, model_version)
    return report
