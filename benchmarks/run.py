"""Florence-2 latency harness: the engine against the model-card recipe, side by side in one process.

Florence-2's compute does not depend on its weight values, so the full-size
base / large architecture built from its config with random weights (DaViT
widths, 6+6 / 12+12 BART layers, 768×768 input, 577 image tokens) is an honest
stand-in for timing; every answer is pinned to the same length with
``min_new_tokens = max_new_tokens``. Cases run interleaved, several
repetitions, medians, and the figures that matter are ratios of cases measured
together, because this kind of machine is shared and only ratios survive its
noise. See benchmarks/README.md for every key.

Usage:
  python benchmarks/run.py [--size base|large] [--device cpu|cuda] [--quick] --json OUT.json
                           [--markdown OUT.md] [--plot OUT.png] [--experiments]
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
sys.path.insert(0, str(ROOT / "tests"))  # tiny_florence: the offline checkpoint builder
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _measure import (  # noqa: E402
    AppClient,
    Reference,
    force_length,
    interleave,
    matmul_peak_gflops,
    median,
    peak_rss_mb,
    random_image,
    sync,
    system_info,
    timed,
    token_agreement,
    vision_flops,
)
from _report import judge, markdown, plot, ratios  # noqa: E402

from florence_ui import FlorenceEngine  # noqa: E402

BOXES = [[20, 30, 200, 300], [220, 40, 420, 260], [60, 250, 300, 470], [400, 200, 630, 470]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["base", "large", "tiny"], default="base", help="tiny: the test model")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", default="auto", help="engine dtype (auto: fp32 on CPU without native bf16, fp16 on CUDA)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions: about 5 minutes for base on 2 cores")
    p.add_argument("--tokens", type=int, default=None, help="new tokens per answer (default 32; 128 on cuda)")
    p.add_argument("--beams", type=int, default=3, help="beams for every case (3 = Florence-2's default)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default 3 quick, 5 full)")
    p.add_argument(
        "--long-tokens", type=int, default=None, help="output length of the long-output case (128 quick, 256)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    p.add_argument("--model-dir", type=Path, help="use this checkpoint instead of building one")
    p.add_argument("--skip-app", action="store_true", help="leave out the end-to-end app case")
    p.add_argument("--experiments", action="store_true", help="also measure the CPU speed experiments (slow)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, f"--device cuda: PyTorch {torch.__version__} sees no CUDA GPU (no GPU, no driver, or a CPU-only "
                  "build of torch). Run with --device cpu, or on an NVIDIA GPU with a CUDA build of torch.\n")  # fmt: skip
    if args.threads:
        torch.set_num_threads(args.threads)
    args.tokens = args.tokens or (128 if args.device == "cuda" else 32)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.long_tokens = args.long_tokens or (128 if args.quick else 256)
    if args.long_tokens <= args.tokens:
        p.error("--long-tokens must be larger than --tokens (the decode cost is their difference)")
    return args


def build_checkpoint(args: argparse.Namespace, tmp: Path) -> Path:
    if args.model_dir:
        return args.model_dir
    from tiny_florence import build_full_size, build_tiny

    out = tmp / f"florence2-{args.size}"
    return build_tiny(out) if args.size == "tiny" else build_full_size(out, size=args.size)


def measure(args: argparse.Namespace, ckpt: Path) -> dict[str, Any]:
    """Every case of the issue, interleaved; raw medians and samples."""
    device, tokens, beams = args.device, args.tokens, args.beams
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    engine = FlorenceEngine.from_pretrained(str(ckpt), device=device, dtype=args.dtype)
    ref = Reference(str(ckpt), device, dtype=torch.float16 if device == "cuda" else torch.float32)
    load_s = time.perf_counter() - t0
    for model in (engine.model, ref.model):
        force_length(model, tokens)
    gen = dict(max_new_tokens=tokens, num_beams=beams)
    log(f"loaded engine + reference in {load_s:.1f} s ({torch.get_num_threads()} threads); warming up")
    warm = random_image(rng)
    # warm-up (allocator, kernels, code paths) at a short length: it has nothing to measure
    for model in (engine.model, ref.model):
        force_length(model, min(tokens, 4))
    ref.run(warm, "<CAPTION>", min(tokens, 4), beams)
    engine.run(warm, "<CAPTION>", max_new_tokens=min(tokens, 4), num_beams=beams)
    engine.run(warm, "<REGION_TO_CATEGORY>", boxes=BOXES, max_new_tokens=min(tokens, 4), num_beams=beams)
    engine.clear_cache()
    for model in (engine.model, ref.model):
        force_length(model, tokens)
    log("warm; checking the engine's answer against the recipe's, counting FLOPs, measuring the matmul peak")

    # same image, same prompt: does the engine answer what the recipe answers?
    check = random_image(rng)
    _, ref_ids = ref.run(check, "<CAPTION>", tokens, beams)
    mine = engine.run(check, "<CAPTION>", use_cache=False, **gen)
    agreement = token_agreement(ref_ids[1:], [i for i, _, _ in mine.output_tokens[0]])

    pixels = engine.pixel_values(warm)
    flops = vision_flops(engine.model, pixels)
    small = [(256, 256, 256), (512, 256, 512)] if args.size == "tiny" else None  # the test model: keep it quick
    peaks = matmul_peak_gflops(engine.dtype, device, shapes=small)
    m, k, n = (int(v) for v in max((s for s in peaks if s != "peak"), key=peaks.get).split("x"))
    a = torch.randn(m, k, device=device).to(engine.dtype)
    b = torch.randn(k, n, device=device).to(engine.dtype)

    app = None
    if not args.skip_app:
        app = AppClient(engine, tokens, beams)
        app_images = Path(tempfile.mkdtemp(prefix="florence-bench-"))
        warm.save(app_images / "warm.png")
        app.run_task(str(app_images / "warm.png"))
        app.engine_s.clear()

    state: dict[str, Any] = {}

    def new_image(key: str) -> Any:
        state[key] = random_image(rng)
        return state[key]

    def vision() -> None:
        with torch.inference_mode():
            engine.model.get_image_features(pixel_values=pixels)
        sync(device)

    def matmul() -> None:
        for _ in range(3):
            a @ b
        sync(device)

    def app_case() -> None:
        path = app_images / f"{len(app.engine_s)}.png"
        random_image(rng).save(path)
        app.run_task(str(path))

    cases = {
        "reference_cold": lambda: ref.run(new_image("ref"), "<CAPTION>", tokens, beams),
        "engine_cold": lambda: engine.run(new_image("cold"), "<CAPTION>", **gen),
        "engine_cached": lambda: engine.run(state["cold"], "<DETAILED_CAPTION>", **gen),
        "engine_batch4": lambda: engine.run(new_image("box"), "<REGION_TO_CATEGORY>", boxes=BOXES, **gen),
        "sequential4": lambda: [
            engine.run(state["box"], "<REGION_TO_CATEGORY>", boxes=[box], use_cache=False, **gen) for box in BOXES
        ],
        "vision": vision,
        "matmul": matmul,
    }
    if app:
        cases["app_e2e"] = app_case
    log(f"measuring {len(cases)} cases × {args.repeats} repetitions, interleaved")
    samples = interleave(cases, args.repeats, log)
    if app:
        app.close()

    # the long-output case: decode cost per token, next to a cold run of the usual length
    force_length(engine.model, args.long_tokens)
    long_reps = 1 if args.quick else 2
    long_s = [timed(lambda: engine.run(random_image(rng), "<CAPTION>", max_new_tokens=args.long_tokens,
                                       num_beams=beams))[0] for _ in range(long_reps)]  # fmt: skip
    force_length(engine.model, tokens)
    log(f"  long output ({args.long_tokens} tokens): {[round(s, 2) for s in long_s]} s")

    med = {name: median(values) for name, values in samples.items()}
    fig: dict[str, Any] = {
        "reference_cold_s": med["reference_cold"],
        "engine_cold_s": med["engine_cold"],
        "engine_cached_s": med["engine_cached"],
        "engine_batch4_s": med["engine_batch4"],
        "sequential4_s": med["sequential4"],
        "vision_s": med["vision"],
        "vision_gflop": round(flops / 1e9, 1),
        "vision_gflops_per_s": round(flops / med["vision"] / 1e9, 1),
        "matmul_peak_gflops": round(3 * 2 * m * k * n / med["matmul"] / 1e9, 1),
        "matmul_sweep_gflops": peaks,
        "long_output_tokens": args.long_tokens,
        "long_output_s": median(long_s),
        "decode_ms_per_token": round(1000 * (median(long_s) - med["engine_cold"]) / (args.long_tokens - tokens), 2),
        "engine_reference_token_agreement": round(agreement, 4),
        "load_s": round(load_s, 1),
        "samples_s": {k: [round(v, 4) for v in vs] for k, vs in samples.items()},
    }
    if app:
        fig["app_e2e_s"] = med["app_e2e"]
        fig["app_engine_s"] = median(app.engine_s)
    fig.update(device=engine.device, dtype=engine.dtype_name)
    fig["params_m"] = round(sum(p.numel() for p in engine.model.parameters()) / 1e6)
    if args.experiments and device == "cpu":
        from _experiments import run_experiments

        del ref
        fig["experiments"] = run_experiments(engine, str(ckpt), tokens, beams, args.repeats, rng, log)
    if device == "cuda":
        from _cuda import run_cuda

        fig["cuda"] = run_cuda(engine, str(ckpt), args.size, args.tokens, rng, log)
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    info = system_info(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ckpt = build_checkpoint(args, Path(tmp))
        build_s = time.perf_counter() - t0
        log(f"checkpoint {ckpt} ready in {build_s:.1f} s")
        fig = measure(args, ckpt)
    fig["settings"] = {
        "size": args.size, "new_tokens": args.tokens, "beams": args.beams, "repeats": args.repeats,
        "quick": args.quick, "params_m": fig.pop("params_m"), "boxes": len(BOXES), "build_s": round(build_s, 1),
    }  # fmt: skip
    fig["system"] = info
    fig["system"]["load_average_1m_end"] = system_info(args.device)["load_average_1m"]
    fig["threads"] = info["threads"]
    fig["cpu_flags"] = info["cpu_flags"]
    fig.update(ratios(fig))
    fig["targets_met"] = judge(fig)
    fig["peak_rss_mb"] = peak_rss_mb()
    fig["wall_s"] = round(time.perf_counter() - started, 1)
    for key, value in list(fig.items()):
        if isinstance(value, float):
            fig[key] = round(value, 4)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(fig, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(fig))
    if args.plot:
        plot(fig, args.plot)
    log(markdown(fig))
    log(f"done in {fig['wall_s']} s → {args.json}")
    return fig


if __name__ == "__main__":
    main()
