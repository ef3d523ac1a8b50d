"""``florence-ui export`` and ``push`` on a results.jsonl made of real Florence-2 answers (the golden outputs).

The file is what any Florence-2 runtime could have written: the raw
``generated_text`` per (image, task), images of the golden sizes generated
here, some lines without width/height. COCO must load with pycocotools and hold
the golden geometry (±1 px); YOLO must have its layout and normalised values;
the Label Studio JSON must import into a real server; push must round-trip and
be idempotent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sample_data import COLOURS, write_golden_jsonl

from florence_ui.batch.results_file import labeled_images, load_parser, read_lines
from florence_ui.cli import main

TOL_PX = 1.0
BOX_TASKS = ("<OD>", "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>", "<CAPTION_TO_PHRASE_GROUNDING>",
             "<OPEN_VOCABULARY_DETECTION>")  # fmt: skip


def expected_boxes(golden: dict, tasks: tuple[str, ...] = BOX_TASKS) -> dict[str, list[tuple[str, list[float]]]]:
    """Golden image → (label, xyxy) of every box answer."""
    out: dict[str, list] = {}
    for vec in golden["vectors"]:
        exp = vec["expected"]
        if vec["task"] in tasks and "boxes_xyxy" in exp:
            labels = exp.get("labels") or [""] * len(exp["boxes_xyxy"])
            out.setdefault(vec["image"], []).extend(zip(labels, exp["boxes_xyxy"], strict=True))
    return out


@pytest.fixture(scope="module")
def golden_jsonl(golden, tmp_path_factory) -> Path:
    return write_golden_jsonl(golden, tmp_path_factory.mktemp("golden-jsonl"))


@pytest.fixture(scope="module")
def golden_items(golden_jsonl, tiny_checkpoint):
    return labeled_images(read_lines(golden_jsonl).lines, load_parser(str(tiny_checkpoint)))


def test_export_coco_loads_with_pycocotools_and_has_the_golden_geometry(golden, golden_jsonl, golden_items,
                                                                        tiny_checkpoint, tmp_path, capsys):  # fmt: skip
    from pycocotools.coco import COCO

    out = tmp_path / "coco"
    assert (
        main(["export", str(golden_jsonl), "--format", "coco", "--out", str(out), "--model", str(tiny_checkpoint)]) == 0
    )
    assert "annotations.json" in capsys.readouterr().out
    coco = COCO(str(out / "annotations.json"))
    by_name = {Path(img["file_name"]).stem: img for img in coco.dataset["images"]}
    assert set(by_name) == set(COLOURS)
    assert len(coco.dataset["annotations"]) == sum(len(i.regions) for i in golden_items)
    for name, img in by_name.items():
        vec_size = next(v["image_size"] for v in golden["vectors"] if v["image"] == name)
        assert [img["width"], img["height"]] == vec_size
        assert (out / "images" / Path(img["file_name"]).name).exists()
    for name, boxes in expected_boxes(golden).items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[by_name[name]["id"]]))
        got = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                        for a in anns])  # fmt: skip
        for _label, box in boxes:
            assert np.abs(got - np.array(box)).max(axis=1).min() <= TOL_PX, (name, box)


def test_export_yolo_layout_and_values(golden, tmp_path, tiny_checkpoint):
    jsonl = write_golden_jsonl(golden, tmp_path / "in", tasks=("<OD>", "<OPEN_VOCABULARY_DETECTION>"))
    out = tmp_path / "yolo"
    assert main(["export", str(jsonl), "--format", "yolo", "--out", str(out), "--model", str(tiny_checkpoint)]) == 0
    assert (out / "data.yaml").exists() and (out / "images").is_dir() and (out / "labels").is_dir()
    import yaml  # supervision's own dependency

    names = yaml.safe_load((out / "data.yaml").read_text())["names"]
    assert {"car", "wheel", "door", "door handle", "wheels"} <= set(names)
    sizes = {v["image"]: v["image_size"] for v in golden["vectors"]}
    expected = expected_boxes(golden, ("<OD>", "<OPEN_VOCABULARY_DETECTION>"))
    assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(expected)
    for name, boxes in expected.items():
        width, height = sizes[name]
        rows = [line.split() for line in (out / "labels" / f"{name}.txt").read_text().splitlines()]
        assert len(rows) == len(boxes) and all(len(r) == 5 for r in rows)
        got = [(names[int(r[0])], [float(v) for v in r[1:]]) for r in rows]
        for label, (x1, y1, x2, y2) in boxes:
            want = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
            tol = [TOL_PX / width, TOL_PX / height] * 2
            assert any(glabel == label and all(abs(g - w) <= t for g, w, t in zip(gv, want, tol, strict=True))
                       for glabel, gv in got), (name, label, want)  # fmt: skip


def test_export_min_confidence_uses_the_recorded_scores(golden, tmp_path, tiny_checkpoint):
    od = next(v for v in golden["vectors"] if v["task"] == "<OD>" and len(v["expected"]["labels"]) == 4)
    image = tmp_path / "car.png"
    Image.new("RGB", tuple(od["image_size"])).save(image)
    line = {"image": str(image), "task": "<OD>", "text_input": None, "boxes": None, "generated_text": od["generated_text"],
            "model": "x", "scores": [0.9, 0.1, 0.8, 0.2]}  # fmt: skip
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(json.dumps(line) + "\n")
    for threshold, count in ((None, 4), ("0.5", 2)):
        out = tmp_path / f"coco-{threshold}"
        extra = ["--min-confidence", threshold] if threshold else []
        args = ["export", str(jsonl), "--format", "coco", "--out", str(out), "--model", str(tiny_checkpoint), *extra]
        assert main(args) == 0
        assert len(json.loads((out / "annotations.json").read_text())["annotations"]) == count


def test_export_skips_images_that_are_gone(golden, tmp_path, tiny_checkpoint, capsys):
    jsonl = write_golden_jsonl(golden, tmp_path / "in", tasks=("<OD>",))
    (tmp_path / "in" / "beetle.png").unlink()
    out = tmp_path / "coco"
    assert main(["export", str(jsonl), "--format", "coco", "--out", str(out), "--model", str(tiny_checkpoint)]) == 0
    assert "skipped 1 image(s) not found" in capsys.readouterr().err
    assert [i["file_name"] for i in json.loads((out / "annotations.json").read_text())["images"]] == ["car.png"]


def test_export_of_a_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.jsonl"), "--format", "coco", "--out", str(tmp_path / "o")]) == 2
    assert "no such results file" in capsys.readouterr().err


# ---- against a real Label Studio ----------------------------------------------------------------
def _client(server):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=server.url, api_key=server.token)


def _tasks(client, project: int) -> list:
    return list(client.tasks.list(project=project, fields="all", page_size=100))


@pytest.mark.labelstudio
def test_labelstudio_json_imports_into_a_real_server(golden_jsonl, tiny_checkpoint, labelstudio_server, ls_settings,
                                                     tmp_path):  # fmt: skip
    out = tmp_path / "ls"
    args = ["export", str(golden_jsonl), "--format", "labelstudio", "--out", str(out), "--model", str(tiny_checkpoint)]
    assert main(args) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    client = _client(labelstudio_server)
    project = client.projects.create(
        title="florence-ui batch export", label_config=(out / "label_config.xml").read_text()
    )
    client.projects.import_tasks(id=project.id, request=tasks, commit_to_project=True)
    stored = _tasks(client, project.id)
    assert len(stored) == len(tasks) == len(COLOURS)
    want = {t["data"]["florence_ui_image_hash"]: len(t["predictions"][0]["result"]) for t in tasks}
    for task in stored:
        preds = [p if isinstance(p, dict) else p.model_dump() for p in task.predictions]
        assert len(preds) == 1
        assert len(preds[0]["result"]) == want[task.data["florence_ui_image_hash"]] > 0


@pytest.mark.labelstudio
def test_push_round_trip_is_idempotent(golden_jsonl, golden_items, tiny_checkpoint, labelstudio_server, ls_settings,
                                       capsys):  # fmt: skip
    base = ["push", str(golden_jsonl), "--url", labelstudio_server.url, "--api-key", labelstudio_server.token,
            "--model", str(tiny_checkpoint)]  # fmt: skip
    title = "florence-ui batch push"
    assert main([*base, "--project", title]) == 0
    out = capsys.readouterr().out
    assert "new project" in out and "Pushed 4 of 4" in out
    client = _client(labelstudio_server)
    [project] = [p for p in client.projects.list() if p.title == title]
    first = _tasks(client, project.id)
    assert len(first) == len(golden_items) == 4
    regions = {i.image_hash: len(i.regions) for i in golden_items}
    for task in first:
        [pred] = [p if isinstance(p, dict) else p.model_dump() for p in task.predictions]
        shapes = [r for r in pred["result"] if r["type"] in ("rectanglelabels", "polygonlabels")]
        assert len(shapes) >= regions[task.data["florence_ui_image_hash"]]  # a multi-part polygon is several
    # again, by title and by id: the same tasks, one prediction each
    assert main([*base, "--project", title]) == 0
    assert main([*base, "--project", str(project.id)]) == 0
    assert "updated" in capsys.readouterr().out
    again = _tasks(client, project.id)
    assert sorted(t.id for t in again) == sorted(t.id for t in first)
    assert all(len(t.predictions) == 1 for t in again)


@pytest.mark.labelstudio
def test_push_to_an_unreachable_server_is_a_message(golden_jsonl, tiny_checkpoint, capsys):
    code = main(["push", str(golden_jsonl), "--url", "http://127.0.0.1:9", "--api-key", "secret-key-123",
                 "--project", "x", "--model", str(tiny_checkpoint)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach Label Studio" in err and "secret-key-123" not in err
