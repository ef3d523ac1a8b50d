"""Why Florence-2 said what it said: one teacher-forced pass over a finished answer, for the teaching view.

A class wants to see the model's own tokens, how sure it was of each, what it
nearly said instead, and where on the picture it looked while saying it.
Generation does not keep any of that (and keeping it would slow every run), so
:func:`explain` recomputes it afterwards, only when asked: the finished
answer's token ids (``result.output_tokens``) are fed back to the decoder in
*one* forward pass (teacher forcing) over the image's cached features, with
``output_attentions=True``.

What comes out (an :class:`Explanation`, plain numpy / PIL / lists):

- **tokens**: every generated token of every row (one row per prompt box for
  region tasks) as the model's BPE piece, its id and its probability, taken
  as is from ``result.output_tokens`` (the probabilities generation reported,
  beam-aware when beams > 1), so they match the result exactly.
- **attention** (``(tokens, side, side)``, each summing to 1): where the
  decoder looked while *producing* each token, i.e. the cross-attention of the
  decoder position whose input is the previous token. Averaged: the mean over
  every decoder layer and every head of the softmax weights (all layers and
  heads weigh the same), restricted to the image-patch positions of the
  encoder and renormalised to sum to 1. The encoder's image part is
  ``num_image_tokens`` positions: position 0 is the *pooled* token (the mean
  of all patches, a global summary with no place on the picture) and the
  other ``side × side`` are the patches in row-major order (24 × 24 = 576 for
  the real 768 × 768 input; the side is derived from ``num_image_tokens``, not
  assumed). The pooled token and the text-prompt positions are left out of the
  grid; their shares of the (unrenormalised) mass are kept per token as
  ``pooled_share`` and ``image_share`` so nothing is hidden.
- **alternatives**: the top-k next tokens at each step with their
  probabilities, from the same pass's logits (plain softmax of the model's
  logits given the answer so far, before generate's logits processors and
  beam bookkeeping). Top-k per step is honest and free here (the pass is made
  anyway); re-running generate for the top beams would cost a whole second
  decode.
- **the model's eye**: the exact input the vision tower saw (the processor's
  resized, normalised tensor) denormalised back into a picture (768 × 768 for
  the real checkpoints), and the patch grid side.
- **the input side**: the task-token prompt, the sentence the processor made
  of it, its text tokens, and the number of image tokens in front of them.

Attention weights need the ``eager`` attention implementation (``sdpa`` returns
none: transformers 5 warns and gives ``None``). The engine loads with
``sdpa``, so the pass switches the model to ``eager`` and back, holding the
model lock so no generate runs meanwhile.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from florence_ui.errors import InputError

__all__ = ["DEFAULT_TOP_K", "Explanation", "ExplainedToken", "explain", "grid_side"]

#: how many alternatives per step :func:`explain` keeps
DEFAULT_TOP_K = 5
#: used when the engine has no public model lock (see :func:`_model_lock`)
_FALLBACK_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExplainedToken:
    """One generated token: which answer row, which step of it, the model's piece, id and probability."""

    row: int
    step: int
    id: int
    #: the BPE piece as the tokenizer names it (``Ġcar``, ``<loc_53>``, ``</s>``), as in ``output_tokens``
    piece: str
    #: the piece as text (``" car"``): what it adds to the decoded answer
    text: str
    #: the probability generation reported for it (``output_tokens``); None where it had none
    probability: float | None


@dataclass
class Explanation:
    """Everything the teaching view shows about one finished run (plain data: no torch inside)."""

    task: str
    #: task-token prompts sent, one per row, and the sentences the processor made of them
    prompts: list[str]
    model_prompts: list[str]
    #: per row, the text tokens after the image tokens (``<s>``, the sentence's pieces, ``</s>``)
    input_tokens: list[list[str]]
    #: image positions in front of the text (patches + 1 pooled), e.g. 577
    num_image_tokens: int
    #: patches per side of the grid (24 for the real model)
    grid_side: int
    tokens: list[ExplainedToken]
    #: ``(len(tokens), side, side)`` float32, each token's grid summing to 1
    attention: np.ndarray
    #: per token, the share of its cross-attention on the image positions (pooled + patches) vs the text prompt
    image_share: np.ndarray
    #: per token, the share on the pooled token alone (left out of :attr:`attention`)
    pooled_share: np.ndarray
    #: per token, the top-k (piece, probability) at that step, best first
    alternatives: list[list[tuple[str, float]]]
    #: per token, the probability of the chosen token in the same softmax (differs from ``probability`` when beams > 1)
    forced_probability: list[float]
    #: the vision tower's input as a picture (``size`` × ``size`` of the image processor)
    eye: Image.Image
    #: how the attention was averaged, in words (for the UI's caption and the API)
    averaged: str
    layers: int
    heads: int
    notes: list[str] = field(default_factory=list)

    def token_dicts(self) -> list[dict[str, Any]]:
        """The tokens as JSON-ready dicts: piece, probability, text, id, row, step."""
        return [
            {"piece": t.piece, "probability": t.probability, "text": t.text, "id": t.id, "row": t.row, "step": t.step}
            for t in self.tokens
        ]

    def attention_lists(self, digits: int = 8) -> list[list[list[float]]]:
        """:attr:`attention` as nested lists (rounded: 8 digits keep each grid's sum within 1e-5 of 1)."""
        return np.round(self.attention.astype(np.float64), digits).tolist()

    def alternative_dicts(self) -> list[list[dict[str, Any]]]:
        return [[{"piece": p, "probability": round(q, 6)} for p, q in alts] for alts in self.alternatives]


