"""Workspace speed at dataset size: a 1,000-image review store, the page's queries side by side in one run.

Builds a workspace in a temp folder through the public API only (small
generated PNGs added with ``add_images``, about 10 hand-drawn regions each with
a model-like score, a few already reviewed), then measures, interleaved (every
case once per repetition, in turn) with medians, what the page does:

* opening the workspace file (``Workspace(path)``: connect, WAL, schema check),
* the queue: ``images()``, ``images(has_pending=True)``, ``images(label=...)``,
  ``images(low_confidence_first=True)``, ``progress()``,
* moving to the next image (``regions(next_id)``), one review action
  (``set_status`` of one region), the change mark a page polls,
* ``thumbnail``: first request (decode + resize + store) vs cached.

No model runs: this is the store's cost alone. Figures are milliseconds; the
machine's load average is printed beside them (see benchmarks/README.md).

Usage: python benchmarks/bench_workspace.py [--images 1000] [--regions 10] [--repeats 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from florence_ui.workspace import Workspace  # noqa: E402

LABELS = ("car", "wheel", "door", "person", "tree", "window", "sign", "bicycle")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def png(i: int, rng: random.Random) -> bytes:
    """A small distinct picture (its bytes are its identity, so each must differ)."""
    image = Image.new("RGB", (320, 240), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    image.putpixel((i % 320, (i // 320) % 240), (i % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def build(folder: Path, n_images: int, n_regions: int, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """A workspace of ``n_images`` files with ``n_regions`` scored regions each, some reviewed; build timings."""
    rng = random.Random(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    paths = []
    for i in range(n_images):
        path = images / f"{i:05d}.png"
        path.write_bytes(png(i, rng))
        paths.append(path)
    path = folder / "bench.sqlite3"
    timings: dict[str, Any] = {}
    with Workspace(path) as ws:
        for name in LABELS:
            ws.add_label(name)
        started = time.perf_counter()
        report = ws.add_images(paths)
        timings["add_images_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        ids_with_scores = []
        for image_id in report.ids:
            for _ in range(n_regions):
                x, y = rng.uniform(0, 250), rng.uniform(0, 180)
                region = ws.add_region(image_id, [x, y, x + rng.uniform(10, 70), y + rng.uniform(10, 60)],
                                       rng.choice(LABELS), status="pending")  # fmt: skip
                ids_with_scores.append((round(rng.uniform(0.05, 0.99), 4), region.id))
        timings["add_regions_s"] = round(time.perf_counter() - started, 3)
        for image_id in report.ids[: n_images // 3]:  # a third of the queue already reviewed
            ws.accept_above(image_id, 0.0, include_unscored=True)
    # scores as a model run would give them (hand-drawn regions have none; a bench may write the column directly)
    with sqlite3.connect(path) as conn:
        conn.executemany("UPDATE regions SET score = ? WHERE id = ?", ids_with_scores)
    return path, timings


def interleave(cases: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Every case once per repetition, in turn (as benchmarks/_measure.py does, without its torch import)."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def measure(path: Path, repeats: int) -> dict[str, Any]:
    ws = Workspace(path)
    ids = [s.id for s in ws.images()]
    pending = [r for r in ws.regions(ids[-1]) if r.status == "pending"]
    cursor = {"i": 0, "thumb": 0}

    def next_image() -> None:
        cursor["i"] = (cursor["i"] + 1) % len(ids)
        ws.regions(ids[cursor["i"]])

    def set_status() -> None:
        region = pending[cursor["i"] % len(pending)]
        ws.set_status(region.id, "accepted" if cursor["i"] % 2 else "pending")

    def thumbnail_first() -> None:
        cursor["thumb"] += 1
        ws.thumbnail(ids[cursor["thumb"] % len(ids)], 160)  # a new image every time: decode + resize + store

    def opened() -> None:
        Workspace(path).close()

    ws.thumbnail(ids[0], 128)
    cases = {
        "open": opened,
        "images()": ws.images,
        "images(has_pending=True)": lambda: ws.images(has_pending=True),
        "images(label='car')": lambda: ws.images(label="car"),
        "images(low_confidence_first=True)": lambda: ws.images(low_confidence_first=True),
        "images(unmatched=True)": lambda: ws.images(unmatched=True),
        "progress()": ws.progress,
        "regions(next_id)": next_image,
        "set_status (one region)": set_status,
        "change_mark()": ws.change_mark,
        "thumbnail (first call)": thumbnail_first,
        "thumbnail (cached)": lambda: ws.thumbnail(ids[0], 128),
    }
    # what the Workspace tab does per action: the whole redraw (editor value, cards, queue window with its
    # thumbnails, progress line) on opening, on N (next image) and on a queue filter
    from florence_ui.ui import workspace_view as view

    page = view.WorkspaceState(name="bench", image_id=ids[0])
    view.render(ws, page)  # the queue window's first thumbnails are made here, once

    def page_next() -> None:
        try:
            view.act(ws, page, {"act": "next"})
        except Exception:  # noqa: BLE001 - the end of the queue: start again
            view.go_to(page, ids[0])
        view.render(ws, page)

    def page_filter() -> None:
        page.queue_filter = "pending" if page.queue_filter == "all" else "all"
        view.render(ws, page, editor=False)

    cases |= {"page: open (whole redraw)": lambda: view.render(ws, view.WorkspaceState(name="bench")),
              "page: next image (N) + redraw": page_next, "page: queue filter + redraw": page_filter}  # fmt: skip
    samples = interleave(cases, repeats)
    ws.close()
    return {name: {"median_ms": round(statistics.median(v) * 1000, 3), "min_ms": round(min(v) * 1000, 3),
                   "max_ms": round(max(v) * 1000, 3)} for name, v in samples.items()}  # fmt: skip


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Workspace of {meta['images']} images × {meta['regions_per_image']} regions "
             f"({meta['file_mb']} MB file), median of {meta['repeats']} interleaved repeats, "
             f"load average {meta['load_before']} → {meta['load_after']}, {meta['cpu_count']} CPUs, "
             f"SQLite {meta['sqlite']}.", "", "| case | median ms | min ms | max ms |", "|---|---:|---:|---:|"]  # fmt: skip
    for name, figures in results.items():
        lines.append(f"| `{name}` | {figures['median_ms']:.2f} | {figures['min_ms']:.2f} | {figures['max_ms']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--regions", type=int, default=10, help="regions per image")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-workspace-") as tmp:
        log(f"building {args.images} images × {args.regions} regions in {tmp} ...")
        path, build_timings = build(Path(tmp), args.images, args.regions)
        log(f"built: {build_timings}; measuring ...")
        results = measure(path, args.repeats)
        file_mb = round(sum(f.stat().st_size for f in Path(tmp).glob("bench.sqlite3*")) / 1e6, 2)
    meta = {"images": args.images, "regions_per_image": args.regions, "repeats": args.repeats, "file_mb": file_mb,
            "build": build_timings, "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()],
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}  # fmt: skip
    print(markdown(results, meta))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "cases": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
