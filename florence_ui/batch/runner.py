"""Batch auto-labelling: folders of images → results.jsonl, resumable and loss-free.

The unit of work is a *job*: one (image, task, text, boxes). ``plan`` drops the
jobs already in the results file (resume), ``process_images`` runs a batch of
images through the model — one vision-tower call for the whole batch, then one
``generate`` per task over every image of the batch, so several tasks on one
image share its features — and ``drive`` writes the lines, the progress bar and
the summary. The Ray engine (``ray_engine``) reuses ``process_images`` inside
its actors and ``drive`` on the driver, so both engines write the same lines.

With a ``segmenter`` (``predict --sam``) every boxed answer is refined by SAM
(:func:`florence_ui.model.refine.refine_result`) before its line is written:
all its boxes in one decoder call, the image's SAM embedding shared by every
task asked of it. A SAM failure fails that job (so a resume asks again).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from florence_ui.batch.results_file import JsonlWriter, dumps, line_from_result, line_key, read_lines, repair
from florence_ui.core.tasks import get_task
from florence_ui.errors import ImageLoadError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .bmp .gif .tif .tiff .webp .ppm .pgm .pbm .pnm .tga .ico .dib".split()
)


@dataclass(frozen=True)
class TaskRequest:
    """One ``--task`` as asked on the command line (boxes are resolved per image later)."""

    task: str
    text: str | None = None


@dataclass(frozen=True)
class Job:
    """One line to produce: an image, a task and its concrete inputs."""

    image: str
    task: str
    text: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] | None = None

    def key(self) -> tuple[str, str, str, str]:
        boxes = [list(b) for b in self.boxes] if self.boxes else None
        return line_key({"image": self.image, "task": self.task, "text_input": self.text, "boxes": boxes})

    def to_json(self) -> list[Any]:
        return [self.task, self.text, [list(b) for b in self.boxes] if self.boxes else None]

    @classmethod
    def from_json(cls, image: str, data: Sequence[Any]) -> Job:
        task, text, boxes = data
        return cls(image, task, text, tuple(tuple(float(v) for v in b) for b in boxes) if boxes else None)


@dataclass
class ImageOutcome:
    """What processing one image produced: its lines and its failures (path + reason)."""

    image: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


# ---- finding images ------------------------------------------------------------------
def find_images(inputs: Iterable[str | Path], warn: Callable[[str], None]) -> tuple[list[str], list[dict[str, Any]]]:
    """Files and folders (recursively) → absolute image paths, and the inputs that do not exist.

    Files in folders are picked by extension (a stray ``notes.txt`` is skipped with
    a warning); a file named explicitly is always tried, so a mislabelled image works.
    """
    found: list[str] = []
    missing: list[dict[str, Any]] = []
    ignored = 0
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in child.relative_to(path).parts):
                    continue
                if child.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(os.path.abspath(child))
                else:
                    ignored += 1
                    warn(f"warning: skipping {child} (not an image file)")
        elif path.is_file():
            found.append(os.path.abspath(path))
        else:
            missing.append({"image": str(raw), "task": None, "error": "no such file or directory"})
    if ignored:
        warn(f"warning: skipped {ignored} non-image file(s)")
    return list(dict.fromkeys(found)), missing


def load_image(path: str) -> tuple[Image.Image, str]:
    """Upright RGB image (as the UI opens it: EXIF rotation, alpha flattened) and its identity (the file's sha256)."""
    from florence_ui.core.images import image_identity, open_image

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"cannot read file: {exc.strerror or exc}") from exc
    try:
        image = open_image(data, name="the file")
    except ImageLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        raise ImageLoadError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    return image, image_identity(data)


# ---- boxes ------------------------------------------------------------------------------
def parse_boxes_arg(value: str | None) -> Any:
    """``--boxes``: inline JSON or a JSON file; a list of boxes, or {image path or name: boxes}."""
    if value is None:
        return None
    text = Path(value).read_text() if not value.lstrip().startswith(("[", "{")) and Path(value).exists() else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--boxes is neither JSON nor a JSON file: {exc}") from exc
    if isinstance(data, list):
        return _check_boxes(data, "--boxes")
    if isinstance(data, dict):
        return {str(k): _check_boxes(v, f"--boxes[{k!r}]") for k, v in data.items()}
    raise ValueError("--boxes must be a list of [x1, y1, x2, y2] or an object {image: boxes}")


def _check_boxes(boxes: Any, where: str) -> list[list[float]]:
    if not isinstance(boxes, list) or not all(isinstance(b, list) and len(b) == 4 for b in boxes):
        raise ValueError(f"{where}: expected a list of [x1, y1, x2, y2] boxes in pixels")
    return [[float(v) for v in b] for b in boxes]


def boxes_for(spec: Any, image: str) -> list[list[float]] | None:
    """The prompt boxes of one image: the shared list, or the entry for its path or file name."""
    if spec is None or isinstance(spec, list):
        return spec
    for key in (image, os.path.relpath(image), Path(image).name):
        if key in spec:
            return spec[key]
    return None