def grid_side(num_image_tokens: int) -> int:
    """Patches per side from the image token count: ``side² + 1`` (the pooled token) = ``num_image_tokens``."""
    patches = int(num_image_tokens) - 1
    side = math.isqrt(max(patches, 0))
    if side < 1 or side * side != patches:
        raise InputError(
            f"The processor gives {num_image_tokens} image tokens, which is not a square grid of patches plus one "
            "pooled token: the teaching view cannot place the attention on the picture for this checkpoint."
        )
    return side


def model_eye(engine: Any, image: Image.Image) -> Image.Image:
    """The vision tower's exact input (resized, rescaled, normalised), turned back into a picture."""
    values = engine.pixel_values(image)[0].float().cpu().numpy()  # (3, H, W)
    ip = engine.processor.image_processor
    if getattr(ip, "do_normalize", True):
        mean = np.asarray(ip.image_mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(ip.image_std, dtype=np.float32).reshape(-1, 1, 1)
        values = values * std + mean
    scale = float(getattr(ip, "rescale_factor", 1 / 255)) if getattr(ip, "do_rescale", True) else 1.0
    pixels = np.clip(np.rint(values / scale), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels.transpose(1, 2, 0), "RGB")


def _model_lock(engine: Any) -> Any:
    """The engine's model lock when it exposes one (``engine.model_lock``), else this module's own.

    ``FlorenceEngine`` keeps its lock private for now; the page and the API run
    this pass in the same gradio concurrency group as every model event, so
    they never overlap a generate. The fallback lock serialises explanations.
    """
    lock = getattr(engine, "model_lock", None)
    return lock if lock is not None else _FALLBACK_LOCK


@contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """The model with ``eager`` attention for the block (the only kind that returns attention weights)."""
    before = model.config._attn_implementation  # noqa: SLF001 - transformers has no public getter for it
    if before == "eager" or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def explain(engine: Any, image: Image.Image, result: Any, *, top_k: int = DEFAULT_TOP_K) -> Explanation:
    """Explain one finished run of ``engine`` on ``image`` (see the module docstring for what and how).

    ``result`` must be a generated result (its ``prompts`` and ``output_tokens``);
    a parsed one (recorded text, no model call) has no tokens to explain and
    raises :class:`InputError`, as does an engine without weights.
    """
    import torch

    if getattr(engine, "model", None) is None:
        raise InputError("This engine has no model weights (it was loaded to parse only): nothing to explain.")
    rows = [list(r) for r in (result.output_tokens or [])]
    prompts = list(result.prompts or [])
    if not rows or not prompts or not any(rows):
        raise InputError(
            "This result has no generated tokens to explain (it was parsed from text, not generated here): "
            "run the task in this app, then open the teaching view."
        )
    if len(rows) != len(prompts):
        raise InputError(f"The result has {len(prompts)} prompts but {len(rows)} token rows: it cannot be explained.")
    if not isinstance(image, Image.Image):
        raise InputError("The teaching view needs the image the run was made on (a PIL image).")
    image = image.convert("RGB") if image.mode != "RGB" else image
    model, tok = engine.model, engine.processor.tokenizer
    num_image = engine.num_image_tokens
    side = grid_side(num_image)
    text_config = getattr(model.config, "text_config", model.config)
    notes: list[str] = []
    limit = int(getattr(text_config, "max_position_embeddings", 0) or 0)
    if limit and any(len(r) > limit for r in rows):
        notes.append(f"Only the first {limit} tokens of each answer are explained (the decoder's position limit).")
        rows = [r[:limit] for r in rows]

    enc = engine.text_inputs(prompts).to(engine.device)
    [features] = engine.image_features([image])  # cached: the run just computed them (takes the lock itself)
    start = int(getattr(text_config, "decoder_start_token_id", None) or model.generation_config.decoder_start_token_id)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    longest = max(len(r) for r in rows)
    decoder_ids = torch.full((len(rows), longest), pad, dtype=torch.long)
    decoder_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    targets = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        answer = [int(t[0]) for t in row]
        ids = [start] + answer[:-1]  # position k reads token k-1 and produces token k
        decoder_ids[i, : len(ids)] = torch.tensor(ids)
        decoder_mask[i, : len(ids)] = 1
        targets[i, : len(answer)] = torch.tensor(answer)
    decoder_ids, decoder_mask = decoder_ids.to(engine.device), decoder_mask.to(engine.device)
    input_ids = enc["input_ids"]
    image_id = int(model.config.image_token_id)

    with _model_lock(engine), _eager_attention(model), torch.inference_mode():
        embeds = model.get_input_embeddings()(input_ids)
        feats = features.features.to(embeds.device, embeds.dtype).expand(len(rows), -1, -1)
        placeholder = model.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=feats)
        embeds = embeds.masked_scatter(placeholder, feats)
        out = model(
            inputs_embeds=embeds,
            attention_mask=enc["attention_mask"],
            decoder_input_ids=decoder_ids,
            decoder_attention_mask=decoder_mask,
            output_attentions=True,
            use_cache=False,
        )
        cross = out.cross_attentions
        if not cross or cross[0] is None:
            raise InputError("The model returned no cross-attention weights (its attention implementation hides them).")
        mean = sum(layer.float().mean(dim=1) for layer in cross) / len(cross)  # (rows, steps, encoder positions)
        heads = int(cross[0].shape[1])
        k = max(1, min(int(top_k), out.logits.shape[-1]))
        top_p, top_i, chosen = [], [], []
        for i in range(len(rows)):  # one row at a time: a float copy of all rows' logits can be gigabytes
            logits = out.logits[i].float()
            lse = logits.logsumexp(dim=-1, keepdim=True)
            values, indices = logits.topk(k, dim=-1)
            top_p.append((values - lse).exp().cpu().numpy())
            top_i.append(indices.cpu().numpy())
            chosen.append(
                (logits.gather(-1, targets[i].to(logits.device).unsqueeze(-1)) - lse).exp()[:, 0].cpu().numpy()
            )
        mean = mean.cpu().numpy()

    tokens: list[ExplainedToken] = []
    grids, image_share, pooled_share, alternatives, forced = [], [], [], [], []
    positions = input_ids.cpu().numpy() == image_id
    for i, row in enumerate(rows):
        where = np.flatnonzero(positions[i])
        if len(where) != num_image:
            raise InputError(f"Row {i + 1} has {len(where)} image positions, expected {num_image}.")
        pooled_at, patches_at = where[0], where[1:]
        for step, (token_id, piece, probability) in enumerate(row):
            weights = mean[i, step]
            patches = weights[patches_at].astype(np.float64)
            total = float(patches.sum())
            grid = patches / total if total > 0 else np.full(patches.shape, 1.0 / len(patches))
            grids.append(grid.reshape(side, side).astype(np.float32))
            image_share.append(float(weights[where].sum() / max(float(weights.sum()), 1e-12)))
            pooled_share.append(float(weights[pooled_at] / max(float(weights[where].sum()), 1e-12)))
            pieces = tok.convert_ids_to_tokens([int(v) for v in top_i[i][step]])
            alternatives.append([(str(p), float(q)) for p, q in zip(pieces, top_p[i][step], strict=True)])
            # the teacher-forced softmax's own probability of the token the answer has at this step
            forced.append(float(chosen[i][step]))
            text = tok.convert_tokens_to_string([piece]) if piece else ""
            p = (
                None
                if probability is None or (isinstance(probability, float) and math.isnan(probability))
                else float(probability)
            )
            tokens.append(ExplainedToken(i, step, int(token_id), str(piece), text, p))

    input_tokens = []
    mask = enc["attention_mask"].cpu().numpy()
    ids_np = input_ids.cpu().numpy()
    for i in range(len(prompts)):
        text_ids = [int(v) for v, m, img in zip(ids_np[i], mask[i], positions[i], strict=True) if m and not img]
        input_tokens.append([str(t) for t in tok.convert_ids_to_tokens(text_ids)])

    layers = len(cross)
    averaged = (
        f"mean of the decoder's cross-attention over all {layers} layer{'s' if layers != 1 else ''} × {heads} head"
        f"{'s' if heads != 1 else ''}, on the {side}×{side} image patches only (the pooled token and the text "
        "prompt left out), renormalised to sum to 1 per token"
    )
    return Explanation(
        task=result.task,
        prompts=prompts,
        model_prompts=list(result.model_prompts or engine.model_prompts(prompts)),
        input_tokens=input_tokens,
        num_image_tokens=num_image,
        grid_side=side,
        tokens=tokens,
        attention=np.stack(grids) if grids else np.zeros((0, side, side), np.float32),
        image_share=np.asarray(image_share, np.float32),
        pooled_share=np.asarray(pooled_share, np.float32),
        alternatives=alternatives,
        forced_probability=forced,
        eye=model_eye(engine, image),
        averaged=averaged,
        layers=layers,
        heads=heads,
        notes=notes,
    )
