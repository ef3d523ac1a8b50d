"""``florence-ui workspace import / status / export`` end to end, on a golden results.jsonl and real files."""

from __future__ import annotations

import json

from florence_ui.cli import main
from florence_ui.workspace import Workspace


def test_import_status_export_through_the_cli(box_jsonl, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from pycocotools.coco import COCO

    data = tmp_path / "data"
    monkeypatch.setenv("FLORENCE_UI_DATA", str(data))
    args = ["workspace", "import", str(box_jsonl), "--workspace", "street", "--model", str(tiny_checkpoint)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "street: imported" in out and "0 / 2 reviewed" in out
    assert (data / "workspaces" / "street.sqlite3").is_file()
    assert main(args) == 0 and "0 runs added" in capsys.readouterr().out  # idempotent

    assert main(["workspace", "export", "--workspace", "street", "--format", "coco", "--out", str(tmp_path / "x")]) == 2
    assert "no reviewed image to export yet" in capsys.readouterr().err

    with Workspace.open("street") as ws:  # the review the page will do
        for image in ws.images():
            ws.set_status([r.id for r in ws.regions(image.id)], "accepted")
        classes = ws.class_names()
    assert main(["workspace", "status", "--workspace", "street"]) == 0
    status = capsys.readouterr().out
    assert "street: 2 / 2 reviewed" in status and "images: 0 new, 0 pending, 2 reviewed" in status
    assert f"label set: {', '.join(classes)}" in status

    for fmt, written in (("coco", "annotations.json"), ("yolo", "data.yaml"), ("labelstudio", "tasks.json")):
        out_dir = tmp_path / fmt
        assert main(["workspace", "export", "--workspace", "street", "--format", fmt, "--out", str(out_dir)]) == 0
        assert "Exported 2 images" in capsys.readouterr().out and (out_dir / written).is_file()
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())][: len(classes)] == classes
    assert len(json.loads((tmp_path / "labelstudio" / "tasks.json").read_text())) == 2


def test_bad_names_and_missing_files_are_usage_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLORENCE_UI_DATA", str(tmp_path))
    assert main(["workspace", "status", "--workspace", "my photos"]) == 2
    assert "letters, digits, '-' or '_'" in capsys.readouterr().err
    assert main(["workspace", "import", str(tmp_path / "none.jsonl"), "--workspace", "w"]) == 2
    assert "no such results file" in capsys.readouterr().err
