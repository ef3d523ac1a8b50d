"""Assemble a ready-to-push Hugging Face Space folder from the repository (no hand-copying).

    python spaces/build_space.py [--out spaces/build]

The folder gets the Space README (front matter), requirements, the entry
``app.py`` and the ``florence_ui`` package (with its bundled example images).
Push it with ``hf upload USER/SPACE spaces/build . --repo-type space``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SPACES = Path(__file__).resolve().parent
ROOT = SPACES.parent
FILES = ("README.md", "requirements.txt", "app.py")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")


def build(out: Path = SPACES / "build") -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(SPACES / name, out / name)
    shutil.copytree(ROOT / "florence_ui", out / "florence_ui", ignore=IGNORE)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=SPACES / "build")
    out = build(parser.parse_args().out)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(path.relative_to(out))


if __name__ == "__main__":
    main()
