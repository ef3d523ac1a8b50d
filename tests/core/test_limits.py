"""Resource limits: read from the environment, enforced by the engine and the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from florence_ui.core.limits import Limits, LimitsError
from florence_ui.model.engine import GenerationSettings, InputError
from florence_ui.ui.app import build_app, launch_options

ROOT = Path(__file__).resolve().parents[2]
IMAGE = Image.fromarray(np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8))


def test_defaults_and_environment_overrides():
    assert Limits.from_env({}) == Limits()
    lim = Limits.from_env({"FLORENCE_UI_MAX_BOXES": "5", "FLORENCE_UI_REQUEST_TIMEOUT": "2.5",
                           "FLORENCE_UI_MAX_FILE_SIZE": "2mb"})  # fmt: skip
    assert (lim.max_boxes, lim.request_timeout_s, lim.max_file_size) == (5, 2.5, "2mb")
    with pytest.raises(LimitsError, match="FLORENCE_UI_MAX_BOXES='many' is not a whole number"):
        Limits.from_env({"FLORENCE_UI_MAX_BOXES": "many"})
    with pytest.raises(LimitsError, match="must be positive"):
        Limits.from_env({"FLORENCE_UI_QUEUE_SIZE": "0"})


def test_a_malformed_limit_stops_app_start_with_a_message(tiny_checkpoint):
    proc = subprocess.run([sys.executable, str(ROOT / "app.py"), "--model", str(tiny_checkpoint), "--no-labelstudio"],
                          env={"FLORENCE_UI_MAX_PIXELS": "lots", "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "FLORENCE_UI_MAX_PIXELS='lots' is not a whole number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_box_cap_applies_to_web_requests_not_to_the_engine(engine, monkeypatch):
    from florence_ui.ui.controller import Controller
    from florence_ui.ui.session import UISession

    monkeypatch.setenv("FLORENCE_UI_MAX_BOXES", "3")
    boxes = [[i, i, i + 20, i + 20] for i in range(7)]
    session = UISession()
    session.set_image(IMAGE)
    result = Controller(engine, GenerationSettings(8, 1)).run(session, "<REGION_TO_CATEGORY>", boxes=boxes)
    assert len(result.prompts) == 3 and result.boxes == [[float(v) for v in b] for b in boxes[:3]]
    assert any("7 boxes were given; only the first 3" in note for note in result.notes)
    # the CLI's batch jobs and the Python API take every box
    assert len(engine.run(IMAGE, "<REGION_TO_CATEGORY>", boxes=boxes, max_new_tokens=4, num_beams=1).prompts) == 7


def test_prompt_longer_than_the_encoder_positions_is_refused(engine):
    positions = engine.max_prompt_tokens
    assert positions == engine.model.config.text_config.max_position_embeddings
    text = "x" * (positions + 10)  # the tiny tokenizer has no merges: one token per byte
    with pytest.raises(InputError, match=f"more than the {positions} positions"):
        engine.run(IMAGE, "<CAPTION_TO_PHRASE_GROUNDING>", text=text[:1999], max_new_tokens=4, num_beams=1)


def test_request_time_limit_cuts_the_answer_and_flags_it(engine, monkeypatch):
    monkeypatch.setenv("FLORENCE_UI_REQUEST_TIMEOUT", "0.0001")
    monkeypatch.setattr(engine.model.generation_config, "min_new_tokens", 50)  # the answer would run on for 50+
    result = engine.run(IMAGE, "<OD>", max_new_tokens=200, num_beams=1)
    assert result.truncated is True
    assert max(result.generated_tokens) < 50
    assert any("time limit" in note for note in result.notes)


def test_server_limits_are_wired(engine, monkeypatch):
    monkeypatch.setenv("FLORENCE_UI_QUEUE_SIZE", "7")
    monkeypatch.setenv("FLORENCE_UI_MAX_FILE_SIZE", "3mb")
    demo = build_app(engine)
    assert demo._queue.max_size == 7  # noqa: SLF001 - gradio exposes the queue's size nowhere else
    assert launch_options() == {"max_file_size": "3mb", "run_history": False}
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == "model"]
    assert len(model_events) >= 4 and {fn.concurrency_limit for fn in model_events} == {1}


def test_upload_size_must_be_a_size_gradio_understands():
    assert Limits.from_env({"FLORENCE_UI_MAX_FILE_SIZE": "2gb"}).max_file_size == "2gb"
    for bad in ("50", "1.5gb", "lots"):
        with pytest.raises(LimitsError, match="not a size like 50mb"):
            Limits.from_env({"FLORENCE_UI_MAX_FILE_SIZE": bad})