# ---- planning -----------------------------------------------------------------------------
def make_jobs(images: list[str], requests: list[TaskRequest], boxes: Any) -> tuple[list[Job], list[dict]]:
    """Every (image, task) job; box tasks on an image with no boxes become failures."""
    jobs, failures = [], []
    for image in images:
        for req in requests:
            spec = get_task(req.task)
            if spec.needs_boxes:
                mine = boxes_for(boxes, image)
                if not mine:
                    failures.append({"image": image, "task": spec.token, "error": "no --boxes given for this image"})
                    continue
                jobs.append(Job(image, spec.token, None, tuple(tuple(b) for b in mine)))
            else:
                jobs.append(Job(image, spec.token, req.text if spec.needs_text else None, None))
    return jobs, failures


def plan(jobs: list[Job], out: str | Path, warn: Callable[[str], None]) -> tuple[list[Job], int]:
    """Repair the results file and drop the jobs it already holds; returns (pending, already done)."""
    if repair(out):
        warn(f"repaired {out}: removed a torn last line left by an interrupted run")
    report = read_lines(out)
    for number, reason in report.bad:
        warn(f"warning: {out}:{number} is corrupt and is ignored ({reason})")
    done = {line_key(line) for line in report.lines}
    pending = [j for j in jobs if j.key() not in done]
    return pending, len(jobs) - len(pending)


def group_by_image(jobs: list[Job]) -> dict[str, list[Job]]:
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.image, []).append(job)
    return grouped


# ---- running ------------------------------------------------------------------------------
def process_images(
    engine: Any,
    work: list[tuple[str, list[Job]]],
    settings: Any,
    *,
    tile: bool = False,
    decoded: dict[str, tuple[Image.Image, str] | ImageLoadError] | None = None,
    segmenter: Any = None,
) -> list[ImageOutcome]:
    """Run every job of a batch of images; a bad image or job fails alone, the rest go on.

    The images' features are computed once, in one vision-tower call, and shared
    by all the tasks asked of them. ``decoded`` holds images already read (see
    :func:`read_images`); the others are read here. ``segmenter``: a
    :class:`~florence_ui.model.sam.SamSegmenter` that refines every boxed answer.
    """
    from florence_ui.batch.generate import run_task_batch

    started = time.perf_counter()
    outcomes = {image: ImageOutcome(image) for image, _ in work}
    decoded = decoded if decoded is not None else read_images([image for image, _ in work])
    loaded: dict[str, tuple[Image.Image, str]] = {}
    for image, _ in work:
        got = decoded.get(image) or read_images([image])[image]
        if isinstance(got, ImageLoadError):
            outcomes[image].failures.append({"image": image, "task": None, "error": str(got)})
        else:
            loaded[image] = got
    by_task: dict[str, list[Job]] = {}
    for image, jobs in work:
        if image in loaded:
            for job in jobs:
                by_task.setdefault(job.task, []).append(job)
    if not by_task:
        return [outcomes[image] for image, _ in work]
    images = {path: pair[0] for path, pair in loaded.items()}
    features: dict[str, Any] = {}
    if any(not (tile and get_task(t).tileable) for t in by_task):
        features, broken = _features(engine, images)
        for path, error in broken.items():
            outcomes[path].failures.append({"image": path, "task": None, "error": error})
            del images[path]
        by_task = {t: [j for j in jobs if j.image in images] for t, jobs in by_task.items()}
    revision = getattr(engine, "revision", None)
    for token, jobs in by_task.items():
        for answer in run_task_batch(engine, token, jobs, images, features, settings, tile=tile):
            job = answer.job
            if answer.error is None and segmenter is not None:
                answer = _refined(answer, images[job.image], segmenter)
            if answer.error is not None:
                outcomes[job.image].failures.append({"image": job.image, "task": job.task, "error": answer.error})
                continue
            extra = dict(answer.extra)
            if answer.result.notes:
                extra["notes"] = answer.result.notes
            line = line_from_result(
                answer.result, job.image, image_sha256=loaded[job.image][1], settings=settings, revision=revision,
                generated_text=answer.generated_text, extra=extra,
            )  # fmt: skip
            line["text_input"] = job.text  # as asked: the resume key must match the job
            line["boxes"] = [list(b) for b in job.boxes] if job.boxes else None
            outcomes[job.image].lines.append(line)
    total = sum(len(o.lines) for o in outcomes.values())
    share = (time.perf_counter() - started) / max(total, 1)
    for outcome in outcomes.values():
        for line in outcome.lines:
            line["seconds"] = round(share, 4)
    return [outcomes[image] for image, _ in work]


def _refined(answer: Any, image: Image.Image, segmenter: Any) -> Any:
    """The answer with SAM's masks on its rows (answers without boxes pass unchanged); a failure fails the job."""
    from dataclasses import replace

    from florence_ui.model.refine import refinable, refine_result

    if not refinable(answer.result):
        return answer
    try:
        return replace(answer, result=refine_result(answer.result, image, segmenter))
    except Exception as exc:  # noqa: BLE001 - reported with the job, the run goes on
        return replace(answer, result=None, error=f"SAM refinement failed: {type(exc).__name__}: {exc}")


