"""Shared fixtures of the workspace tests: a weights-free parser and golden results files (real answers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_data import write_golden_jsonl

from florence_ui.batch.results_file import load_parser

#: golden tasks whose answers are category boxes: what a labeller accepts into COCO
BOX_TASKS = ("<OD>", "<OPEN_VOCABULARY_DETECTION>")


@pytest.fixture(scope="session")
def parser(tiny_checkpoint):
    """The tiny checkpoint's processor: re-parses the golden answers exactly as the real one (no weights)."""
    return load_parser(str(tiny_checkpoint))


@pytest.fixture
def golden_jsonl(golden, tmp_path) -> Path:
    return write_golden_jsonl(golden, tmp_path / "golden")


@pytest.fixture
def box_jsonl(golden, tmp_path) -> Path:
    return write_golden_jsonl(golden, tmp_path / "boxes", tasks=BOX_TASKS)
