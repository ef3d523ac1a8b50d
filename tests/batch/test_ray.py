"""``predict --engine ray`` on a local Ray (2 CPUs): the same lines as the local engine, order aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sample_data import make_photo_folder

from florence_ui.batch.results_file import VOLATILE, read_lines
from florence_ui.cli import main

ray = pytest.importorskip("ray", reason="ray[data] is an optional extra: pip install 'florence-ui[ray]'")
FAST = ["--num-beams", "1", "--max-new-tokens", "8"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, logging_level="warning")
    yield
    ray.shutdown()


def comparable(path: Path) -> list[str]:
    report = read_lines(path)
    assert not report.bad and not report.torn_tail
    rows = []
    for line in report.lines:
        rows.append(json.dumps({k: v for k, v in line.items() if k not in VOLATILE}, sort_keys=True))
    return sorted(rows)


def test_ray_engine_writes_the_same_lines_as_local(local_ray, tiny_checkpoint, tmp_path, capsys):
    photos = make_photo_folder(tmp_path)
    common = [str(photos), "--task", "<OD>", "--task", "<REGION_TO_CATEGORY>", "--boxes", "[[0, 0, 1, 1]]",
              "--model", str(tiny_checkpoint), "--batch-size", "2", "--quiet", *FAST]  # fmt: skip
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert main(["predict", *common, "--out", str(local)]) == 1  # the broken file fails in both
    assert main(["predict", *common, "--out", str(on_ray), "--engine", "ray", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert out.count("1 failed") == 2 and "broken.jpg" in out
    lines = comparable(local)
    assert len(lines) == 2 * (len([p for p in photos.rglob("*.*g") if ".hidden" not in p.parts]) - 1)
    assert comparable(on_ray) == lines
    failed = [json.loads(t) for t in (tmp_path / "ray.failed.jsonl").read_text().splitlines()]
    assert [Path(f["image"]).name for f in failed] == ["broken.jpg"]

    # resume on Ray: nothing pending but the broken file, nothing rewritten
    before = on_ray.read_bytes()
    assert main(["predict", *common, "--out", str(on_ray), "--engine", "ray"]) == 1
    assert on_ray.read_bytes() == before


def test_ray_model_load_failure_is_a_message_and_exit_2(local_ray, tmp_path, capsys):
    photos = make_photo_folder(tmp_path, extras=False)
    code = main(["predict", str(photos), "--task", "OD", "--model", str(tmp_path / "no-model"), "--engine", "ray", "--workers", "1",
                 "--out", str(tmp_path / "r.jsonl"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "Could not load Florence-2 model" in err and "does not exist" in err
