"""Shared fixtures: the tiny offline Florence-2, the golden outputs, real photos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from golden_data import GOLDEN_PATH, ROOT

ARTIFACTS = ROOT / "test-artifacts"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def golden() -> dict:
    if not GOLDEN_PATH.exists():
        pytest.fail(f"golden outputs not found at {GOLDEN_PATH} (../shared must sit beside the repo)")
    return json.loads(GOLDEN_PATH.read_text())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from tiny_florence import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-florence2"))


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    from florence_ui import FlorenceEngine

    # fp32 explicitly: dtype "auto" is bf16 on CPUs with native bf16, and these tests hold exact numerics
    return FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


pytest_plugins = ["ls_fixtures", "sam_fixtures"]
