"""``florence-ui predict / download / tasks`` as a user runs them (subprocess where signals matter).

predict runs the tiny offline Florence-2 over a folder of real photos with a
corrupt file, a text file and a 1-pixel image in it; the lines must follow the
documented schema, failures must be reported and skipped, and a run stopped by
SIGTERM or SIGKILL must leave a valid file that a re-run completes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sample_data import make_photo_folder

from florence_ui.batch.results_file import line_key, read_lines
from florence_ui.cli import main

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--num-beams", "1", "--max-new-tokens", "8"]
SCHEMA = {
    "image": str, "width": int, "height": int, "task": str, "text_input": (str, type(None)),
    "boxes": (list, type(None)), "generated_text": (str, list), "model": str,
}  # fmt: skip


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "florence_ui", *args], capture_output=True, text=True,
                          env=_env(env), timeout=timeout, cwd=ROOT)  # fmt: skip


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env |= extra or {}
    return env


def lines_of(path: Path) -> list[dict]:
    report = read_lines(path)
    assert not report.bad and not report.torn_tail
    return report.lines


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photo_folder(tmp_path_factory.mktemp("cli"))


def test_predict_folder_writes_documented_lines_and_reports_failures(photos, tiny_checkpoint, tmp_path):
    out = tmp_path / "results.jsonl"
    args = ["predict", str(photos), "--task", "<OD>", "--task", "caption", "--task", "<OPEN_VOCABULARY_DETECTION>",
            "--text", "a cat", "--model", str(tiny_checkpoint), "--batch-size", "3", "--out", str(out), *FAST]  # fmt: skip
    run = cli(*args)
    assert run.returncode == 1, run.stderr  # finished, with one failed image
    assert "Traceback" not in run.stderr
    assert "notes.txt" in run.stderr  # the non-image was skipped with a warning
    images = [p for p in photos.rglob("*") if p.suffix in (".jpg", ".png") and ".hidden" not in p.parts]
    good = [p for p in images if p.name != "broken.jpg"]
    lines = lines_of(out)
    assert len(lines) == 3 * len(good)
    assert {(Path(line["image"]).name, line["task"]) for line in lines} == {
        (p.name, t) for p in good for t in ("<OD>", "<CAPTION>", "<OPEN_VOCABULARY_DETECTION>")
    }
    for line in lines:
        for key, kind in SCHEMA.items():
            assert isinstance(line[key], kind), (key, line[key])
        assert Path(line["image"]).is_absolute()
        with Image.open(line["image"]) as im:
            assert (line["width"], line["height"]) == im.size
        assert line["text_input"] == ("a cat" if line["task"] == "<OPEN_VOCABULARY_DETECTION>" else None)
        assert line["model"] == str(tiny_checkpoint)
        assert len(line["scores"]) == line["num_regions"]
        assert isinstance(line["truncated"], bool) and line["seconds"] >= 0
    assert any(line["width"] == 1 and line["height"] == 1 for line in lines)  # the 1-pixel image
    summary = run.stdout
    assert f"{len(lines)} done, 0 skipped" in summary and "1 failed" in summary
    assert "broken.jpg" in summary
    failed = [json.loads(t) for t in (tmp_path / "results.failed.jsonl").read_text().splitlines()]
    assert [Path(f["image"]).name for f in failed] == ["broken.jpg"] and failed[0]["error"]

    # resume: nothing left but the broken file, the lines are untouched
    before = out.read_bytes()
    main([*args, "--quiet"])
    assert out.read_bytes() == before


def test_interrupted_runs_leave_valid_files_and_resume_completes(tmp_path, tiny_checkpoint):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    out = tmp_path / "r.jsonl"
    args = ["predict", str(folder), "--task", "OD", "--task", "CAPTION", "--model", str(tiny_checkpoint),
            "--batch-size", "1", "--out", str(out), "--num-beams", "1", "--max-new-tokens", "16"]  # fmt: skip

    def start_and_wait(min_lines: int) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "florence_ui", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") >= min_lines:
                return proc
            time.sleep(0.05)
        proc.kill()
        pytest.fail(f"predict did not get to {min_lines} lines: {proc.communicate()[1][-2000:]}")

    proc = start_and_wait(4)
    proc.send_signal(signal.SIGTERM)  # like Ctrl-C: stop at a line boundary, print the summary
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Interrupted" in stdout and "Traceback" not in stderr
    after_term = lines_of(out)
    assert 4 <= len(after_term) < 48

    proc = start_and_wait(len(after_term) + 4)
    proc.kill()  # SIGKILL: no handler runs; every finished line must already be on disk
    proc.communicate(timeout=60)
    report = read_lines(out)
    assert not report.bad and len(report.lines) >= len(after_term) + 4
    with open(out, "a") as fh:  # what a kill in the middle of a write leaves
        fh.write('{"image": "' + str(folder / "img23.png") + '", "task": "<OD>", "gener')

    assert main([*args, "--quiet", "--batch-size", "8"]) == 0
    final = lines_of(out)
    keys = [line_key(line) for line in final]
    assert len(final) == 48 and len(set(keys)) == 48  # every (image, task) once, none lost, none twice


def test_predict_usage_errors_exit_2_without_traceback(tmp_path, tiny_checkpoint, capsys):
    out = str(tmp_path / "r.jsonl")
    photo = str(tmp_path / "p.png")
    Image.new("RGB", (20, 20)).save(photo)
    assert main(["predict", photo, "--task", "NOPE", "--out", out]) == 2
    assert "Unknown Florence-2 task" in capsys.readouterr().err
    assert main(["predict", photo, "--task", "<OPEN_VOCABULARY_DETECTION>", "--out", out]) == 2
    assert "needs --text" in capsys.readouterr().err
    assert main(["predict", photo, "--task", "<REGION_TO_OCR>", "--out", out]) == 2
    assert "needs --boxes" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nothing-here"), "--task", "OD", "--out", out, "--quiet"]) == 2
    assert "no images found" in capsys.readouterr().err


def test_two_runs_on_one_results_file_are_refused(tmp_path, capsys):
    from florence_ui.batch.results_file import JsonlWriter

    photo = tmp_path / "p.png"
    Image.new("RGB", (20, 20)).save(photo)
    out = tmp_path / "r.jsonl"
    with JsonlWriter(out, lock=True):
        assert main(["predict", str(photo), "--task", "OD", "--out", str(out), "--quiet"]) == 2
    assert "being written by another florence-ui run" in capsys.readouterr().err


def test_model_load_failure_prints_the_message_and_exits_2(tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.new("RGB", (20, 20)).save(photo)
    code = main(["predict", str(photo), "--task", "OD", "--model", str(tmp_path / "no-model"),
                 "--out", str(tmp_path / "r.jsonl"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "Could not load Florence-2 model" in err and "Fix:" in err
    assert "Traceback" not in err


def test_download_offline_is_a_clear_error(tmp_path):
    run = cli("download", "base", "--to", str(tmp_path / "ckpt"), env={"HF_HUB_OFFLINE": "1"}, timeout=120)
    assert run.returncode == 2
    assert "Could not download Florence-2 model 'florence-community/Florence-2-base'" in run.stderr
    assert "HF_HUB_OFFLINE" in run.stderr and "Fix:" in run.stderr
    assert "Traceback" not in run.stderr


def test_download_unreachable_hub_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    from florence_ui.model.download import download
    from florence_ui.model.loading import ModelLoadError

    endpoint = "http://127.0.0.1:9"  # nothing listens on the discard port
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    with pytest.raises(ModelLoadError, match="could not be reached") as err:
        download("large-ft", tmp_path / "ckpt")
    assert "florence-community/Florence-2-large-ft" in str(err.value) and endpoint in str(err.value)
    assert "Fix:" in str(err.value)


def test_download_of_a_local_folder_is_refused(tiny_checkpoint, tmp_path, capsys):
    assert main(["download", str(tiny_checkpoint), "--to", str(tmp_path / "x")]) == 2
    assert "already a local folder" in capsys.readouterr().err


def test_tasks_lists_the_catalogue(capsys):
    from florence_ui import TASKS

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(t.token in out for t in TASKS)
