"""Where the real published Florence-2 outputs live (../shared beside the repo, or FLORENCE_UI_GOLDEN)."""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_PATH = Path(os.environ.get("FLORENCE_UI_GOLDEN", ROOT.parent / "shared" / "golden" / "florence2_outputs.json"))


def load_golden() -> dict:
    return json.loads(GOLDEN_PATH.read_text())
