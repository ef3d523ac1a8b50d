"""Loading: aliases, device/dtype choice, and clear errors when the weights cannot be had."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from florence_ui import FlorenceEngine, ModelLoadError
from florence_ui.model.loading import MODEL_ALIASES, resolve_device, resolve_dtype, resolve_model_id

ROOT = Path(__file__).resolve().parents[2]


def test_aliases_name_the_converted_checkpoints():
    assert resolve_model_id("base") == "florence-community/Florence-2-base"
    assert resolve_model_id("large-ft") == "florence-community/Florence-2-large-ft"
    assert set(MODEL_ALIASES) == {"base", "large", "base-ft", "large-ft"}
    assert resolve_model_id("/some/dir") == "/some/dir"


def test_device_and_dtype_defaults_follow_the_rule():
    """The rule, not this machine's answer: auto on CPU is bf16 exactly where bf16 is native (or forced so)."""
    from florence_ui.model.speed import native_bf16

    assert resolve_device("auto") == "cpu"  # no GPU on the machines this suite runs on
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native_bf16() else torch.float32)
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("auto", "mps") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("float32", "cpu") == torch.float32
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        resolve_dtype("int3", "cpu")


@pytest.mark.parametrize(("forced", "expected"), [("1", torch.bfloat16), ("0", torch.float32)])
def test_cpu_bf16_can_be_forced_either_way(forced, expected, monkeypatch):
    """FLORENCE_UI_CPU_BF16 decides what auto means on this CPU, whatever its flags say (the suite runs both ways)."""
    monkeypatch.setenv("FLORENCE_UI_CPU_BF16", forced)
    assert resolve_dtype("auto", "cpu") == expected
    assert resolve_dtype("auto", "cuda") == torch.float16  # the override is about CPUs only


def test_a_malformed_cpu_bf16_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("FLORENCE_UI_CPU_BF16", "maybe")
    with pytest.raises(ModelLoadError, match="FLORENCE_UI_CPU_BF16"):
        resolve_dtype("auto", "cpu")


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
    assert engine.model.config._attn_implementation == "sdpa"  # noqa: SLF001 - transformers keeps the choice only there
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


# ---- is the Hub reachable? asked through huggingface_hub's own session (proxies, HF_ENDPOINT) -------------
class _Recorder(BaseHTTPRequestHandler):
    """Answers every request 200 and records its request line: a hub mirror, or an HTTP proxy."""

    seen: list[str] = []

    def _answer(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"{}")

    do_GET = do_HEAD = _answer

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh_hub_session(monkeypatch):
    """huggingface_hub's client reads proxy variables when it is made: make a new one for this test."""
    from huggingface_hub.utils import close_session

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    close_session()
    yield monkeypatch
    close_session()


def test_a_hub_mirror_on_another_port_is_reachable(recorder, fresh_hub_session):
    """HF_ENDPOINT on a port other than 443 (a mirror) is asked, not a socket on port 443."""
    from huggingface_hub import constants

    from florence_ui.model.loading import hub_reachable

    fresh_hub_session.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{recorder.server_port}")
    assert hub_reachable(timeout=5)
    assert any("/api/models" in line for line in _Recorder.seen)


def test_the_hub_is_reachable_through_a_mandatory_proxy(recorder, fresh_hub_session):
    """The endpoint's name resolves nowhere here; only the proxy can reach it, as behind a corporate proxy."""
    from huggingface_hub import constants

    from florence_ui.model.loading import hub_reachable

    fresh_hub_session.setattr(constants, "ENDPOINT", "http://hub.florence-ui.invalid")
    fresh_hub_session.setenv("HTTP_PROXY", f"http://127.0.0.1:{recorder.server_port}")
    assert hub_reachable(timeout=5)
    assert any(line.startswith("HEAD http://hub.florence-ui.invalid/api/models") for line in _Recorder.seen)


def test_an_unreachable_hub_is_reported_in_seconds(fresh_hub_session):
    from huggingface_hub import constants

    from florence_ui.labelstudio.server import free_port
    from florence_ui.model.loading import _hub_options, hub_reachable

    fresh_hub_session.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    fresh_hub_session.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    assert not hub_reachable(timeout=2)
    assert _hub_options("florence-community/Florence-2-base") == {"local_files_only": True}  # cache first
    assert time.monotonic() - started < 10
