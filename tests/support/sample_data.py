"""Sample inputs shared by test modules in different folders: a folder of real photos, golden results files.

They live here (tests/support is on sys.path) rather than in one test module, so any test folder can use
them whatever subset of the suite runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "florence_ui" / "examples"
#: a plausible colour per golden image, so the written stand-in pictures differ
COLOURS = {"beetle": (40, 160, 150), "car": (200, 190, 60), "australia": (90, 90, 200), "book_cover": (30, 30, 30)}


def make_photo_folder(root: Path, *, extras: bool = True) -> Path:
    """Real photos (the bundled examples) in nested folders, plus the awkward cases.

    ``extras`` adds a corrupt JPEG, a text file and a 1-pixel image.
    """
    folder = root / "photos"
    (folder / "nested").mkdir(parents=True)
    photos = sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".png"))
    if len(photos) < 3:  # the examples moved: fall back to generated pictures
        rng = np.random.default_rng(0)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (90 + 10 * i, 120, 3), dtype=np.uint8)).save(folder / f"gen{i}.png")
    for i, photo in enumerate(photos):
        shutil.copy(photo, (folder / "nested" if i % 2 else folder) / photo.name)
    if extras:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
        (folder / "notes.txt").write_text("not an image")
        Image.new("RGB", (1, 1), (200, 30, 30)).save(folder / "nested" / "pixel.png")
        (folder / ".hidden").mkdir()
        Image.new("RGB", (8, 8)).save(folder / ".hidden" / "skip.png")
    return folder


def write_golden_jsonl(golden: dict, folder: Path, tasks: tuple[str, ...] | None = None) -> Path:
    """Golden answers as results lines; images of the right sizes; every third line leaves out the size."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "results.jsonl"
    with open(out, "w") as fh:
        for i, vec in enumerate(golden["vectors"]):
            if tasks and vec["task"] not in tasks:
                continue
            image = folder / f"{vec['image']}.png"
            if not image.exists():
                Image.new("RGB", tuple(vec["image_size"]), COLOURS.get(vec["image"], (128, 128, 128))).save(image)
            line = {"image": str(image), "width": vec["image_size"][0], "height": vec["image_size"][1],
                    "task": vec["task"], "text_input": vec["text_input"], "boxes": None,
                    "generated_text": vec["generated_text"], "model": vec["model"]}  # fmt: skip
            if i % 3 == 0:
                del line["width"], line["height"]
            fh.write(json.dumps(line) + "\n")
    return out
