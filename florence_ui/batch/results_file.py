"""results.jsonl: the batch contract between ``predict`` and ``export`` / ``push``.

One JSON object per line and per (image, task). The line keeps the model's raw
``generated_text`` rather than parsed geometry, so a file written by *any*
Florence-2 runtime can be imported: ``export`` and ``push`` re-parse it with the
processor's own post-processing (:meth:`FlorenceEngine.parse`). Per-region
``scores`` ride along because the text alone carries no probabilities.

SAM refinement (``predict --sam MODEL``) adds, per region and in the order of
``scores``: ``sam_polygons`` (SAM's mask outlines, each part a flat
``[x1, y1, x2, y2, ...]`` list in pixels; ``[]`` where SAM found no mask),
``sam_scores`` (SAM's predicted IoU of each mask, 0..1) and ``sam_boxes``
(each mask's extent ``[x1, y1, x2, y2]``), plus ``sam_model`` (the SAM
checkpoint). They survive the re-parse (:func:`result_from_line` puts them
back), so ``export`` and ``push`` write SAM's outlines; ``generated_text``
stays Florence-2's, with its own polygons for segmentation tasks.

Writing is crash-safe (each line is written, flushed and fsynced on its own),
and reading is forgiving: a torn last line left by a kill is dropped (and cut
off on resume), a corrupt line elsewhere is skipped with a warning.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from florence_ui.core.fields import SAM_BOX, SAM_POLYGONS, SAM_SCORE
from florence_ui.core.labels import ImageText, LabeledImage, regions_from_result
from florence_ui.core.tasks import OutputKind, get_task
from florence_ui.errors import ModelLoadError, ResultsFileError

#: the fields every line has (``export`` needs no more; extra fields are welcome)
REQUIRED = ("image", "task", "generated_text")
#: the per-region SAM fields of a refined line (``predict --sam``), parallel to ``scores``
SAM_FIELDS = ("sam_polygons", "sam_scores", "sam_boxes")
#: fields that change from run to run; tools comparing two files ignore them
VOLATILE = ("seconds", "created")


# ---- reading ----------------------------------------------------------------------
@dataclass
class ReadReport:
    """What :func:`read_lines` found besides the lines."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    torn_tail: bool = False


def read_lines(path: str | Path) -> ReadReport:
    """Every valid line of a results file; bad lines are reported, not raised.

    A last line without its newline that does not parse is a write cut short by a
    kill: it is flagged ``torn_tail`` (``repair`` cuts it off) rather than listed as bad.
    """
    report = ReadReport()
    path = Path(path)
    if not path.exists():
        return report
    data = path.read_bytes()
    chunks = data.split(b"\n")
    for number, chunk in enumerate(chunks, start=1):
        if not chunk.strip():
            continue
        is_tail = number == len(chunks)  # no newline after it
        try:
            line = json.loads(chunk.decode("utf-8"))
            if not isinstance(line, dict) or any(k not in line for k in REQUIRED):
                raise ValueError(f"not an object with {', '.join(REQUIRED)}")
        except (ValueError, UnicodeDecodeError) as exc:
            if is_tail:
                report.torn_tail = True
            else:
                report.bad.append((number, str(exc)[:200]))
            continue
        report.lines.append(line)
    return report


def repair(path: str | Path) -> bool:
    """Cut a torn last line (a write interrupted by a kill) so appends start clean.

    Returns True when something was cut. A complete last line that only lacks its
    newline gets the newline instead.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        json.loads(tail.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
        return True
    with open(path, "ab") as fh:
        fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return False


def line_key(line: dict[str, Any]) -> tuple[str, str, str, str]:
    """What makes a line "done" for resume: image, task, text and boxes."""
    boxes = line.get("boxes")
    return (
        os.path.abspath(str(line["image"])),
        get_task(str(line["task"])).token,
        str(line.get("text_input") or ""),
        json.dumps(boxes) if boxes else "",
    )


# ---- writing ----------------------------------------------------------------------
def clean_json(value: Any) -> Any:
    """NaN → null and numpy scalars → Python, so every line is strict JSON."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(clean_json(line), ensure_ascii=False, allow_nan=False)


