"""The generation stage: the one place that turns model-ready rows into generated tokens.

The engine's pipeline is prepare (validate one request) → image features
(batched, cached) → *generate* → finish the result. This module holds the data
that crosses those steps — :class:`GenerationSettings`, a validated
:class:`PreparedRequest`, the model-ready :class:`GenerationInput` and the
:class:`GenerationOutput` — and the stage itself, :class:`Generation`: a small,
replaceable callable, like httpx's transport. The default,
:class:`TransformersGeneration`, is transformers' ``model.generate`` with beam
search, the time limit and per-token scores; a test double replaces only this
stage, so prompts, token counts, decoding, parsing and the finished result stay
product code under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from florence_ui.core.tasks import Task
from florence_ui.errors import InputError

if TYPE_CHECKING:
    import torch

#: the decoder's position limit: Florence-2 cannot answer with more tokens
MAX_NEW_TOKENS_LIMIT = 1024


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs shown in the UI and CLI. Beams=3 is what Florence-2's authors use."""

    max_new_tokens: int = MAX_NEW_TOKENS_LIMIT
    num_beams: int = 3

    def checked(self) -> GenerationSettings:
        if not 1 <= int(self.max_new_tokens) <= MAX_NEW_TOKENS_LIMIT:
            raise InputError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT} (the decoder's limit)")
        if not 1 <= int(self.num_beams) <= 8:
            raise InputError("num_beams must be between 1 (greedy) and 8")
        return GenerationSettings(int(self.max_new_tokens), int(self.num_beams))


@dataclass(frozen=True)
class PreparedRequest:
    """One validated request (``FlorenceEngine.prepare``): one task on one image, ready to generate.

    Everything that can be wrong with a request was found while preparing it, so
    a batch of prepared requests fails only for model reasons. ``prompts`` are
    the task-token prompts, one per row (one per box for region tasks).
    """

    spec: Task
    image: Image.Image
    #: the text as the caller gave it (the result's ``text_input``)
    text: str | None
    prompts: tuple[str, ...]
    #: the validated pixel boxes of a region task, one per prompt; None otherwise
    boxes: tuple[tuple[float, ...], ...] | None
    notes: tuple[str, ...]
    settings: GenerationSettings
    #: projected image features computed beforehand (the batch runner shares one vision call across tasks)
    features: torch.Tensor | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    @property
    def rows(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class GenerationInput:
    """One ``generate`` call: every row of every request, tokenised, with each row's image features."""

    #: the requests whose rows these are, in row order (``requests[0]`` has the first ``rows`` rows, ...)
    requests: tuple[PreparedRequest, ...]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    #: ``(rows, image tokens, dim)``: row ``i``'s projected image features
    image_features: torch.Tensor
    settings: GenerationSettings
    #: seconds the generation may run before it stops with what it has
    max_time: float


@dataclass(frozen=True)
class GenerationOutput:
    """What a stage returns: token ids and their log-probabilities, row for row."""

    #: ``(rows, steps + 1)``; position 0 is the decoder start token
    sequences: torch.Tensor
    #: ``(rows, steps)``: the log-probability of each generated token (``compute_transition_scores``)
    transition_scores: torch.Tensor
    #: per row, whether the answer was cut off at the length limit; None: the engine decides from the
    #: sequences (an answer that filled all ``max_new_tokens`` positions was cut off)
    cut_off: tuple[bool, ...] | None = None


class Generation(Protocol):
    """The replaceable stage: model-ready rows in, generated tokens out (called under the engine's model lock)."""

    def __call__(self, model: Any, batch: GenerationInput) -> GenerationOutput: ...


class TransformersGeneration:
    """The default stage: transformers' ``model.generate`` on the precomputed image features.

    The features go in through ``mm_encoder_outputs``, so the vision tower never
    runs inside ``generate``; ``max_time`` ends a long answer at the time limit
    with what it has. Scores are the beam-aware transition scores (normalised
    log-softmax for greedy decoding), so the engine can show token probabilities.
    """

    def __call__(self, model: Any, batch: GenerationInput) -> GenerationOutput:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        settings = batch.settings
        out = model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=batch.image_features)},
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            max_time=batch.max_time,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        beams = settings.num_beams > 1
        scores = model.compute_transition_scores(
            out.sequences,
            out.scores,
            getattr(out, "beam_indices", None) if beams else None,
            normalize_logits=not beams,
        )
        return GenerationOutput(out.sequences, scores)


def rows_of(requests: Sequence[PreparedRequest]) -> list[slice]:
    """Each request's slice of the rows of one generate call."""
    out, start = [], 0
    for request in requests:
        out.append(slice(start, start + request.rows))
        start += request.rows
    return out
