"""pytest fixtures for the tiny offline SAM: import them where they are needed (or list this module in
``pytest_plugins``). ``segmenter`` uses dtype ``auto``: bf16 where the CPU has it natively
(``FLORENCE_UI_CPU_BF16=1``), fp32 elsewhere; tests must pass in both."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory) -> Path:
    from tiny_sam import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(scope="session")
def segmenter(tiny_sam_checkpoint):
    from florence_ui.model.sam import load_sam

    return load_sam(str(tiny_sam_checkpoint), device="cpu", dtype="auto")
