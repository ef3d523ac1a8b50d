"""Loading: aliases, device/dtype choice, and clear errors when the weights cannot be had."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from florence_ui import FlorenceEngine, ModelLoadError
from florence_ui.loading import MODEL_ALIASES, resolve_device, resolve_dtype, resolve_model_id

ROOT = Path(__file__).resolve().parents[1]


def test_aliases_name_the_converted_checkpoints():
    assert resolve_model_id("base") == "florence-community/Florence-2-base"
    assert resolve_model_id("large-ft") == "florence-community/Florence-2-large-ft"
    assert set(MODEL_ALIASES) == {"base", "large", "base-ft", "large-ft"}
    assert resolve_model_id("/some/dir") == "/some/dir"


def test_device_and_dtype_defaults_on_this_machine():
    assert resolve_device("auto") == "cpu"  # no GPU here
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        resolve_dtype("int3", "cpu")


def test_missing_local_dir_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as err:
        FlorenceEngine.from_pretrained(str(missing))
    text = str(err.value)
    assert str(missing) in text and "does not exist" in text and "Fix:" in text


def test_incomplete_local_dir_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="not a complete Florence-2 checkpoint"):
        FlorenceEngine.from_pretrained(str(tmp_path))


def test_loads_local_dir_natively_with_sdpa(engine):
    assert type(engine.model).__name__ == "Florence2ForConditionalGeneration"
    assert engine.model.config._attn_implementation == "sdpa"
    assert not engine.model.training


def test_bf16_is_selectable(tiny_checkpoint):
    eng = FlorenceEngine.from_pretrained(str(tiny_checkpoint), dtype="bfloat16")
    assert eng.model.dtype == torch.bfloat16
    from PIL import Image

    assert isinstance(eng.run(Image.new("RGB", (40, 30)), "<CAPTION>", max_new_tokens=4, num_beams=1).text, str)


@pytest.mark.parametrize("model", ["base", "microsoft/not-a-florence-model"])
def test_hub_unreachable_is_a_clear_error_without_traceback(model, tmp_path):
    """With hub access disabled the user gets cause + fix, not a stack trace."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    code = (
        "from florence_ui import FlorenceEngine, ModelLoadError\n"
        f"try:\n    FlorenceEngine.from_pretrained({model!r})\n"
        "except ModelLoadError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert resolve_model_id(model) in out.stdout
    assert "offline" in out.stdout and "HF_HUB_OFFLINE" in out.stdout and "--model DIR" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_unreachable_hub_fails_fast_without_offline_flag(tmp_path):
    """No HF_HUB_OFFLINE, no network: a clear message in seconds, not minutes of retries."""
    import time

    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    env.pop("HF_HUB_OFFLINE", None)
    env["HF_ENDPOINT"] = "https://127.0.0.1:9"  # nothing listens on the discard port: unreachable for sure
    code = (
        "from florence_ui import FlorenceEngine, ModelLoadError\n"
        "try:\n    FlorenceEngine.from_pretrained('base')\n"
        "except ModelLoadError as e:\n    print(e)\n"
    )
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert time.time() - start < 60
    assert "florence-community/Florence-2-base" in out.stdout, out.stdout + out.stderr
    assert "could not be reached" in out.stdout and "HF_HUB_OFFLINE" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_parser_only_engine_parses_but_cannot_run(tiny_checkpoint, golden):
    from PIL import Image

    from florence_ui import InputError

    parser = FlorenceEngine.parser_only(str(tiny_checkpoint))
    assert not parser.can_generate
    vec = next(v for v in golden["vectors"] if v["task"] == "<OD>")
    assert (
        list(parser.parse("<OD>", vec["generated_text"], vec["image_size"]).detections.data["class_name"])[0] == "car"
    )
    with pytest.raises(InputError, match="parse only"):
        parser.run(Image.new("RGB", (8, 8)), "<OD>")