class JsonlWriter:
    """Append-only, one fsync per line: a kill loses at most the line being written.

    With ``lock`` the file is locked (``flock``, advisory) so a second ``predict``
    on the same ``--out`` stops at once instead of writing every line twice.
    """

    def __init__(self, path: str | Path, *, lock: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if lock:
            self._lock()

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, nothing to guard with
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            raise ResultsFileError(
                f"{self.path} is being written by another florence-ui run; wait for it or use another --out"
            ) from exc

    def write(self, line: dict[str, Any]) -> None:
        self._fh.write(dumps(line) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _score(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def line_from_result(
    result: Any,
    image: str,
    *,
    image_sha256: str | None = None,
    settings: Any = None,
    revision: str | None = None,
    seconds: float | None = None,
    generated_text: str | list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One results line from a :class:`FlorenceResult` (documented in the report / README)."""
    det = result.detections
    scores = [_score(c) for c in det.confidence] if det.confidence is not None else [None] * len(det)
    line: dict[str, Any] = {
        "image": image,
        "width": int(result.image_size[0]),
        "height": int(result.image_size[1]),
        "task": result.task,
        "text_input": result.text_input,
        "boxes": result.boxes,
        "generated_text": generated_text if generated_text is not None else result.raw,
        "model": result.model,
        "revision": revision,
        "image_sha256": image_sha256,
        "num_regions": len(det),
        "scores": scores,
        "text": result.text,
        "text_score": _score(result.text_score),
        "truncated": bool(result.truncated),
    }
    if SAM_POLYGONS in det.data:  # refined by SAM (documented in the module docstring)
        line["sam_model"] = getattr(result, "sam_model", None)
        line["sam_polygons"] = [[np.asarray(p).reshape(-1).round(2).tolist() for p in parts]
                                for parts in det.data[SAM_POLYGONS]]  # fmt: skip
        line["sam_scores"] = [_score(s) for s in det.data.get(SAM_SCORE, [math.nan] * len(det))]
        if SAM_BOX in det.data:
            line["sam_boxes"] = [[round(float(v), 2) for v in box] for box in det.data[SAM_BOX]]
    if settings is not None:
        line["max_new_tokens"], line["num_beams"] = int(settings.max_new_tokens), int(settings.num_beams)
    if seconds is not None:
        line["seconds"] = round(float(seconds), 4)
    line["created"] = now_iso()
    line |= extra or {}
    return line


# ---- re-parsing -------------------------------------------------------------------
def load_parser(model: str = "base", revision: str | None = None) -> Any:
    """A weights-free :class:`FlorenceEngine` that can only ``parse`` (processor files only).

    ``export`` and ``push`` need the processor's post-processing, not the model:
    this loads a few MB of tokenizer/processor files instead of the weights.
    """
    from florence_ui.model.engine import FlorenceEngine

    return FlorenceEngine.parser_only(model, revision=revision)


def parser_for(lines: list[dict[str, Any]], model: str | None = None, revision: str | None = None) -> Any:
    """The parser for a results file: ``model`` if given, else the file's own model, else ``base``."""
    if model:
        return load_parser(model, revision)
    recorded = next((str(line["model"]) for line in lines if line.get("model")), None)
    candidates = list(dict.fromkeys([c for c in (recorded, "base") if c]))
    error: ModelLoadError | None = None
    for candidate in candidates:
        try:
            return load_parser(candidate, revision if candidate == recorded else None)
        except ModelLoadError as exc:
            error = error or exc
    assert error is not None
    raise error


def image_size(path: str | Path) -> tuple[int, int]:
    """Width and height as displayed (EXIF rotation applied), read from the header only."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def result_from_line(parser: Any, line: dict[str, Any], base_dir: str | Path | None = None) -> Any:
    """Re-parse one line's ``generated_text`` into a :class:`FlorenceResult` (scores re-attached)."""
    width, height = line.get("width"), line.get("height")
    if not width or not height:
        width, height = image_size(resolve_image(line["image"], base_dir))
    result = parser.parse(
        line["task"], line["generated_text"], (int(width), int(height)), text=line.get("text_input"),
        boxes=line.get("boxes"),
    )  # fmt: skip
    scores = line.get("scores")
    det = result.detections
    if isinstance(scores, list) and len(scores) == len(det) and len(det):
        det.confidence = np.array([math.nan if s is None else float(s) for s in scores], dtype=np.float32)
    _attach_sam(result, line)
    if line.get("text_score") is not None:
        result.text_score = float(line["text_score"])
    result.model = line.get("model") or result.model
    result.truncated = bool(line.get("truncated", False))
    return result


def _attach_sam(result: Any, line: dict[str, Any]) -> None:
    """Put a refined line's SAM outlines, scores and boxes back on its rows (when they pair up with them)."""
    det = result.detections
    polygons = line.get("sam_polygons")
    if not isinstance(polygons, list) or len(polygons) != len(det) or not len(det):
        return
    parts = np.empty(len(det), dtype=object)
    for i, row in enumerate(polygons):
        parts[i] = [np.asarray(flat, dtype=np.float32).reshape(-1, 2) for flat in (row or []) if len(flat) >= 6]
    det.data[SAM_POLYGONS] = parts
    scores = line.get("sam_scores")
    if isinstance(scores, list) and len(scores) == len(det):
        det.data[SAM_SCORE] = np.array([math.nan if s is None else float(s) for s in scores], dtype=np.float32)
    boxes = line.get("sam_boxes")
    if isinstance(boxes, list) and len(boxes) == len(det):
        det.data[SAM_BOX] = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    result.sam_model = line.get("sam_model")


def resolve_image(image: str, base_dir: str | Path | None = None) -> str:
    """An image path as written, or relative to the results file when that is where it is."""
    path = Path(image).expanduser()
    if path.exists() or path.is_absolute() or base_dir is None:
        return str(path)
    candidate = Path(base_dir) / path
    return str(candidate) if candidate.exists() else str(path)


def labeled_images(
    lines: Iterable[dict[str, Any]],
    parser: Any,
    *,
    min_confidence: float | None = None,
    base_dir: str | Path | None = None,
    warn: Any = None,
) -> list[LabeledImage]:
    """Results lines → one :class:`LabeledImage` per image, every task's regions and texts.

    ``min_confidence`` drops regions and texts scored below it; unscored ones
    (files from runtimes that record no scores) are kept, since nothing says they are weak.
    The last line wins when the same (image, task, input) appears twice.
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    latest: dict[tuple, dict[str, Any]] = {}
    for line in lines:
        latest[line_key(line)] = line
    images: dict[str, LabeledImage] = {}
    for line in latest.values():
        path = resolve_image(str(line["image"]), base_dir)
        try:
            result = result_from_line(parser, line, base_dir)
        except Exception as exc:  # one bad line must not stop an export of 100k
            warn(f"skipped {line['image']} {line['task']}: {type(exc).__name__}: {exc}")
            continue
        item = images.get(path)
        if item is None:
            width, height = result.image_size
            item = LabeledImage(width=width, height=height, image_path=path, model=line.get("model"),
                                revision=line.get("revision"))  # fmt: skip
            images[path] = item
        for region in regions_from_result(result):
            if min_confidence is None or region.score is None or region.score >= min_confidence:
                item.regions.append(region)
        if get_task(result.task).output is OutputKind.TEXT and result.text:
            score = _score(result.text_score)
            if min_confidence is None or score is None or score >= min_confidence:
                item.texts.append(ImageText(result.task, result.text, score))
    return list(images.values())


def iter_lines(paths: Iterable[str | Path], warn: Any = None) -> Iterator[dict[str, Any]]:
    """Lines of several results files in order, warning about bad ones."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    for path in paths:
        if not Path(path).exists():
            raise ResultsFileError(f"{path}: no such results file")
        report = read_lines(path)
        for number, reason in report.bad:
            warn(f"{path}:{number}: skipped a corrupt line ({reason})")
        if report.torn_tail:
            warn(f"{path}: ignored a torn last line (an interrupted write)")
        yield from report.lines
