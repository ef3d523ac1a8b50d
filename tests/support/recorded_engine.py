"""A test-only generation stage that answers with real, recorded Florence-2 generations.

The real weights cannot be downloaded here, and the tiny random model answers
noise, so UI tests that need *meaningful* answers (labels, boxes, polygons,
OCR quads) use :class:`RecordedEngine`: a real :class:`FlorenceEngine` on the
tiny checkpoint whose generation stage (:class:`RecordedGeneration`) is the only
thing replaced. Prompts, image features, token counts, decoding, parsing,
scoring and the finished result are the product code; only the generated
tokens come from ``golden/florence2_outputs.json``, encoded with the tiny
checkpoint's tokenizer (it has the ``<loc_N>`` and task tokens, so they decode
back to the recorded text). For region tasks the recorded answer is replayed
once per prompt box with that box's own ``<loc_N>`` echo (a polygon is moved
into the box), read from the prompts the stage receives, as Florence-2 does.
Never used by product code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from florence_ui.core.geometry import loc_tokens
from florence_ui.core.tasks import OutputKind
from florence_ui.model.engine import FlorenceEngine, InputError
from florence_ui.model.generation import GenerationInput, GenerationOutput, PreparedRequest
from florence_ui.model.loading import LoadedModel, load_model

#: which recorded image answers each task (the Beetle photo where it has an answer)
PREFERRED_IMAGES = ("beetle", "car", "book_cover", "australia")
LOC = re.compile(r"<loc_\d+>")
LOC_NUM = re.compile(r"<loc_(\d+)>")
#: the made-up probability of every token of a whole-image text answer
TEXT_SCORE = 0.88


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


def _label_and_boxes(n_label: int, targets: list[float], group: int) -> tuple[float, list[float]]:
    """Probabilities for a label's tokens and each of its boxes' loc tokens so each box scores its target.

    A box's confidence is the mean over its label's tokens and its own ``group``
    loc tokens; a label shared by several boxes (``wheel<4 locs><4 locs>``) has one
    probability, so the boxes' loc tokens make up the difference (kept within 0..1).
    """
    if not n_label:
        return math.nan, list(targets)
    width = n_label + group
    low = max([0.0] + [(width * t - group) / n_label for t in targets])
    high = min([1.0] + [width * t / n_label for t in targets])
    label = min(max(sum(targets) / len(targets), low), high)
    return label, [min(1.0, max(0.0, (width * t - n_label * label) / group)) for t in targets]


class RecordedGeneration:
    """A generation stage that replays recorded answers as token ids, with made-up but well-formed scores.

    Scores: box ``k`` of a whole-image task and row ``k`` of a region task score
    ``scores[k % len(scores)]``; whole-image text answers score :data:`TEXT_SCORE`.
    The recorded answers are the real model's, which fit its token limit; in the
    tiny byte-level tokenizer they are longer, so they are reported whole, not cut
    off, unless ``force_truncated`` asks for a cut-off answer.
    """

    def __init__(self, tokenizer: Any, golden: dict, scores: Sequence[float]) -> None:
        self.tokenizer = tokenizer
        self.answers: dict[str, str] = {}
        self.prompt_bins: dict[str, list[int]] = {}
        for image in reversed(PREFERRED_IMAGES):
            for vector in golden["vectors"]:
                if vector["image"] == image:
                    self.answers[vector["task"]] = vector["generated_text"]
                    self.prompt_bins[vector["task"]] = [int(b) for b in LOC_NUM.findall(vector["text_input"] or "")]
        self.scores = list(scores)
        self.calls: list[dict[str, Any]] = []
        self.batches: list[GenerationInput] = []
        #: set to True to make the next answers look cut off at max_new_tokens
        self.force_truncated = False

    def __call__(self, model: Any, batch: GenerationInput) -> GenerationOutput:
        self.batches.append(batch)
        rows: list[tuple[list[int], list[float]]] = []
        for request in batch.requests:
            self.calls.append({"task": request.spec.token, "text": request.text, "size": request.size,
                               "boxes": [list(b) for b in request.boxes] if request.boxes is not None else None})  # fmt: skip
            rows += self._answer(request)
        width = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_token_id
        sequences = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
        logs = [[math.log(max(p, 1e-9)) for p in probs] + [0.0] * (width - 1 - len(probs)) for _, probs in rows]
        cut_off = tuple([self.force_truncated] * len(rows))
        return GenerationOutput(sequences, torch.tensor(logs, dtype=torch.float32), cut_off)

    def texts(self, request: PreparedRequest) -> list[str]:
        """The recorded answer for each row of ``request``, as the model would write it."""
        token = request.spec.token
        if token not in self.answers:
            raise InputError(f"No recorded answer for {token} (test double).")
        recorded = self.answers[token]
        if not request.spec.needs_boxes:
            return [recorded]
        out = []
        for prompt in request.prompts:  # one row per box; its bins are the prompt's own <loc_N> echo
            bins = [int(b) for b in LOC_NUM.findall(prompt)]
            if request.spec.output is OutputKind.POLYGONS:
                out.append(_move_polygon(recorded, self.prompt_bins[token], bins))
            else:
                out.append("</s>" + LOC.sub("", recorded).replace("</s>", "") + loc_tokens(bins) + "</s>")
        return out

    def _answer(self, request: PreparedRequest) -> list[tuple[list[int], list[float]]]:
        """Each row's token ids (decoder start first) and the probability of every token after it."""
        rows = []
        box = 0
        for row, text in enumerate(self.texts(request)):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            tokens = self.tokenizer.convert_ids_to_tokens(ids[1:])
            if request.spec.output is OutputKind.TEXT:
                probs = [TEXT_SCORE] * len(tokens)
            elif request.spec.needs_boxes or request.spec.output is OutputKind.POLYGONS:
                probs = [self.scores[row % len(self.scores)]] * len(tokens)
            else:
                probs, box = self._box_probabilities(tokens, int(request.spec.loc_group), box)
            rows.append((ids, probs))
        return rows

    def _box_probabilities(self, tokens: list[str], group: int, first: int) -> tuple[list[float], int]:
        """Per-token probabilities giving box ``k`` the score ``scores[k]``; returns them and the next box number."""
        specials = set(self.tokenizer.all_special_tokens)
        probs = [1.0] * len(tokens)
        label: list[int] = []
        locs: list[int] = []
        box = first

        def flush() -> None:
            nonlocal box
            chunks = [locs[i : i + group] for i in range(0, len(locs) - group + 1, group)]
            targets = [self.scores[(box + k) % len(self.scores)] for k in range(len(chunks))]
            if not chunks:  # text with no box after it
                targets = [self.scores[box % len(self.scores)]]
            label_p, chunk_p = _label_and_boxes(len(label), targets, group)
            for i in label:
                probs[i] = label_p
            for chunk, p in zip(chunks, chunk_p, strict=False):
                for i in chunk:
                    probs[i] = p
            box += len(chunks)

        for i, token in enumerate(tokens):
            if token in specials:
                continue
            if LOC.fullmatch(token):
                locs.append(i)
                continue
            if locs:
                flush()
                label, locs = [], []
            label.append(i)
        if label or locs:
            flush()
        return probs, box


class RecordedEngine(FlorenceEngine):
    """A real :class:`FlorenceEngine` whose generation stage replays recorded answers (see the module)."""

    def __init__(
        self, loaded: LoadedModel, golden: dict, *, scores: Sequence[float] = (0.91, 0.62, 0.48, 0.83)
    ) -> None:
        self.recorded = RecordedGeneration(loaded.processor.tokenizer, golden, scores)
        super().__init__(loaded, generation=self.recorded)
        self.model_id = "recorded:Florence-2-base-ft (golden outputs)"

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, golden: dict, **kwargs: Any) -> RecordedEngine:
        return cls(load_model(str(checkpoint), device="cpu", dtype="float32"), golden, **kwargs)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """What each request asked: task, text, validated boxes, image size."""
        return self.recorded.calls

    @property
    def force_truncated(self) -> bool:
        return self.recorded.force_truncated

    @force_truncated.setter
    def force_truncated(self, value: bool) -> None:
        self.recorded.force_truncated = value
