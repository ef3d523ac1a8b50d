"""CPU speed experiments for ``benchmarks/run.py --experiments``: each variant against fp32 eager, interleaved.

Every idea from the benchmark issue is tried here the same way: a variant
engine next to the baseline engine, the same case timed alternately (new image
each time), medians, and the variant's answers checked against fp32 (teacher-
forced top-1 agreement for numeric changes; the generated ids for the rest).
What wins is kept in ``florence_ui/model/speed.py`` / ``loading.py``; what loses is
recorded with its numbers in benchmarks/README.md.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
from _measure import force_length, interleave, median, random_image, timed, token_agreement

from florence_ui import FlorenceEngine
from florence_ui.model.loading import LoadedModel
from florence_ui.model.speed import physical_cores, quantize_int8, top1_agreement


def _engine_like(base: FlorenceEngine, model: Any, dtype: torch.dtype | None = None) -> FlorenceEngine:
    loaded = LoadedModel(model, base.processor, base.model_id, None, base.device, dtype or base.dtype)
    return FlorenceEngine(loaded)


@contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _decode_threads(model: Any, small: int) -> Callable[[], None]:
    """Run the decoder (tiny matmuls) on ``small`` threads and everything else on all: returns the undo."""
    big = physical_cores()
    decoder = model.model.language_model.decoder
    handles = [
        decoder.register_forward_pre_hook(lambda *_: torch.set_num_threads(small)),
        decoder.register_forward_hook(lambda *_: torch.set_num_threads(big)),
    ]
    return lambda: [h.remove() for h in handles]


def _inputs(engine: FlorenceEngine, image: Any, task: str) -> dict[str, Any]:
    enc = engine.text_inputs([task])
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "pixel_values": engine.pixel_values(image),
    }


def run_experiments(
    engine: FlorenceEngine, ckpt: str, tokens: int, beams: int, repeats: int, rng: Any, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Measure every variant against ``engine`` (fp32 eager); one row per variant and case."""
    gen = dict(max_new_tokens=tokens, num_beams=beams)
    base_model = engine.model
    probe = random_image(rng)
    inputs = _inputs(engine, probe, "<CAPTION>")
    base_answer = engine.run(probe, "<CAPTION>", use_cache=False, **gen)
    base_ids = [i for i, _, _ in base_answer.output_tokens[0]]
    decoder_ids = torch.tensor([[base_model.generation_config.decoder_start_token_id] + base_ids[:-1]])

    def cold(e: FlorenceEngine) -> Callable[[], Any]:
        return lambda: e.run(random_image(rng), "<CAPTION>", use_cache=False, **gen)

    def vision(e: FlorenceEngine) -> Callable[[], Any]:
        pixels = e.pixel_values(probe)

        def call() -> None:
            with torch.inference_mode():
                e.model.get_image_features(pixel_values=pixels)

        return call

    rows: list[dict[str, Any]] = []

    def compare(name: str, case: str, variant: Callable[[], Any], baseline: Callable[[], Any], **extra: Any) -> None:
        samples = interleave({"baseline": baseline, name: variant}, repeats, log)
        b, v = median(samples["baseline"]), median(samples[name])
        row = {"variant": name, "case": case, "variant_s": round(v, 3), "baseline_s": round(b, 3),
               "speedup": round(b / v, 3), **extra}  # fmt: skip
        rows.append(row)
        log(f"{name}: {row}")

    def answers(e: FlorenceEngine, numeric: bool) -> dict[str, float]:
        out = {"same_answer": token_agreement(base_ids, [i for i, _, _ in e.run(probe, "<CAPTION>", use_cache=False,
                                                                                  **gen).output_tokens[0]])}  # fmt: skip
        if numeric:
            out["top1_agreement"] = round(top1_agreement(base_model, e.model, inputs, decoder_ids), 4)
        return out

    # 1. threads: every core vs one (on a shared machine each parallel region waits for its slowest thread)
    cores = physical_cores()

    def at(n: int) -> Callable[[], None]:
        def call() -> None:
            with _threads(n):
                cold(engine)()

        return call

    if cores > 1:
        compare("threads=1", f"cold run (vs {cores} threads)", at(1), at(cores), top1_agreement=1.0)

        # 2. decoder (matmuls of a few rows) on one thread, vision + encoder on every core
        def hybrid() -> None:
            off = _decode_threads(base_model, 1)
            try:
                at(cores)()
            finally:
                off()

        compare("decoder threads=1", f"cold run (vs {cores} threads)", hybrid, at(cores), top1_agreement=1.0)

    # 3. the exact patches load_model applies (speed.share_beam_work, and on CPU speed.weight_first_small_gemms)
    #    vs a plain transformers model
    from transformers import Florence2ForConditionalGeneration

    plain = _engine_like(engine, Florence2ForConditionalGeneration.from_pretrained(ckpt).eval())
    force_length(plain.model, tokens)
    boxes = [[20, 30, 200, 300], [220, 40, 420, 260], [60, 250, 300, 470], [400, 200, 630, 470]]

    def four(e: FlorenceEngine) -> Callable[[], Any]:
        return lambda: e.run(random_image(rng), "<REGION_TO_CATEGORY>", boxes=boxes, **gen)

    compare(
        "exact patches: share beam work + weight-first GEMMs (kept)",
        "cold run",
        cold(engine),
        cold(plain),
        same_answer=answers(plain, False)["same_answer"],
    )
    compare("exact patches: share beam work + weight-first GEMMs (kept)", "4 boxes, one run", four(engine), four(plain))
    del plain

    # 4. static KV cache (no compile)
    static = _engine_like(engine, copy.copy(base_model))
    static.model.generation_config = copy.deepcopy(base_model.generation_config)
    static.model.generation_config.cache_implementation = "static"
    try:
        compare("static cache", "cold run", cold(static), cold(engine), **answers(static, numeric=False))
    except Exception as exc:  # noqa: BLE001 - an experiment that cannot run is a result too
        rows.append({"variant": "static cache", "case": "cold run", "verdict": f"fails: {type(exc).__name__}: {exc}"})

    # 5. channels_last convolution weights (DaViT convs), vision only
    cl = _engine_like(engine, copy.deepcopy(base_model).to(memory_format=torch.channels_last))
    compare("channels_last", "vision tower", vision(cl), vision(engine), **answers(cl, numeric=True))
    del cl

    # 6. int8 dynamic quantisation of the Linear layers
    q = _engine_like(engine, quantize_int8(copy.deepcopy(base_model)))
    force_length(q.model, tokens)
    compare("int8 dynamic (Linear)", "cold run", cold(q), cold(engine), **answers(q, numeric=True))
    compare("int8 dynamic (Linear)", "vision tower", vision(q), vision(engine))
    del q

    # 7. bf16 weights and activations (emulated on a CPU without native bf16)
    bf = _engine_like(engine, copy.deepcopy(base_model).to(torch.bfloat16), torch.bfloat16)
    compare("bf16", "cold run", cold(bf), cold(engine), **answers(bf, numeric=True))
    del bf

    # 8. torch.compile of the vision tower (inductor), compile time counted separately
    # a deep copy: copy.copy of an nn.Module shares its _modules dict, so the baseline would be compiled too
    comp = _engine_like(engine, copy.deepcopy(base_model))
    comp.model.model.vision_tower = torch.compile(comp.model.model.vision_tower)
    try:
        setup, _ = timed(vision(comp))
        compare("torch.compile vision", "vision tower", vision(comp), vision(engine), setup_s=round(setup, 1),
                **answers(comp, numeric=True))  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        rows.append({"variant": "torch.compile vision", "case": "vision tower", "verdict": f"fails: {exc}"})
    return rows
