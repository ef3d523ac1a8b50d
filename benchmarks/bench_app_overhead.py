"""Where the app's own time per request goes, beside the model's (issue 17: app overhead ≤ 5 %).

    python benchmarks/bench_app_overhead.py [--size 640x480] [--repeats 15] [--json OUT.json]

``benchmarks/run.py`` reports ``app_overhead_ratio`` = (``/run_task`` round trip − the engine's own
``total_s``) ÷ round trip. This script splits the app's part into its steps, in one process, on the
tiny test model (the app's work does not depend on the model's size) and a photo-sized noise image
(noise is the worst case for PNG):

* ``open+identity``: reading the upload and hashing its bytes (``UISession.set_image``),
* ``draw``: the supervision annotators (``render.annotate.render_result``),
* ``encode``: the lossless PNG the result image is served as; gradio's own path (``gr.Image(format="png")``
  → PIL at zlib level 6 + a sha256 of the bytes) against :func:`florence_ui.render.annotate.save_png`
  (zlib level 1 written straight into gradio's cache, no second copy),
* ``round trip``: ``/run_task`` through ``gradio_client`` minus the engine's ``total_s``, the figure
  ``run.py`` quotes.

Both encodings are checked to decode to the same pixels (lossless). Ratios of steps measured together,
medians of interleaved repetitions; quote the ratios.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))  # tiny_florence: the offline checkpoint builder


def _median_ms(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return round(1000 * statistics.median(samples), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480", help="image WIDTHxHEIGHT (run.py uses 640x480)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--skip-app", action="store_true", help="only the in-process steps")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from gradio.processing_utils import save_pil_to_cache
    from tiny_florence import build_tiny

    from florence_ui import FlorenceEngine
    from florence_ui.core.images import image_identity, open_image
    from florence_ui.model.engine import GenerationSettings
    from florence_ui.render.annotate import render_result, save_png

    work = Path(tempfile.mkdtemp(prefix="florence-overhead-"))
    engine = FlorenceEngine.from_pretrained(str(build_tiny(work / "tiny")), device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    path = work / "photo.png"
    photo.save(path)
    result = engine.run(photo, "<OD>", max_new_tokens=16, num_beams=1)
    drawn = render_result(photo, result)
    cache = work / "cache"

    gradio_png = save_pil_to_cache(drawn, str(cache), format="png")
    ours = save_png(drawn, cache)
    lossless = np.array_equal(np.asarray(Image.open(gradio_png)), np.asarray(Image.open(ours)))
    steps = {
        "open+identity_ms": lambda: image_identity(open_image(str(path)) and path.read_bytes()),
        "draw_ms": lambda: render_result(photo, result),
        "encode_gradio_png_ms": lambda: save_pil_to_cache(drawn, str(cache), format="png"),
        "encode_save_png_ms": lambda: save_png(drawn, cache),
    }
    figures: dict[str, object] = {name: _median_ms(fn, args.repeats) for name, fn in steps.items()}
    figures["png_bytes_gradio"] = Path(gradio_png).stat().st_size
    figures["png_bytes_save_png"] = Path(ours).stat().st_size
    figures["lossless"] = lossless
    figures["encode_speedup"] = round(figures["encode_gradio_png_ms"] / figures["encode_save_png_ms"], 2)
    # a real photo (noise is incompressible, so zlib's level hardly matters there; on photos it does)
    real = render_result(open_image(str(ROOT / "florence_ui" / "examples" / "rocket.jpg")), result)
    figures["photo_encode_gradio_png_ms"] = _median_ms(lambda: save_pil_to_cache(real, str(cache), format="png"),
                                                       args.repeats)  # fmt: skip
    figures["photo_encode_save_png_ms"] = _median_ms(lambda: save_png(real, cache), args.repeats)
    figures["photo_encode_speedup"] = round(
        figures["photo_encode_gradio_png_ms"] / figures["photo_encode_save_png_ms"], 2
    )

    if not args.skip_app:
        from gradio_client import Client, handle_file

        from florence_ui.labelstudio.server import free_port
        from florence_ui.ui.app import build_app

        demo = build_app(engine, settings=GenerationSettings(16, 1))
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        url = f"http://127.0.0.1:{port}/"
        # gradio_client opens a new httpx client per call (upload, queue join, SSE stream, download) and each
        # builds a TLS context from certifi's bundle, even for http://127.0.0.1: client-side time that
        # run.py's figure counts as the app's. One context handed to it (``ssl_verify`` goes to httpx's
        # ``verify=``, which reuses an SSLContext) shows the server's own share.
        clients = {
            "": Client(url, verbose=False),
            "_one_tls_context": Client(url, verbose=False, ssl_verify=ssl.create_default_context()),
        }
        try:
            e2e: dict[str, list[float]] = {k: [] for k in clients}
            eng: dict[str, list[float]] = {k: [] for k in clients}
            for i in range(args.repeats + 1):
                for key, client in clients.items():  # interleaved
                    image_path = work / f"req{i}{key}.png"
                    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(image_path)
                    start = time.perf_counter()
                    _, out = client.predict(handle_file(str(image_path)), "<CAPTION>", "", [], 16, 1,
                                            api_name="/run_task")  # fmt: skip
                    if i:  # the first call warms the server
                        e2e[key].append(time.perf_counter() - start)
                        eng[key].append(float(out["timings"]["total_s"]))
            for key in clients:
                total, model = statistics.median(e2e[key]), statistics.median(eng[key])
                figures[f"app_e2e_ms{key}"] = round(1000 * total, 1)
                figures[f"app_engine_ms{key}"] = round(1000 * model, 1)
                figures[f"app_overhead_ms{key}"] = round(1000 * (total - model), 1)
        finally:
            demo.close()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
