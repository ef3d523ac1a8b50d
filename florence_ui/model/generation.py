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

A stage may report progress: :class:`GenerationInput` carries an optional
``on_step(step, max_steps, leading)`` callback, called once per decoding step
with each row's leading hypothesis so far (greedy: the answer so far; beams: the
best running beam, which a later step may replace). Streaming and progress bars
are built on it; a stage that cannot report simply never calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from florence_ui.core.tasks import Task
from florence_ui.errors import InputError

if TYPE_CHECKING:
    import torch

#: the decoder's position limit: Florence-2 cannot answer with more tokens
MAX_NEW_TOKENS_LIMIT = 1024

#: ``on_step(step, max_steps, leading)``: ``step`` tokens generated so far of at most ``max_steps``; ``leading`` is
#: ``(rows, 1 + step)`` token ids (position 0 the decoder start token), each row's leading hypothesis
StepCallback = Callable[[int, int, "torch.Tensor"], None]


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
    #: called once per decoding step (see :data:`StepCallback`); None: nobody is watching
    on_step: StepCallback | None = None


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
        from transformers import LogitsProcessorList
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        settings = batch.settings
        hooks = LogitsProcessorList()
        if batch.on_step is not None:
            hooks.append(StepHook(batch.on_step, settings.num_beams, settings.max_new_tokens))
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
            logits_processor=hooks,
        )
        beams = settings.num_beams > 1
        scores = model.compute_transition_scores(
            out.sequences,
            out.scores,
            getattr(out, "beam_indices", None) if beams else None,
            normalize_logits=not beams,
        )
        return GenerationOutput(out.sequences, scores)


class StepHook:
    """A logits processor that changes nothing and reports each step's leading hypotheses.

    transformers calls every logits processor once per step with the sequences
    so far, for greedy search and beam search alike (its streamer hook refuses
    beams), so this is the one progress door that works for every setting; it
    returns the scores untouched, so the answer is the one without it. In beam
    search the running beams of each row come sorted best first: row ``r``'s
    leading hypothesis is beam ``r * num_beams``.
    """

    def __init__(self, on_step: StepCallback, num_beams: int, max_steps: int) -> None:
        self.on_step, self.num_beams, self.max_steps = on_step, max(1, int(num_beams)), int(max_steps)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.on_step(int(input_ids.shape[1]) - 1, self.max_steps, input_ids[:: self.num_beams])
        return scores


def rows_of(requests: Sequence[PreparedRequest]) -> list[slice]:
    """Each request's slice of the rows of one generate call."""
    out, start = [], 0
    for request in requests:
        out.append(slice(start, start + request.rows))
        start += request.rows
    return out
