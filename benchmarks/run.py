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
sys.path.insert(0, str(ROOT / "tests" / "support"))  # tiny_florence: the offline checkpoint builder
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import supervision as sv  # noqa: E402
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
    # the recipe at the engine's own dtype (bf16 where auto picks it): the fair per-token decode comparison
    same = ref if engine.dtype == ref.dtype else Reference(str(ckpt), device, dtype=engine.dtype)
    load_s = time.perf_counter() - t0
    for model in {id(m): m for m in (engine.model, ref.model, same.model)}.values():
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

    # the long-output case: decode cost per token (long − short on one cached image, so only decoding differs),
    # for the engine and for the recipe at the engine's dtype, interleaved
    decode = decode_per_token(engine, same, args, rng, log)
    long_s = decode["long_s"]
    log(f"  long output ({args.long_tokens} tokens): {[round(s, 2) for s in long_s]} s")
    first_token = first_token_s(engine, state["cold"], gen, 1 if args.quick else 3)
    log(f"  first visible token (cached image): {first_token:.3f} s")
    tiled = tiled_vs_sequential(engine, rng, gen, args)
    log(f"  tiled {tiled['tiled_s']:.2f} s vs sequential tiles {tiled['sequential_tiles_s']:.2f} s")
    bound = decode_bound(engine, device)

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
        "decode_ms_per_token": decode["engine_ms"],
        "reference_decode_ms_per_token": decode["reference_ms"],
        "decode_reference_dtype": str(same.dtype).replace("torch.", ""),
        "first_token_s": round(first_token, 4),
        **tiled,
        **bound,
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


def decode_per_token(engine: Any, ref: Reference, args: argparse.Namespace, rng: Any, log: Any) -> dict[str, Any]:
    """Milliseconds per generated token, engine and recipe: (long answer − short answer) ÷ extra tokens.

    Both run on one image whose features the engine has cached (the recipe
    recomputes them every call, the same cost in the long and the short run),
    so the difference is decoding alone; long and short alternate.
    """
    image, short, long_ = random_image(rng), args.tokens, args.long_tokens
    runs = {
        "engine_short": lambda: engine.run(image, "<CAPTION>", max_new_tokens=short, num_beams=args.beams),
        "engine_long": lambda: engine.run(image, "<CAPTION>", max_new_tokens=long_, num_beams=args.beams),
        "reference_short": lambda: ref.run(image, "<CAPTION>", short, args.beams),
        "reference_long": lambda: ref.run(image, "<CAPTION>", long_, args.beams),
    }
    lengths = {"engine_short": short, "engine_long": long_, "reference_short": short, "reference_long": long_}
    engine.run(image, "<CAPTION>", max_new_tokens=2, num_beams=args.beams)  # cache the features
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(1 if args.quick else 2):
        for name, fn in runs.items():
            for model in {id(m): m for m in (engine.model, ref.model)}.values():
                force_length(model, lengths[name])
            samples[name].append(timed(fn)[0])
            log(f"  decode {name:<16} {samples[name][-1]:8.3f} s")
    for model in {id(m): m for m in (engine.model, ref.model)}.values():
        force_length(model, short)
    med = {name: median(values) for name, values in samples.items()}
    per = 1000 / (long_ - short)
    return {
        "engine_ms": round(per * (med["engine_long"] - med["engine_short"]), 2),
        "reference_ms": round(per * (med["reference_long"] - med["reference_short"]), 2),
        "long_s": samples["engine_long"],
    }


def first_token_s(engine: Any, image: Any, gen: dict[str, int], repeats: int) -> float:
    """Seconds from ``engine.stream`` on a cached image to the first event holding a generated token."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        stream = engine.stream(image, "<CAPTION>", **gen)
        for event in stream:
            if event.step >= 1 or event.done:
                samples.append(time.perf_counter() - start)
                break
        stream.close()
    return median(samples)


def tiled_vs_sequential(engine: Any, rng: Any, gen: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Tiled detection (tiles + whole image batched: one vision call, one generate) vs the same crops run one by one."""
    from PIL import Image

    size = (1280, 960)
    image = random_image(rng, size)
    slice_wh, overlap = 768, 128
    slicer = sv.InferenceSlicer(callback=lambda _: None, slice_wh=slice_wh, overlap_wh=overlap)
    offsets = slicer._generate_offset(  # noqa: SLF001 - the slicer's own tiling, to run the same crops by hand
        resolution_wh=size, slice_wh=slicer.slice_wh, overlap_wh=slicer.overlap_wh
    )
    crops = [image] + [Image.fromarray(np.asarray(image)[y1:y2, x1:x2]) for x1, y1, x2, y2 in offsets]
    tiled, sequential = [], []
    for _ in range(1 if args.quick else 2):
        tiled.append(timed(lambda: engine.run(image, "<OD>", tile=True, slice_wh=slice_wh, overlap_wh=overlap,
                                              **gen))[0])  # fmt: skip
        sequential.append(timed(lambda: [engine.run(c, "<OD>", use_cache=False, **gen) for c in crops])[0])
    return {
        "tiled_s": round(median(tiled), 4),
        "sequential_tiles_s": round(median(sequential), 4),
        "tiles": len(offsets),
        "tiled_image_wh": list(size),
    }


def decode_bound(engine: Any, device: str) -> dict[str, Any]:
    """The memory floor of one decoding step: the weights it must read ÷ the measured streaming read rate.

    Every step multiplies a few rows (beams × boxes) by every decoder weight and
    the output layer: at a few rows that is a matrix-vector product, bound by
    how fast the weights stream from memory, not by FLOPs.
    """
    model = engine.model
    decoder = model.model.language_model.decoder
    skip = {id(p) for layer in decoder.layers for p in (*layer.encoder_attn.k_proj.parameters(),
                                                        *layer.encoder_attn.v_proj.parameters())}  # fmt: skip
    params = [p for p in decoder.layers.parameters() if id(p) not in skip] + list(model.lm_head.parameters())
    weight_mb = sum(p.numel() * p.element_size() for p in params) / 1e6
    big = torch.ones(64 * 2**20, device=device, dtype=torch.float32)  # 256 MB, far beyond any cache
    rates = []
    for _ in range(5):
        sync(device)
        start = time.perf_counter()
        big.sum()
        sync(device)
        rates.append(big.numel() * 4 / (time.perf_counter() - start) / 1e9)
    bandwidth = max(rates)
    return {
        "decode_weight_mb": round(weight_mb, 1),
        "memory_read_gb_per_s": round(bandwidth, 1),
        "decode_floor_ms_per_token": round(weight_mb / bandwidth, 2),
    }


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
