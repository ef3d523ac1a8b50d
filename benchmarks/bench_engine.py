"""Cold vs cached image features, and batched vs sequential boxes, side by side in one run.

Builds Florence-2-base (or -large) architecture with random weights offline
(same compute as the real checkpoint; its answers are noise, so every run
generates exactly ``--tokens`` tokens, ``min_new_tokens`` forces it) and times, alternating the variants so
machine noise hits both:

* cold: a prompt on a new image (vision tower + encoder + decoder), vs
  cached: a second prompt on the same image (features from the cache);
* sequential: N region prompts one ``generate`` each, vs
  batched: the same N prompts as one ``generate`` sharing the features.

Usage: python benchmarks/bench_engine.py [--size base|large] [--tokens 32] [--boxes 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiny_florence import build_full_size  # noqa: E402

from florence_ui import FlorenceEngine  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["base", "large"], default="base")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer (fixed: random weights)")
    parser.add_argument("--boxes", type=int, default=4)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_full_size(Path(tmp) / "ckpt", size=args.size)
        engine = FlorenceEngine.from_pretrained(str(Path(tmp) / "ckpt"), device=args.device, dtype=args.dtype)
        build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in engine.model.parameters()) / 1e6
    # random weights may emit the end token at any step; force every answer to the same length
    engine.model.generation_config.min_new_tokens = args.tokens
    gen = dict(max_new_tokens=args.tokens, num_beams=args.beams)
    rng = np.random.default_rng(0)
    boxes = [[20 + 40 * i, 30, 200 + 40 * i, 300] for i in range(args.boxes)]
    # warm-up (allocator, kernels)
    warm = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    engine.run(warm, "<CAPTION>", **gen)
    engine.run(warm, "<REGION_TO_CATEGORY>", boxes=boxes, **gen)

    cold, cached, sequential, batched = [], [], [], []
    for _ in range(args.repeats):
        image = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
        engine.clear_cache()
        cold.append(timed(lambda im=image: engine.run(im, "<CAPTION>", **gen)))
        cached.append(timed(lambda im=image: engine.run(im, "<DETAILED_CAPTION>", **gen)))
        sequential.append(
            timed(lambda im=image: [engine.run(im, "<REGION_TO_CATEGORY>", boxes=[b], **gen) for b in boxes])
        )
        batched.append(timed(lambda im=image: engine.run(im, "<REGION_TO_CATEGORY>", boxes=boxes, **gen)))
    vision = timed(lambda: engine.image_features(warm, use_cache=False))

    med = statistics.median
    figures = {
        "model": f"Florence-2-{args.size} architecture, random weights ({params:.0f} M params)",
        "device": engine.device,
        "dtype": engine.dtype_name,
        "threads": torch.get_num_threads(),
        "new_tokens": args.tokens,
        "beams": args.beams,
        "boxes": args.boxes,
        "repeats": args.repeats,
        "build_and_load_s": round(build_s, 1),
        "vision_tower_s": round(vision, 3),
        "cold_s": round(med(cold), 3),
        "cached_s": round(med(cached), 3),
        "cached_speedup": round(med(cold) / med(cached), 2),
        "sequential_s": round(med(sequential), 3),
        "batched_s": round(med(batched), 3),
        "batched_speedup": round(med(sequential) / med(batched), 2),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
