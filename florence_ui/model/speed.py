"""CPU speed settings that measured well (see benchmarks/README.md), and the check that keeps them honest.

What is here, and why:

* :func:`native_bf16` / :func:`auto_cpu_dtype`: bf16 only pays on a CPU that
  computes it natively (AVX512-BF16 or AMX); elsewhere PyTorch emulates it and
  it is slower than fp32 *and* changes answers, so ``dtype="auto"`` stays fp32
  there. Where it is native, ``auto`` picks bf16, as it picks fp16 on CUDA.
* :func:`quantize_int8`: dynamic int8 quantisation of the ``nn.Linear`` layers
  (opt-in, ``dtype="int8"``): faster on CPU but it changes answers, which
  :func:`top1_agreement` measures.
* :func:`share_beam_work`: beam search copies a prompt's encoder output once
  per beam, then projects every copy to cross-attention keys/values and
  re-orders those identical copies after every step. The patch projects each
  distinct row once and skips the re-order of the cross-attention cache: the
  same answers, less work (most for several boxes × beams in one call).
* :func:`weight_first_small_gemms`: a decoding step multiplies a handful of
  rows (beams × boxes) by each decoder weight and by the 51 290-word output
  layer. MKL on some CPUs (seen on AMD EPYC) runs ``x @ Wᵀ`` with 2–8 rows up
  to 3× slower than the same product computed as ``(W @ xᵀ)ᵀ``; each layer's
  shape is timed once at load and the weight-first form is used only for row
  counts where it measured clearly faster. Same maths (differences in the last
  float bits, answers unchanged: a test holds it).
* :func:`top1_agreement`: teacher-forced top-1 token agreement of a faster
  variant with the fp32 model, the figure every answer-changing option reports.

Everything tried and dropped (torch.compile, static cache, channels_last, …) is
recorded with its numbers in benchmarks/README.md rather than kept as code.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

#: /proc/cpuinfo flags that mean bf16 matmuls run natively (x86: AVX512-BF16, AMX; Arm: the BF16 extension)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags on Linux (empty elsewhere: we then assume nothing)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


#: ``1`` / ``0`` force what :func:`native_bf16` says about this CPU (unset or ``auto``: read its flags)
CPU_BF16_ENV = "FLORENCE_UI_CPU_BF16"


def native_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether this CPU computes bf16 natively (otherwise bf16 is emulated: slower than fp32).

    ``FLORENCE_UI_CPU_BF16=1`` / ``0`` overrides the flags of this machine (a VM
    that hides or fakes them; the test suite runs once each way), but never
    explicitly given ``flags``, which the rule's own tests pass.
    """
    if flags is None:
        forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
        if forced in ("1", "true", "yes", "on"):
            return True
        if forced in ("0", "false", "no", "off"):
            return False
        if forced not in ("", "auto"):
            raise ValueError(f"{CPU_BF16_ENV}={forced!r}: use 1 (bf16 is native), 0 (it is not) or auto.")
    flags = cpu_flags() if flags is None else flags
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return False  # Apple's CPU matmuls in bf16 go through emulation in PyTorch; MPS is the fast path there
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def auto_cpu_dtype(flags: frozenset[str] | set[str] | None = None) -> Any:
    """``dtype="auto"`` on CPU: bf16 where native, fp32 elsewhere (where bf16 would be slower and less exact)."""
    import torch

    return torch.bfloat16 if native_bf16(flags) else torch.float32


def set_threads(count: int | None) -> None:
    """Use ``count`` CPU threads for torch's own kernels (None or 0: leave torch's default).

    The CLI's ``--threads`` and the Ray workers call this, so only the model layer touches torch.
    """
    if count:
        import torch

        torch.set_num_threads(int(count))


def physical_cores() -> int:
    """Cores this process may use (affinity-aware), the thread count torch uses by default."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8, activations quantised per call).

    Opt-in only: it changes answers (see :func:`top1_agreement`). The DaViT
    convolutions and embeddings stay fp32.
    """
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao, still works
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def top1_agreement(reference: Any, candidate: Any, inputs: dict[str, Any], decoder_input_ids: Any) -> float:
    """Teacher-forced top-1 agreement: the share of answer positions where both models pick the same next token.

    Both models read the same image and prompt and are fed the same answer
    (``decoder_input_ids``, usually the fp32 model's own), so one differing
    pick does not derail the rest of the comparison as free generation would.
    """
    import torch

    def picks(model: Any) -> Any:
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        feed = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        with torch.inference_mode():
            return model(**feed, decoder_input_ids=decoder_input_ids).logits.argmax(-1)

    return float((picks(reference) == picks(candidate)).float().mean())


class DedupRowsLinear:
    """Wraps a cross-attention key/value projection: identical consecutive batch rows are projected once.

    Beam search repeats each prompt's encoder output ``num_beams`` times, so
    the rows come in runs of equal copies; comparing a row with the previous
    kept one costs far less than projecting it (608 tokens × d_model²).
    """

    def __init__(self, forward: Any) -> None:
        self.linear = forward

    def __call__(self, states: Any) -> Any:
        import torch

        if states.dim() != 3 or states.shape[0] < 2:
            return self.linear(states)
        keep, index = [0], [0]
        for row in range(1, states.shape[0]):
            if not torch.equal(states[row], states[keep[-1]]):
                keep.append(row)
            index.append(len(keep) - 1)
        if len(keep) == states.shape[0]:
            return self.linear(states)
        projected = self.linear(states[keep])
        return projected[torch.tensor(index, device=states.device)]


