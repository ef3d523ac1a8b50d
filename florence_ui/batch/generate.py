"""Batched inference across images: one vision-tower call per batch, one ``generate`` per task.

``FlorenceEngine.run`` answers one task on one image (N boxes of a region task
already go in one call). For folders of images that leaves the accelerator
idle between small calls, so this module stacks the images of a batch: their
features are computed once and shared by every task asked of them, and each
task's prompts for all images go through a single ``generate``. Results are
assembled by the engine's own decoder and parser, so a batched answer is the
same :class:`FlorenceResult` that ``run`` would return.

It reaches into a few engine internals (``_decode``, ``_assemble``,
``_model_lock``); a public ``FlorenceEngine.run_batch`` would be their home.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from florence_ui.core.geometry import loc_tokens
from florence_ui.core.tasks import get_task

#: prompts per ``generate`` call (images × boxes); bounds memory for region tasks with many boxes
MAX_ROWS = 64


@dataclass
class Answer:
    """One job's answer, or why it failed."""

    job: Any
    result: Any = None
    #: what the results line stores as generated_text when it is not ``result.raw`` (tiled runs)
    generated_text: str | list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _lock(engine: Any):
    return getattr(engine, "_model_lock", None) or contextlib.nullcontext()


def image_features(engine: Any, images: list[Image.Image]) -> list[Any]:
    """Projected features for several images in one vision-tower call, one ``(1, T, D)`` each."""
    import torch

    if not images:
        return []
    pixels = engine.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    pixels = pixels.to(engine.device, engine.dtype)
    with _lock(engine), torch.inference_mode():
        feats = engine.model.get_image_features(pixel_values=pixels).pooler_output
    return [feats[i : i + 1] for i in range(len(images))]


def _generate(engine: Any, prompts: list[str], features: list[Any], settings: Any) -> tuple[Any, Any]:
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    enc = engine.text_inputs(prompts).to(engine.device)
    stacked = torch.cat(features, dim=0)
    beams = settings.num_beams > 1
    with _lock(engine), torch.inference_mode():
        out = engine.model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=stacked)},
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        trans = engine.model.compute_transition_scores(
            out.sequences, out.scores, getattr(out, "beam_indices", None) if beams else None,
            normalize_logits=not beams,
        )  # fmt: skip
    return out.sequences, trans


@dataclass
class _Prepared:
    job: Any
    image: Image.Image
    features: Any
    prompts: list[str]
    boxes: list[list[float]] | None
    notes: list[str]


def _answer_group(engine: Any, spec: Any, group: list[_Prepared], settings: Any) -> list[Answer]:
    """One ``generate`` for every prompt of every job in ``group``, split back per job."""
    prompts = [p for item in group for p in item.prompts]
    feats = [item.features for item in group for _ in item.prompts]
    sequences, trans = _generate(engine, prompts, feats, settings)
    answers, row = [], 0
    for item in group:
        rows = slice(row, row + len(item.prompts))
        row += len(item.prompts)
        texts, pieces, _ids, lengths, truncated = engine._decode(sequences[rows], trans[rows], settings.max_new_tokens)
        result = engine._assemble(spec, texts, pieces, item.image.size, item.job.text, item.boxes)
        result.prompts, result.model_prompts = item.prompts, engine.model_prompts(item.prompts)
        result.generated_tokens, result.truncated, result.notes = lengths, truncated, list(item.notes)
        if truncated:
            result.notes.append(f"The answer was cut off at max_new_tokens={settings.max_new_tokens}.")
        answers.append(Answer(item.job, result))
    return answers


def _chunks(items: list[_Prepared], max_rows: int) -> Iterator[list[_Prepared]]:
    group: list[_Prepared] = []
    rows = 0
    for item in items:
        if group and rows + len(item.prompts) > max_rows:
            yield group
            group, rows = [], 0
        group.append(item)
        rows += len(item.prompts)
    if group:
        yield group


def encode_detections(engine: Any, result: Any) -> str:
    """A merged (tiled) answer re-written as Florence-2 text: ``label<loc_x1><loc_y1><loc_x2><loc_y2>...``.

    Tiles answer in their own coordinates, so no single generated text covers the
    whole image; re-quantising the merged boxes with the processor's quantiser
    keeps results.jsonl re-parsable (within one bin, 1/1000 of the side).
    """
    det = result.detections
    names = det.data.get("class_name", [""] * len(det))
    parts = [
        f"{name}{loc_tokens(engine.quantize_box(box, result.image_size))}"
        for name, box in zip(names, det.xyxy, strict=True)
    ]
    return "</s><s>" + "".join(parts) + "</s>"


def run_task_batch(
    engine: Any,
    token: str,
    jobs: list[Any],
    images: dict[str, Image.Image],
    features: dict[str, Any],
    settings: Any,
    *,
    tile: bool = False,
) -> list[Answer]:
    """Answer one task for several images; a job that fails (bad box, model error) fails alone."""
    from florence_ui.model.engine import InputError

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
    prepared: list[_Prepared] = []
    for job in jobs:
        image = images[job.image]
        try:
            boxes = [list(b) for b in job.boxes] if job.boxes else None
            prompts, fixed, notes = engine.task_prompts(spec, job.text, boxes, image.size)
        except InputError as exc:
            answers.append(Answer(job, error=str(exc)))
            continue
        prepared.append(_Prepared(job, image, features[job.image], prompts, fixed, notes))
    for group in _chunks(prepared, MAX_ROWS):
        try:
            answers += _answer_group(engine, spec, group, settings)
        except Exception as exc:  # noqa: BLE001 - retry one by one so one bad job cannot sink its batch
            if len(group) == 1:
                answers.append(Answer(group[0].job, error=f"{type(exc).__name__}: {exc}"))
                continue
            for item in group:
                try:
                    answers += _answer_group(engine, spec, [item], settings)
                except Exception as inner:  # noqa: BLE001
                    answers.append(Answer(item.job, error=f"{type(inner).__name__}: {inner}"))
    return answers