def _features(engine: Any, images: dict[str, Image.Image]) -> tuple[dict[str, Any], dict[str, str]]:
    """One vision-tower call for the batch; if it fails, one per image so only the culprit fails.

    No LRU cache: a folder's images are seen once, and the batch keeps its own features.
    """
    try:
        got = engine.image_features(list(images.values()), use_cache=False)
        return {path: f.features for path, f in zip(images, got, strict=True)}, {}
    except Exception:  # noqa: BLE001 - isolate below
        pass
    features, broken = {}, {}
    for path, image in images.items():
        try:
            [(features[path], _)] = engine.image_features([image], use_cache=False)
        except Exception as exc:  # noqa: BLE001 - reported with the image, the run goes on
            broken[path] = f"vision tower failed: {type(exc).__name__}: {exc}"
    return features, broken


@dataclass
class Summary:
    """The end-of-run report: lines written, jobs already done, and what failed and why."""

    done: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def text(self, out: str | Path, limit: int = 20) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        head = "Interrupted" if self.interrupted else "Finished"
        lines = [
            f"{head}: {self.done} done, {self.skipped} skipped (already in {out}), {len(self.failed)} failed"
            f" — {self.images} images in {self.seconds:.1f} s ({rate:.2f} images/s)"
        ]
        for fail in self.failed[:limit]:
            task = f" [{fail['task']}]" if fail.get("task") else ""
            lines.append(f"  FAILED {fail['image']}{task}: {fail['error']}")
        if len(self.failed) > limit:
            lines.append(f"  ... and {len(self.failed) - limit} more (see the .failed.jsonl file)")
        return "\n".join(lines)


def failures_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".failed.jsonl")


def drive(
    outcomes: Iterable[ImageOutcome],
    writer: JsonlWriter,
    summary: Summary,
    *,
    total_images: int,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Summary:
    """Write each outcome's lines as it arrives (fsync per line) under a tqdm bar in images/s.

    Ctrl-C or SIGTERM stops at a line boundary: the file stays valid and the
    summary still prints; the next run with the same ``--out`` resumes.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    bar = tqdm(total=total_images, unit="img", desc="predict", disable=not progress, dynamic_ncols=True,
               file=sys.stderr, smoothing=0.1)  # fmt: skip
    say = log or (lambda msg: bar.write(msg, file=sys.stderr))
    try:
        for outcome in outcomes:
            for line in outcome.lines:
                writer.write(line)
                summary.done += 1
            for fail in outcome.failures:
                summary.failed.append(fail)
                task = f" [{fail['task']}]" if fail.get("task") else ""
                say(f"FAILED {fail['image']}{task}: {fail['error']}")
            summary.images += 1
            bar.update(1)
            bar.set_postfix(done=summary.done, failed=len(summary.failed), refresh=False)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:  # stop a generator now (a Ray pipeline shuts down), not at garbage collection
            with contextlib.suppress(KeyboardInterrupt):
                close()
        bar.close()
        summary.seconds = time.perf_counter() - started
        fails = failures_path(writer.path)
        if summary.failed:
            fails.write_text("".join(dumps(f) + "\n" for f in summary.failed), encoding="utf-8")
        elif fails.exists():
            fails.unlink()
    return summary


def local_outcomes(
    engine: Any,
    pending: list[Job],
    settings: Any,
    *,
    batch_size: int = 8,
    tile: bool = False,
    segmenter: Any = None,
) -> Iterator[ImageOutcome]:
    """The local engine: batches of ``batch_size`` images, in file order (``segmenter``: SAM refinement).

    The next batch's files are decoded on a thread while the model works on this
    one (PyTorch releases the GIL), so JPEG decoding does not idle the accelerator.
    """
    from concurrent.futures import ThreadPoolExecutor

    grouped = list(group_by_image(pending).items())
    size = max(1, int(batch_size))
    batches = [grouped[start : start + size] for start in range(0, len(grouped), size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="florence-decode") as pool:
        ahead = pool.submit(read_images, [image for image, _ in batches[0]]) if batches else None
        for i, batch in enumerate(batches):
            decoded = ahead.result()
            if i + 1 < len(batches):
                ahead = pool.submit(read_images, [image for image, _ in batches[i + 1]])
            yield from process_images(engine, batch, settings, tile=tile, decoded=decoded, segmenter=segmenter)


def read_images(paths: list[str]) -> dict[str, tuple[Image.Image, str] | ImageLoadError]:
    """Decode several files; a failure is kept as its :class:`ImageLoadError` (reported with the image)."""
    out: dict[str, tuple[Image.Image, str] | ImageLoadError] = {}
    for path in paths:
        try:
            out[path] = load_image(path)
        except ImageLoadError as exc:
            out[path] = exc
    return out