def reorder_self_attention_only(cache: Any, beam_idx: Any) -> Any:
    """Beam re-order for an encoder-decoder cache that leaves the cross-attention half alone.

    Every beam of one prompt holds the same cross-attention keys/values and a
    beam index never leaves its prompt, so re-ordering them moves identical
    rows: a copy of the whole cross cache per step for nothing.
    """
    from transformers.cache_utils import EncoderDecoderCache

    if isinstance(cache, EncoderDecoderCache):
        cache.self_attention_cache.reorder_cache(beam_idx)
    else:
        cache.reorder_cache(beam_idx)
    return cache


def beam_sharing_applies(device: str) -> bool:
    """Whether :func:`share_beam_work` pays on ``device``: on the CPU only.

    Finding the equal rows compares them with ``torch.equal``, whose answer the
    host must read: on CUDA that is a device-to-host sync per projection per
    call, which stalls the GPU's queue and costs more than the saved work.
    """
    return device.split(":")[0] == "cpu"


def share_beam_work(model: Any) -> Any:
    """Patch a loaded Florence-2 so its beams share the encoder-side work (answers unchanged); returns it.

    CPU only (see :func:`beam_sharing_applies`); the loader checks that.
    """
    for layer in model.model.language_model.decoder.layers:
        for proj in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj):
            if not isinstance(proj.forward, DedupRowsLinear):
                proj.forward = DedupRowsLinear(proj.forward)  # the module's own forward, called on distinct rows
    # generate() calls model._reorder_cache, when the model has one, instead of the cache's own reorder_cache
    model._reorder_cache = reorder_self_attention_only  # noqa: SLF001 - generate() calls a model's own _reorder_cache (RAG does)
    return model


#: rows a decoding step multiplies (beams × boxes); prefill and the encoder have hundreds and keep F.linear
SMALL_ROWS = (2, 3, 4, 5, 6, 8, 9, 12, 16, 24)
#: the weight-first form must beat F.linear by this factor to be used (noise must not flip the choice)
MIN_GAIN = 1.25


def _best_ms(fn: Any, reps: int = 3) -> float:
    import time

    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def _weight_first(x2d: Any, weight: Any, bias: Any) -> Any:
    import torch

    out = torch.addmm(bias.unsqueeze(1), weight, x2d.T) if bias is not None else torch.mm(weight, x2d.T)
    return out.T.contiguous()


def faster_rows(weight: Any, bias: Any) -> frozenset[int]:
    """Row counts for which ``(W @ xᵀ)ᵀ`` beat ``F.linear`` by :data:`MIN_GAIN` on this machine, for this shape."""
    import torch
    import torch.nn.functional as F

    rows = set()
    with torch.inference_mode():
        for n in SMALL_ROWS:
            x = torch.randn(n, weight.shape[1], dtype=weight.dtype, device=weight.device)
            plain = _best_ms(lambda x=x: F.linear(x, weight, bias))
            first = _best_ms(lambda x=x: _weight_first(x, weight, bias))
            if plain > first * MIN_GAIN:
                rows.add(n)
    return frozenset(rows)


class WeightFirstLinear:
    """A Linear's forward that takes the weight-first product for the row counts where it measured faster."""

    def __init__(self, module: Any, rows: frozenset[int]) -> None:
        self.module, self.rows, self.plain = module, rows, module.forward

    def __call__(self, x: Any) -> Any:
        weight = self.module.weight
        n = x.numel() // x.shape[-1] if x.dim() else 0
        if n not in self.rows or x.dtype != weight.dtype:
            return self.plain(x)
        return _weight_first(x.reshape(n, x.shape[-1]), weight, self.module.bias).reshape(*x.shape[:-1], -1)


def weight_first_small_gemms(model: Any) -> dict[str, list[int]]:
    """Patch the decoder's Linear layers and the output layer (CPU, float weights); returns what was chosen.

    Each distinct weight shape is timed once (about 2 s at load, most of it the
    output layer); shapes where the plain product is as fast are left alone.
    """
    import torch

    decoder = model.model.language_model.decoder
    modules = [model.lm_head]
    for layer in decoder.layers:
        attn, cross = layer.self_attn, layer.encoder_attn
        modules += [attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, cross.q_proj, cross.out_proj, layer.fc1,
                    layer.fc2]  # fmt: skip
    chosen: dict[tuple, frozenset[int]] = {}
    for module in modules:
        weight = getattr(module, "weight", None)
        if not isinstance(module, torch.nn.Linear) or weight is None or weight.device.type != "cpu":
            continue  # int8-quantised or GPU layers have their own kernels
        if not weight.is_floating_point() or isinstance(module.forward, WeightFirstLinear):
            continue
        key = (tuple(weight.shape), weight.dtype, module.bias is not None)
        if key not in chosen:
            chosen[key] = faster_rows(weight, module.bias)
        if chosen[key]:
            module.forward = WeightFirstLinear(module, chosen[key])
    return {f"{k[0][0]}x{k[0][1]}": sorted(v) for k, v in chosen.items()}
