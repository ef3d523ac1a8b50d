"""SAM refinement latency: cold (image encoder + decoder) vs cached (decoder only), next to Florence-2's own times.

SAM's compute does not depend on its weight values, so full-size architectures
built from ``SamConfig`` with random weights are honest stand-ins: SAM-ViT-B
(``sam-base``: 12 layers, width 768, 1024 px input) and SlimSAM-50 (``slimsam``:
the same depth at width 384), saved and loaded through the product's own
:func:`florence_ui.model.sam.load_sam`. Beside them, Florence-2-base (random
weights, answers pinned to a fixed length) through ``FlorenceEngine.run``: a new
image (cold) and a second prompt on the same image (cached features).

Cases, interleaved (every case once per repetition, in turn), medians:

* ``refine_cold``: N boxes on a new image → one encoder pass + one decoder call;
* ``refine_cached``: the same N boxes again on the same image → decoder only;
* ``click_cold`` / ``click_cached``: one click (multimask, best of 3), new / same image;
* ``florence_cold`` / ``florence_cached``: ``<OD>`` on a new / the same image.

Printed ratios (the figures to quote; single timings depend on the machine's load):
``cached_over_cold`` per SAM and prompt kind, ``sam_cold_over_florence_cold``,
``sam_cached_over_florence_cached`` and ``slimsam_over_sam_base`` (cold).

Usage: python benchmarks/bench_sam.py [--quick] [--boxes 8] [--repeats 3] [--json out.json] [--sams sam-base,slimsam]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # tiny_sam / tiny_florence: the offline checkpoint builders
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _measure import force_length, interleave, median, peak_rss_mb, random_image, system_info  # noqa: E402

SAM_SIZES = {"sam-base": "base", "slimsam": "slimsam"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def boxes_for(n: int, size: tuple[int, int], rng: np.random.Generator) -> list[list[float]]:
    """``n`` plausible detection boxes inside a ``size`` image."""
    width, height = size
    out = []
    for _ in range(n):
        x1, y1 = rng.uniform(0, width * 0.6), rng.uniform(0, height * 0.6)
        out.append([x1, y1, x1 + rng.uniform(40, width * 0.4), y1 + rng.uniform(40, height * 0.4)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repetition, 4 boxes, 16 tokens (about a minute)")
    parser.add_argument("--boxes", type=int, default=8, help="boxes per refine call (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--tokens", type=int, default=32, help="Florence-2 answer length, fixed (default 32)")
    parser.add_argument("--beams", type=int, default=3, help="Florence-2 beams (default 3, the app's)")
    parser.add_argument("--sams", default="sam-base,slimsam", help="which SAM architectures (sam-base, slimsam)")
    parser.add_argument("--no-florence", action="store_true", help="skip the Florence-2 cases")
    parser.add_argument("--dtype", default="float32", help="dtype of both models (default float32)")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.boxes, args.tokens = 1, min(args.boxes, 4), min(args.tokens, 16)

    from tiny_sam import build_full_size

    from florence_ui.core.tasks import DEFAULT_TASK
    from florence_ui.model.sam import load_sam

    rng = np.random.default_rng(0)
    size = (640, 480)
    boxes = boxes_for(args.boxes, size, rng)
    click = [(size[0] * 0.4, size[1] * 0.5)]
    state: dict[str, Any] = {}

    def new(key: str):
        state[key] = random_image(rng, size)
        return state[key]

    cases: dict[str, Any] = {}
    params: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sam-") as tmp:
        for name in [s.strip() for s in args.sams.split(",") if s.strip()]:
            started = time.perf_counter()
            folder = build_full_size(Path(tmp) / name, size=SAM_SIZES[name])
            seg = load_sam(str(folder), device="cpu", dtype=args.dtype, cache_size=4, lazy=False)
            params[name] = sum(p.numel() for p in seg_model_parameters(seg))
            log(
                f"{name}: built and loaded in {time.perf_counter() - started:.1f} s ({params[name] / 1e6:.1f} M params)"
            )
            seg.segment(random_image(rng, size), boxes=boxes[:1])  # warm-up: first-call allocations
            key = name
            cases[f"{key}_refine_cold"] = lambda seg=seg, key=key: seg.segment(new(key), boxes=boxes)
            cases[f"{key}_refine_cached"] = lambda seg=seg, key=key: seg.segment(state[key], boxes=boxes)
            cases[f"{key}_click_cold"] = lambda seg=seg, key=key: seg.segment(new(key + "c"), points=click)
            cases[f"{key}_click_cached"] = lambda seg=seg, key=key: seg.segment(state[key + "c"], points=click)
        engine = None
        if not args.no_florence:
            from tiny_florence import build_full_size as build_florence

            from florence_ui.model.engine import FlorenceEngine

            started = time.perf_counter()
            folder = build_florence(Path(tmp) / "florence-base", size="base")
            engine = FlorenceEngine.from_pretrained(str(folder), device="cpu", dtype=args.dtype, cache_size=4)
            force_length(engine.model, args.tokens)
            log(f"florence-2-base: built and loaded in {time.perf_counter() - started:.1f} s")
            gen = {"num_beams": args.beams, "max_new_tokens": args.tokens}
            engine.run(random_image(rng, size), DEFAULT_TASK.token, **gen)  # warm-up
            cases["florence_cold"] = lambda: engine.run(new("f"), DEFAULT_TASK.token, **gen)
            cases["florence_cached"] = lambda: engine.run(state["f"], DEFAULT_TASK.token, **gen)
        # a cached case needs its image: the cold case of the same key runs first in every repetition
        samples = interleave(cases, args.repeats, log)
    med = {name: round(median(values), 4) for name, values in samples.items()}
    ratios: dict[str, float] = {}
    for name in params:
        for kind in ("refine", "click"):
            ratios[f"{name}_{kind}_cached_over_cold"] = round(
                med[f"{name}_{kind}_cached"] / med[f"{name}_{kind}_cold"], 4
            )
        if "florence_cold" in med:
            ratios[f"{name}_cold_over_florence_cold"] = round(med[f"{name}_refine_cold"] / med["florence_cold"], 4)
            ratios[f"{name}_cached_over_florence_cached"] = round(
                med[f"{name}_refine_cached"] / med["florence_cached"], 4
            )
    if {"sam-base", "slimsam"} <= set(params):
        ratios["slimsam_over_sam_base_cold"] = round(med["slimsam_refine_cold"] / med["sam-base_refine_cold"], 4)
    figures = {
        "about": "medians in seconds; random weights, full-size architectures; quote the ratios",
        "image_size": list(size),
        "boxes_per_refine": args.boxes,
        "florence_tokens": args.tokens,
        "florence_beams": args.beams,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "sam_params": params,
        "seconds": med,
        "ratios": ratios,
        "peak_rss_mb": peak_rss_mb(),
        "system": system_info("cpu"),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


def seg_model_parameters(seg: Any) -> Any:
    """The loaded SAM's parameters, through the segmenter's public ``model`` property."""
    return seg.model.parameters()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
