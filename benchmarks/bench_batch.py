"""Batch predict throughput, local vs Ray Data, side by side in one run (images/s and the ratio).

Builds a random-weight Florence-2 offline (``--size tiny`` for the test model,
``base``/``large`` for the real architectures' compute), writes ``--images``
copies of the bundled example photos, and runs the same jobs through

* local, one image per call (``--batch-size 1``),
* local, batched (``--batch-size N``: one vision call + one generate per task per batch),
* Ray Data on a local Ray (``map_batches`` with an actor pool of ``--workers`` models),

reporting wall-clock images/s including model load / actor start-up (what a user
waits for) and compute images/s (model time only, see :func:`measure`).

Usage: python benchmarks/bench_batch.py [--size tiny|base|large] [--images 48] [--batch-size 8]
       [--tokens 16] [--beams 1] [--workers N] [--threads N] [--tasks OD CAPTION] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # tiny_florence: the offline checkpoint builder
sys.path.insert(0, str(ROOT))

from florence_ui import FlorenceEngine, GenerationSettings  # noqa: E402
from florence_ui.batch.runner import TaskRequest, find_images, local_outcomes, make_jobs  # noqa: E402


def photos(folder: Path, count: int) -> list[str]:
    examples = sorted(p for p in (ROOT / "florence_ui" / "examples").glob("*") if p.suffix in (".jpg", ".png"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = examples[i % len(examples)]
        shutil.copy(src, folder / f"{i:05d}{src.suffix}")
    found, _ = find_images([folder], lambda _msg: None)
    return found


def measure(name: str, make_outcomes, n_images: int, parallel: int = 1) -> dict:
    """Consume an outcome stream: wall-clock images/s from before the model load, and compute images/s.

    Compute time is the sum of the lines' ``seconds`` (each line's share of its
    batch's model time) divided by the number of models working in parallel: the
    rate once start-up is paid. Ray returns results in bursts, so timing arrivals
    would not show it.
    """
    started = time.perf_counter()
    images, lines, failed, busy = 0, 0, 0, 0.0
    first = None
    for outcome in make_outcomes():
        first = first or time.perf_counter()
        images += 1
        lines += len(outcome.lines)
        failed += len(outcome.failures)
        busy += sum(line.get("seconds") or 0.0 for line in outcome.lines)
    wall = time.perf_counter() - started
    compute = images / (busy / parallel) if busy > 0 else 0.0
    row = {"variant": name, "images": images, "lines": lines, "failed": failed, "wall_s": round(wall, 2),
           "images_per_s": round(images / wall, 3), "compute_images_per_s": round(compute, 3),
           "first_result_s": round(first - started, 2) if first else None}  # fmt: skip
    assert images == n_images and not failed, row
    print(f"{name:<24} {row['images_per_s']:>7.2f} img/s wall ({wall:6.1f} s, first result after "
          f"{row['first_result_s']} s)  {compute:7.2f} img/s compute", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "base", "large"], default="tiny")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16, help="max_new_tokens (random weights rarely stop early)")
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=["<OD>", "<CAPTION>"])
    parser.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of the local engine (default: torch's)"
    )
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from tiny_florence import build_full_size, build_tiny

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = GenerationSettings(args.tokens, args.beams).checked()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt"
        build_tiny(ckpt) if args.size == "tiny" else build_full_size(ckpt, size=args.size)
        images = photos(Path(tmp) / "images", args.images)
        jobs, _ = make_jobs(images, [TaskRequest(t) for t in args.tasks], None)
        print(f"{len(images)} images × {len(args.tasks)} tasks ({' '.join(args.tasks)}), Florence-2 {args.size} "
              f"random weights, max_new_tokens={args.tokens}, beams={args.beams}, {os.cpu_count()} CPUs, "
              f"local torch threads={torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip

        def local(batch_size: int):
            def run():
                engine = FlorenceEngine.from_pretrained(str(ckpt), device=args.device, cache_size=0)
                yield from local_outcomes(engine, jobs, settings, batch_size=batch_size)

            return run

        warm = FlorenceEngine.from_pretrained(str(ckpt), device=args.device, cache_size=0)
        for _ in local_outcomes(warm, jobs[: 2 * len(args.tasks)], settings, batch_size=2):
            pass  # first calls pay one-off kernel set-up; keep it out of the first variant
        del warm
        rows = [measure("local batch=1", local(1), len(images)),
                measure(f"local batch={args.batch_size}", local(args.batch_size), len(images))]  # fmt: skip
        if not args.skip_ray:
            import ray

            from florence_ui.batch.ray_runner import ray_outcomes

            t0 = time.perf_counter()
            ray.init(include_dashboard=False, logging_level="warning")
            ray_start = time.perf_counter() - t0
            print(f"(ray.init took {ray_start:.1f} s, not counted below)", flush=True)
            workers = args.workers or int(ray.cluster_resources().get("CPU", 1))

            def on_ray():
                return ray_outcomes(jobs, settings, model=str(ckpt), device=args.device,
                                    batch_size=args.batch_size, workers=workers)  # fmt: skip

            rows.append(measure(f"ray batch={args.batch_size} x{workers}", on_ray, len(images), parallel=workers))
            ray.shutdown()
            local_best = rows[1]
            ratio = rows[-1]["images_per_s"] / local_best["images_per_s"]
            compute = rows[-1]["compute_images_per_s"] / max(local_best["compute_images_per_s"], 1e-9)
            print(f"ray / local(batch={args.batch_size}): {ratio:.2f}x wall-clock, {compute:.2f}x compute", flush=True)
        batch_gain = rows[1]["images_per_s"] / rows[0]["images_per_s"]
        print(f"local batch={args.batch_size} / batch=1: {batch_gain:.2f}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
