"""The Space folder is self-consistent, installs, launches and answers /run_task."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import gradio
import pytest
import yaml

from florence_ui.labelstudio.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "spaces"


def _front_matter() -> dict:
    text = (SPACES / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_front_matter_is_complete_and_matches_gradio():
    meta = _front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == gradio.__version__
    assert meta["app_file"] == "app.py" and (SPACES / meta["app_file"]).exists()
    assert str(meta["python_version"]).startswith("3.")
    assert meta["license"] == "mit" and meta["title"] and meta["emoji"]
    assert "florence-community/Florence-2-base" in meta["models"]
    assert "florence-community/Florence-2-large" in meta["models"]


def test_space_requirements_resolve():
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "-q", "-r", str(SPACES / "requirements.txt")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]


def test_build_assembles_the_folder(tmp_path):
    sys.path.insert(0, str(SPACES))
    try:
        from build_space import build
    finally:
        sys.path.remove(str(SPACES))
    out = build(tmp_path / "space")
    for name in ("README.md", "requirements.txt", "app.py", "florence_ui/__init__.py", "florence_ui/ui/app.py"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("__pycache__"))


class _ZeroGPU:
    """Stands in for the ``spaces`` package (ZeroGPU cannot run here): sizes each slot as the platform does.

    Like ``spaces.GPU``, ``duration`` may be a number or a function of the
    call's own arguments; a call that outlives its slot is what the platform
    kills, so it is recorded as a platform error.
    """

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.overran: list[float] = []

    def GPU(self, duration=60):  # noqa: N802 - the package's own name
        def deco(fn):
            def inner(*a, **k):
                slot = duration(*a, **k) if callable(duration) else duration
                self.slots.append(slot)
                started = time.monotonic()
                out = fn(*a, **k)
                if time.monotonic() - started > slot:
                    self.overran.append(time.monotonic() - started)
                return out

            return inner

        return deco


def test_zerogpu_wrapper_uses_spaces_gpu_when_present(monkeypatch, engine):
    from florence_ui import GenerationSettings
    from florence_ui.model import zerogpu

    platform = _ZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", platform)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.delenv("FLORENCE_MODEL", raising=False)
    assert zerogpu.on_zerogpu() and zerogpu.default_model() == "large"
    original, original_texts = engine.run, engine.run_texts
    try:
        zerogpu.wrap_engine(engine, duration=30)
        from PIL import Image

        engine.run(Image.new("RGB", (32, 32)), "<CAPTION>", max_new_tokens=3, num_beams=1)
        assert platform.slots == [30]
        # one text per class in one call (detect the label set, the MCP detect_classes tool): a slot too
        engine.run_texts(Image.new("RGB", (32, 32)), "<OPEN_VOCABULARY_DETECTION>", ["car", "dog"],
                         settings=GenerationSettings(3, 1))  # fmt: skip
        assert platform.slots == [30, 30]
    finally:
        engine.run, engine.run_texts = original, original_texts


def test_zerogpu_slots_grow_with_the_work_and_stay_within_bounds(monkeypatch):
    from florence_ui import GenerationSettings
    from florence_ui.model import zerogpu

    monkeypatch.delenv("FLORENCE_UI_ZEROGPU_MAX_S", raising=False)
    short = zerogpu.slot_seconds(None, "<OD>", settings=GenerationSettings(32, 1))
    long = zerogpu.slot_seconds(None, "<OD>", settings=GenerationSettings(1024, 3))
    boxes = zerogpu.slot_seconds(None, "<REGION_TO_CATEGORY>", None, [[0, 0, 5, 5]] * 64,
                                 settings=GenerationSettings(1024, 3))  # fmt: skip
    assert zerogpu.MIN_SLOT_S <= short < long <= boxes <= zerogpu.MAX_SLOT_S
    monkeypatch.setenv("FLORENCE_UI_ZEROGPU_MAX_S", "45")
    assert zerogpu.slot_seconds(None, "<REGION_TO_CATEGORY>", None, [[0, 0, 5, 5]] * 64) == 45
    monkeypatch.delenv("FLORENCE_UI_ZEROGPU_MAX_S")
    one = zerogpu.texts_slot_seconds(None, "<OPEN_VOCABULARY_DETECTION>", ["car"], settings=GenerationSettings(1024, 3))
    many = zerogpu.texts_slot_seconds(None, "<OPEN_VOCABULARY_DETECTION>", ["car"] * 64,
                                      settings=GenerationSettings(1024, 3))  # fmt: skip
    assert zerogpu.MIN_SLOT_S <= one < many <= zerogpu.MAX_SLOT_S  # one row per text, like boxes


def test_a_long_answer_on_zerogpu_is_cut_at_the_time_limit_not_killed_by_the_platform(monkeypatch, engine):
    """The generation time limit sits below the slot, whatever FLORENCE_UI_REQUEST_TIMEOUT says (180 s here)."""
    from PIL import Image

    from florence_ui.model import zerogpu

    platform = _ZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", platform)
    monkeypatch.setenv("FLORENCE_UI_REQUEST_TIMEOUT", "180")
    monkeypatch.setattr(zerogpu, "SLOT_MARGIN_S", 2)  # a 3 s slot: generation must stop after 1 s
    original, original_texts = engine.run, engine.run_texts
    min_new = engine.model.generation_config.min_new_tokens
    engine.model.generation_config.min_new_tokens = 1024  # the tiny model would stop early otherwise
    try:
        zerogpu.wrap_engine(engine, duration=3)
        boxes = [[i, i, 40 + i, 40 + i] for i in range(16)]  # 16 boxes × 8 beams × 1024 tokens: far beyond 3 s here
        result = engine.run(Image.new("RGB", (64, 64)), "<REGION_TO_CATEGORY>", None, boxes, max_new_tokens=1024,
                            num_beams=8, use_cache=False)  # fmt: skip
    finally:
        engine.run, engine.run_texts = original, original_texts
        engine.model.generation_config.min_new_tokens = min_new
    assert platform.slots == [3] and not platform.overran
    assert result.truncated and any("time limit" in note and "slot" in note for note in result.notes)
    assert result.timings["generate_s"] < 3


def test_zerogpu_wrapper_is_a_noop_without_spaces(monkeypatch):
    from florence_ui.model import zerogpu

    monkeypatch.setitem(sys.modules, "spaces", None)  # import fails
    monkeypatch.delenv("FLORENCE_MODEL", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def f():
        return 1

    assert zerogpu.gpu(f) is f
    assert zerogpu.default_model() == "base"  # no GPU here
    monkeypatch.setenv("FLORENCE_MODEL", "large-ft")
    assert zerogpu.default_model() == "large-ft"


@pytest.fixture
def built_space(tmp_path):
    sys.path.insert(0, str(SPACES))
    try:
        from build_space import build
    finally:
        sys.path.remove(str(SPACES))
    return build(tmp_path / "space")


def test_space_entry_launches_and_answers_run_task(built_space, tiny_checkpoint, tmp_path):
    """Run the assembled Space's app.py as the Space would, then call /run_task."""
    from gradio_client import Client, handle_file
    from PIL import Image

    port = free_port()
    env = dict(os.environ, FLORENCE_MODEL=str(tiny_checkpoint), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH="")  # fmt: skip
    env.pop("SPACES_ZERO_GPU", None)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=built_space, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(1)
        image = tmp_path / "photo.png"
        Image.new("RGB", (96, 64), (30, 120, 200)).save(image)
        client = Client(url, verbose=False)
        annotated, results = client.predict(
            handle_file(str(image)), "<REGION_TO_DESCRIPTION>", "", "[[4, 4, 40, 40], [50, 10, 90, 60]]",
            api_name="/run_task",
        )  # fmt: skip
        assert Path(annotated).exists()
        payload = results if isinstance(results, dict) else __import__("json").loads(results)
        assert payload["task"] == "<REGION_TO_DESCRIPTION>" and len(payload["regions"]) == 2
        # the Space's florence_ui is the assembled copy, not the repository's
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
