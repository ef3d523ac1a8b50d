"""GPU part of ``benchmarks/run.py --device cuda``: fp16 variants, the L4 anchor, batched-prompt throughput.

The published anchor is Florence-2 on an NVIDIA L4, greedy, 128 new tokens:
base 652 ms, large 1120 ms. The same case is measured here on whatever GPU
runs it (cold = a new image: vision tower + encoder + decoder), eager fp16 and
with a static KV cache, CUDA graphs and ``torch.compile`` as HF generate offers
them, interleaved like the CPU cases. A variant that fails is reported with
its error instead of stopping the run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from _measure import force_length, interleave, median, random_image, timed
from _report import L4_ANCHOR_MS

from florence_ui import FlorenceEngine
from florence_ui.model.loading import LoadedModel


def _variant(engine: FlorenceEngine, **generation: Any) -> FlorenceEngine:
    """The engine's model under another generation config (weights shared, nothing copied on the GPU)."""
    model = copy.copy(engine.model)
    model.generation_config = copy.deepcopy(engine.model.generation_config)
    for key, value in generation.items():
        setattr(model.generation_config, key, value)
    loaded = LoadedModel(model, engine.processor, engine.model_id, None, engine.device, engine.dtype)
    return FlorenceEngine(loaded)


def run_cuda(
    engine: FlorenceEngine, ckpt: str, size: str, tokens: int, rng: Any, log: Callable[[str], None], repeats: int = 5
) -> dict[str, Any]:
    """Cold greedy latency per variant next to the L4 anchor, and prompts/s for 1, 4 and 16 boxes in one run."""
    from transformers import CompileConfig

    force_length(engine.model, tokens)
    variants: dict[str, FlorenceEngine] = {"eager fp16 (dynamic cache)": engine}
    notes: dict[str, str] = {}
    variants["static cache"] = _variant(engine, cache_implementation="static")
    variants["static cache + torch.compile"] = _variant(
        engine, cache_implementation="static", compile_config=CompileConfig(fullgraph=False, mode="default")
    )
    variants["static cache + CUDA graphs (reduce-overhead)"] = _variant(
        engine, cache_implementation="static", compile_config=CompileConfig(fullgraph=False, mode="reduce-overhead")
    )
    cases: dict[str, Callable[[], Any]] = {}
    for name, variant in list(variants.items()):
        try:  # the first call compiles / captures: time it apart as the one-off cost
            setup, _ = timed(
                lambda v=variant: v.run(random_image(rng), "<CAPTION>", max_new_tokens=tokens, num_beams=1)
            )
            notes[name] = f"first call {setup:.1f} s"
            cases[name] = lambda v=variant: v.run(random_image(rng), "<CAPTION>", max_new_tokens=tokens, num_beams=1)
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a result too
            notes[name] = f"fails: {type(exc).__name__}: {str(exc)[:120]}"
            log(f"{name}: {notes[name]}")
    samples = interleave(cases, repeats, log)
    rows = [
        {"variant": name, "cold_ms": round(1000 * median(samples[name]), 1) if name in samples else None,
         "note": notes.get(name, "")}
        for name in variants
    ]  # fmt: skip
    throughput = []
    boxes = [[10 + 30 * (i % 8), 20 + 40 * (i // 8), 200 + 30 * (i % 8), 260 + 40 * (i // 8)] for i in range(16)]
    for n in (1, 4, 16):
        image = random_image(rng)
        engine.run(image, "<REGION_TO_CATEGORY>", boxes=boxes[:n], max_new_tokens=tokens, num_beams=1)  # warm
        runs = [timed(lambda im=image, b=boxes[:n]: engine.run(im, "<REGION_TO_CATEGORY>", boxes=b,
                                                                max_new_tokens=tokens, num_beams=1))[0]
                for _ in range(3)]  # fmt: skip
        seconds = median(runs)
        throughput.append({"prompts": n, "seconds": round(seconds, 3), "prompts_per_s": round(n / seconds, 2)})
    return {
        "gpu": torch.cuda.get_device_name(0),
        "size": size,
        "new_tokens": tokens,
        "anchor_ms": L4_ANCHOR_MS.get(size),
        "anchor": "NVIDIA L4, greedy, 128 new tokens (published)",
        "variants": rows,
        "throughput": throughput,
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }
