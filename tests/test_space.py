"""The Space folder is self-consistent, installs, launches and answers /run_task."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import gradio
import pytest
import yaml

from florence_ui.ls_server import free_port

ROOT = Path(__file__).resolve().parents[1]
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


def test_zerogpu_wrapper_uses_spaces_gpu_when_present(monkeypatch, engine):
    from florence_ui import zerogpu

    calls = []

    def GPU(duration=60):  # the stand-in for the `spaces` package's decorator
        def deco(fn):
            def inner(*a, **k):
                calls.append(duration)
                return fn(*a, **k)

            return inner

        return deco

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.delenv("FLORENCE_MODEL", raising=False)
    assert zerogpu.on_zerogpu() and zerogpu.default_model() == "large"
    original = engine.run
    try:
        zerogpu.wrap_engine(engine, duration=30)
        from PIL import Image

        engine.run(Image.new("RGB", (32, 32)), "<CAPTION>", max_new_tokens=3, num_beams=1)
        assert calls == [30]
    finally:
        engine.run = original


def test_zerogpu_wrapper_is_a_noop_without_spaces(monkeypatch):
    from florence_ui import zerogpu

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
