"""Measuring helpers for ``benchmarks/run.py``: clocks, the machine, the reference recipe, the app.

Kept apart from the harness's orchestration so each piece stays readable. Every
timed case here is a zero-argument callable; :func:`interleave` runs them in
turn, repetition after repetition, because this machine is shared and a burst
of someone else's load must hit every case alike, not one of them.
"""

from __future__ import annotations

import os
import platform
import resource
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call, and what it returned."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleave(cases: dict[str, Callable[[], Any]], repeats: int, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Run every case once per repetition, in turn; the raw seconds per case.

    Medians of interleaved runs are what the harness reports: on a machine
    other jobs share, back-to-back blocks would hand one case all the noise.
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(repeats):
        for name, fn in cases.items():
            seconds, _ = timed(fn)
            samples[name].append(seconds)
            log(f"  rep {rep + 1}/{repeats} {name:<18} {seconds:8.3f} s")
    return samples


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def random_image(rng: np.random.Generator, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A new photo-sized noise image: a new image means a cold feature cache."""
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def cpu_flags() -> list[str]:
    """The SIMD flags that decide CPU speed (fp32 FMA width, native bf16, AMX)."""
    from florence_ui.model.speed import cpu_flags as all_flags

    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx_vnni", "bf16")
    return [f for f in wanted if f in all_flags()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def system_info(device: str) -> dict[str, Any]:
    """What the figures depend on: hardware, threads, library versions, and how busy the machine was."""
    import gradio
    import transformers

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gradio": gradio.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def matmul_peak_gflops(
    dtype: torch.dtype, device: str = "cpu", repeats: int = 5, shapes: list[tuple[int, int, int]] | None = None
) -> dict[str, float]:
    """Best sustained GEMM rate at this dtype and thread count: the ceiling the vision tower is held to.

    Several shapes (square, and the vision MLP's token×768×3072 kind); the
    best median counts as the peak, so an unlucky shape cannot flatter the
    efficiency figure.
    """
    shapes = shapes or [(2048, 2048, 2048), (4096, 1024, 4096), (2304, 768, 3072)]
    rates: dict[str, float] = {}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        for _ in range(2):
            a @ b
        samples = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            a @ b
            sync(device)
            samples.append(time.perf_counter() - start)
        rates[f"{m}x{k}x{n}"] = round(2 * m * k * n / median(samples) / 1e9, 1)
    rates["peak"] = max(rates.values())
    return rates


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def vision_flops(model: Any, pixel_values: torch.Tensor) -> int:
    """FLOPs of one vision tower + projector pass, counted by ``torch.utils.flop_counter`` (2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.get_image_features(pixel_values=pixel_values)
    return int(counter.get_total_flops())


def force_length(model: Any, tokens: int) -> None:
    """Random weights may end an answer at any step: pin every answer to exactly ``tokens`` new tokens."""
    model.generation_config.min_new_tokens = tokens
    model.generation_config.max_new_tokens = tokens


class Reference:
    """The model-card recipe a user would write: plain from_pretrained, fresh processor call, generate, parse.

    A separate model instance from the engine's, loaded the documented way
    (fp32, no feature cache, nothing tuned), so ``engine_over_reference`` shows
    what the engine adds on top of it.
    """

    def __init__(self, checkpoint: str, device: str, dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(checkpoint)
        self.model = Florence2ForConditionalGeneration.from_pretrained(checkpoint, dtype=dtype).to(device).eval()
        self.device, self.dtype = device, dtype

    def run(self, image: Image.Image, task: str, tokens: int, beams: int) -> tuple[dict, list[int]]:
        inputs = self.processor(text=task, images=image, return_tensors="pt").to(self.device, self.dtype)
        with torch.inference_mode():
            ids = self.model.generate(
                input_ids=inputs["input_ids"],
                pixel_values=inputs["pixel_values"],
                max_new_tokens=tokens,
                num_beams=beams,
                do_sample=False,
            )
        text = self.processor.batch_decode(ids, skip_special_tokens=False)[0]
        parsed = self.processor.post_process_generation(text, task=task, image_size=image.size)
        return parsed, ids[0].tolist()


def token_agreement(a: list[int], b: list[int]) -> float:
    """Share of positions where two generated id sequences agree (1.0 = the same answer)."""
    n = max(len(a), len(b))
    return sum(x == y for x, y in zip(a, b, strict=False)) / n if n else 1.0


class AppClient:
    """The app served on 127.0.0.1 over the harness's engine, called through ``gradio_client`` like a user script."""

    def __init__(self, engine: Any, tokens: int, beams: int) -> None:
        import socket

        from gradio_client import Client

        from florence_ui.model.engine import GenerationSettings
        from florence_ui.ui.app import build_app

        self.demo = build_app(engine, settings=GenerationSettings(tokens, beams))
        self.demo.queue(default_concurrency_limit=1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        # one TLS context for every call: gradio_client otherwise builds ~3 per call even for http://127.0.0.1
        # (~66 ms of the client's own, measured by benchmarks/bench_app_overhead.py), which is not the app's time
        self.client = Client(f"http://127.0.0.1:{port}/", verbose=False, ssl_verify=ssl.create_default_context())
        self.tokens, self.beams = tokens, beams
        self.engine_s: list[float] = []

    def run_task(self, image_path: str, task: str = "<CAPTION>") -> dict:
        """One ``/run_task`` round trip; the engine's own seconds are kept for the overhead figure."""
        from gradio_client import handle_file

        _, result = self.client.predict(
            handle_file(image_path), task, "", [], self.tokens, self.beams, api_name="/run_task"
        )
        self.engine_s.append(float(result["timings"]["total_s"]))
        return result

    def close(self) -> None:
        self.client.close() if hasattr(self.client, "close") else None
        self.demo.close()
