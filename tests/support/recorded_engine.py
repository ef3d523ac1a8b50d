"""A test-only FlorenceEngine that answers with real, recorded Florence-2 generations.

The real weights cannot be downloaded here, and the tiny random model answers
noise, so UI tests that need *meaningful* answers (labels, boxes, polygons,
OCR quads) use this double: it holds the tiny checkpoint's real processor, so
prompts, token counts and :meth:`FlorenceEngine.parse` are the product code,
and only the generated text comes from ``golden/florence2_outputs.json``.
For region tasks the recorded answer is replayed once per drawn box with that
box's own ``<loc_N>`` echo, as Florence-2 does. Never used by product code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from florence_ui.core.geometry import loc_tokens
from florence_ui.core.tasks import get_task
from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError
from florence_ui.model.loading import load_model

#: which recorded image answers each task (the Beetle photo where it has an answer)
PREFERRED_IMAGES = ("beetle", "car", "book_cover", "australia")
LOC = re.compile(r"<loc_\d+>")
LOC_NUM = re.compile(r"<loc_(\d+)>")


def _move_polygon(recorded: str, old_box: Sequence[int], new_box: Sequence[int]) -> str:
    """Map a recorded polygon answer from the box it was asked about to another box (in bins)."""
    ox1, oy1, ox2, oy2 = old_box
    nx1, ny1, nx2, ny2 = new_box
    sx, sy = (nx2 - nx1) / max(1, ox2 - ox1), (ny2 - ny1) / max(1, oy2 - oy1)
    count = 0

    def repl(match: re.Match) -> str:
        nonlocal count
        value = int(match.group(1))
        moved = nx1 + (value - ox1) * sx if count % 2 == 0 else ny1 + (value - oy1) * sy
        count += 1
        return f"<loc_{min(999, max(0, round(moved)))}>"

    return LOC_NUM.sub(repl, recorded)


class RecordedEngine(FlorenceEngine):
    """``run`` replays a recorded generation through the real ``parse``; everything else is inherited."""

    def __init__(self, loaded: Any, golden: dict, *, scores: Sequence[float] = (0.91, 0.62, 0.48, 0.83)) -> None:
        super().__init__(loaded)
        self.model_id = "recorded:Florence-2-base-ft (golden outputs)"
        self.answers: dict[str, str] = {}
        self.prompt_bins: dict[str, list[int]] = {}
        for image in reversed(PREFERRED_IMAGES):
            for vector in golden["vectors"]:
                if vector["image"] == image:
                    self.answers[vector["task"]] = vector["generated_text"]
                    self.prompt_bins[vector["task"]] = [int(b) for b in LOC_NUM.findall(vector["text_input"] or "")]
        self.scores = list(scores)
        self.calls: list[dict[str, Any]] = []
        #: set to True to make the next answers look cut off at max_new_tokens
        self.force_truncated = False

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, golden: dict, **kwargs: Any) -> RecordedEngine:
        return cls(load_model(str(checkpoint), device="cpu"), golden, **kwargs)

    def run(self, image, task, text=None, boxes=None, *, settings=None, max_new_tokens=None, num_beams=None,
            use_cache=True, tile=False, **tile_options):  # fmt: skip
        spec = get_task(task)
        settings = settings or GenerationSettings()
        settings = GenerationSettings(
            max_new_tokens if max_new_tokens is not None else settings.max_new_tokens,
            num_beams if num_beams is not None else settings.num_beams,
        ).checked()
        started = time.perf_counter()
        image = image.convert("RGB")
        prompts, fixed, notes = self.task_prompts(spec, text, boxes, image.size)
        if spec.token not in self.answers:
            raise InputError(f"No recorded answer for {spec.token} (test double).")
        recorded = self.answers[spec.token]
        self.calls.append({"task": spec.token, "text": text, "boxes": fixed, "size": image.size})
        if fixed:
            bins = [self.quantize_box(box, image.size) for box in fixed]
            if spec.token == "<REGION_TO_SEGMENTATION>":
                generated = [_move_polygon(recorded, self.prompt_bins[spec.token], b) for b in bins]
            else:
                generated = [LOC.sub("", recorded).replace("</s>", "") + loc_tokens(b) + "</s>" for b in bins]
            result = self.parse(spec.token, generated, image.size, text, fixed)
        else:
            result = self.parse(spec.token, recorded, image.size, text)
        det = result.detections
        if len(det):
            det.confidence = np.array([self.scores[i % len(self.scores)] for i in range(len(det))], dtype=np.float32)
        if spec.output.value == "text":
            result.text_score = 0.88
        result.prompts, result.model_prompts = prompts, self.model_prompts(prompts)
        result.prompt_tokens = self.text_inputs(prompts)["attention_mask"].sum(dim=1).tolist()
        result.generated_tokens = [len(LOC.findall(g)) + len(g.split()) for g in result.raw_list]
        result.notes = notes
        result.truncated = self.force_truncated
        if self.force_truncated:
            result.notes.append(f"The answer was cut off at max_new_tokens={settings.max_new_tokens}.")
        elapsed = time.perf_counter() - started
        result.timings = {"vision_s": 0.0, "generate_s": elapsed, "total_s": elapsed}
        result.model = self.model_id
        return result
