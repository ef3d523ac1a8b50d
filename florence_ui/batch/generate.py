"""Batched inference across images: one vision-tower call per batch, one ``generate`` per task.

``FlorenceEngine.run`` answers one task on one image (N boxes of a region task
already go in one call). For folders of images that leaves the accelerator
idle between small calls, so the runner computes a batch's image features once
(``FlorenceEngine.image_features``) and shares them with every task asked of
them, and this module sends each task's prepared requests for all images
through one ``FlorenceEngine.generate``. It uses only the engine's public doors
(``prepare`` → ``generate``), so a batched answer is the same complete
:class:`FlorenceResult` that ``run`` returns: token counts, probabilities,
timings, and the same time limit (``FLORENCE_UI_REQUEST_TIMEOUT``, per
``generate`` call).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from florence_ui.core.fields import CLASS_NAME
from florence_ui.core.geometry import loc_tokens
from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import get_task
from florence_ui.errors import InputError

if TYPE_CHECKING:
    import torch

    from florence_ui.model.engine import FlorenceEngine
    from florence_ui.model.generation import GenerationSettings, PreparedRequest

#: prompts per ``generate`` call (images × boxes); bounds memory for region tasks with many boxes
MAX_ROWS = 64


@dataclass
class Answer:
    """One job's answer, or why it failed."""

    job: Any
    result: FlorenceResult | None = None
    #: what the results line stores as generated_text when it is not ``result.raw`` (tiled runs)
    generated_text: str | list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _answer_group(engine: FlorenceEngine, group: list[tuple[Any, PreparedRequest]]) -> list[Answer]:
    """One ``generate`` for every row of every job in ``group``, one finished result per job."""
    results = engine.generate([request for _, request in group], use_cache=False)
    return [Answer(job, result) for (job, _), result in zip(group, results, strict=True)]


def _chunks(items: list[tuple[Any, PreparedRequest]], max_rows: int) -> Iterator[list[tuple[Any, PreparedRequest]]]:
    group: list[tuple[Any, PreparedRequest]] = []
    rows = 0
    for item in items:
        if group and rows + item[1].rows > max_rows:
            yield group
            group, rows = [], 0
        group.append(item)
        rows += item[1].rows
    if group:
        yield group


def encode_detections(engine: FlorenceEngine, result: FlorenceResult) -> str:
    """A merged (tiled) answer re-written as Florence-2 text: ``label<loc_x1><loc_y1><loc_x2><loc_y2>...``.

    Tiles answer in their own coordinates, so no single generated text covers the
    whole image; re-quantising the merged boxes with the processor's quantiser
    keeps results.jsonl re-parsable (within one bin, 1/1000 of the side).
    """
    det = result.detections
    names = det.data.get(CLASS_NAME, [""] * len(det))
    parts = [
        f"{name}{loc_tokens(engine.quantize_box(box, result.image_size))}"
        for name, box in zip(names, det.xyxy, strict=True)
    ]
    return "</s><s>" + "".join(parts) + "</s>"


def run_task_batch(
    engine: FlorenceEngine,
    token: str,
    jobs: list[Any],
    images: dict[str, Image.Image],
    features: dict[str, torch.Tensor],
    settings: GenerationSettings,
    *,
    tile: bool = False,
) -> list[Answer]:
    """Answer one task for several images; a job that fails (bad box, model error) fails alone.

    ``features``: each image's projected features, computed once for the batch
    (``FlorenceEngine.image_features``) and shared by every task asked of it.
    """
    spec = get_task(token)
    answers: list[Answer] = []
    if tile and spec.tileable:
        for job in jobs:
            try:
                result = engine.run(images[job.image], token, job.text, settings=settings, tile=True)
            except Exception as exc:  # noqa: BLE001 - reported per image, the run goes on
                answers.append(Answer(job, error=f"{type(exc).__name__}: {exc}"))
                continue
            answers.append(Answer(job, result, encode_detections(engine, result),
                                  {"tiled": True, "tile_generated_text": result.raw_list}))  # fmt: skip
        return answers
    prepared: list[tuple[Any, PreparedRequest]] = []
    for job in jobs:
        boxes = [list(b) for b in job.boxes] if job.boxes else None
        try:
            request = engine.prepare(
                images[job.image], token, job.text, boxes, settings=settings, features=features.get(job.image)
            )
        except InputError as exc:
            answers.append(Answer(job, error=str(exc)))
            continue
        prepared.append((job, request))
    for group in _chunks(prepared, MAX_ROWS):
        try:
            answers += _answer_group(engine, group)
        except Exception as exc:  # noqa: BLE001 - retry one by one so one bad job cannot sink its batch
            if len(group) == 1:
                answers.append(Answer(group[0][0], error=f"{type(exc).__name__}: {exc}"))
                continue
            for item in group:
                try:
                    answers += _answer_group(engine, [item])
                except Exception as inner:  # noqa: BLE001
                    answers.append(Answer(item[0], error=f"{type(inner).__name__}: {inner}"))
    return answers
