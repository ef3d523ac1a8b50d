"""Whole-workspace outputs: a real review of the golden results, exported by the CLI and pushed to Label Studio.

The workspace is built the way a labeller builds one: ``import_results`` of
real Florence-2 answers (no model run), then the page's actions on the store
(move a box, draw one by hand, reject one, relabel one, accept the rest).
What comes out is read back with the formats' own readers (pycocotools, the
YOLO text files and data.yaml, Label Studio's API through the SDK), so each
test checks the decisions, not our writer against itself.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml  # supervision's own dependency
from label_studio_sdk import LabelStudio

from florence_ui.cli import main
from florence_ui.labelstudio.client import LSSettings, list_projects, push_images
from florence_ui.labelstudio.convert import HASH_KEY
from florence_ui.workspace import ImageStatus, Workspace

NAME = "street"
MOVED_TO = [40.0, 150.0, 590.0, 380.0]
DRAWN = ([300.0, 100.0, 360.0, 150.0], "mirror")
RELABELLED_TO = "handle"


@dataclass
class Reviewed:
    """What the review decided, to check the outputs against (region ids, and per image the accepted labels)."""

    moved: int
    drawn: int
    rejected: int
    relabelled: int
    classes: list[str]
    accepted: dict[str, Counter]  # image name → accepted labels


@pytest.fixture
def reviewed(box_jsonl, parser, tmp_path, monkeypatch) -> Reviewed:
    """Workspace ``street`` under a temp ``FLORENCE_UI_DATA``: both golden images fully reviewed, with edits."""
    monkeypatch.setenv("FLORENCE_UI_DATA", str(tmp_path / "data"))
    with Workspace.open(NAME) as ws:
        ws.import_results(box_jsonl, parser=parser)
        images = {i.name: i.id for i in ws.images()}
        assert set(images) == {"beetle.png", "car.png"}, "the golden box answers are on two images"
        beetle, car = images["beetle.png"], images["car.png"]
        by = {(i, r.label, r.source_task): r for i in images.values() for r in ws.regions(i)}
        moved = ws.move(by[beetle, "car", "<OD>"].id, MOVED_TO)
        drawn = ws.add_region(beetle, *DRAWN)
        rejected = by[beetle, "a green car", "<OPEN_VOCABULARY_DETECTION>"]
        ws.set_status([rejected.id], "rejected")
        relabelled = ws.relabel(by[car, "door handle", "<OD>"].id, RELABELLED_TO)
        for image_id in images.values():
            pending = [r.id for r in ws.regions(image_id) if r.status == "pending"]
            ws.set_status(pending, "accepted")
        assert all(i.status == ImageStatus.REVIEWED for i in ws.images())
        accepted = {name: Counter(r.label for r in ws.regions(i) if r.status == "accepted")
                    for name, i in images.items()}  # fmt: skip
        return Reviewed(moved.id, drawn.id, rejected.id, relabelled.id, ws.class_names(), accepted)


def export(fmt: str, out: Path, capsys) -> Path:
    assert main(["export", "--workspace", NAME, "--format", fmt, "--out", str(out)]) == 0
    assert "Exported 2 images" in capsys.readouterr().out
    return out


def coco_xyxy(ann: dict) -> list[float]:
    x, y, w, h = ann["bbox"]
    return [x, y, x + w, y + h]


# ---- COCO --------------------------------------------------------------------------------------
def test_coco_export_of_the_workspace_holds_every_decision_with_stable_class_ids(reviewed, tmp_path, capsys):
    from pycocotools.coco import COCO

    first = COCO(str(export("coco", tmp_path / "coco-1", capsys) / "annotations.json"))
    with Workspace.open(NAME) as ws:
        moved, drawn = ws.region(reviewed.moved), ws.region(reviewed.drawn)
        rejected, relabelled = ws.region(reviewed.rejected), ws.region(reviewed.relabelled)

    name_of = {c["id"]: c["name"] for c in first.loadCats(first.getCatIds())}
    assert [name_of[i] for i in sorted(name_of)] == reviewed.classes, "category ids follow the label set's order"
    assert RELABELLED_TO in reviewed.classes and DRAWN[1] in reviewed.classes, "new labels joined the set"
    images = {img["file_name"].split("/")[-1]: img["id"] for img in first.dataset["images"]}
    assert set(images) == {"beetle.png", "car.png"}
    anns = {name: first.loadAnns(first.getAnnIds(imgIds=[i])) for name, i in images.items()}
    for name, want in reviewed.accepted.items():
        assert Counter(name_of[a["category_id"]] for a in anns[name]) == want, f"{name}: accepted regions only"

    beetle = anns["beetle.png"]
    assert coco_xyxy(next(a for a in beetle if name_of[a["category_id"]] == "car")) == pytest.approx(
        list(moved.xyxy)
    ), "the moved box's edited geometry"
    assert list(moved.xyxy) == pytest.approx(MOVED_TO)
    assert (drawn.label, drawn.hand_drawn, list(drawn.xyxy)) == (DRAWN[1], True, pytest.approx(DRAWN[0]))
    assert [coco_xyxy(a) for a in beetle if name_of[a["category_id"]] == DRAWN[1]] == [pytest.approx(DRAWN[0])], (
        "the hand-drawn box"
    )
    assert rejected.status == "rejected"
    assert not any(name_of[a["category_id"]] == rejected.label for a in beetle), "the rejected region is left out"
    assert not any(coco_xyxy(a) == pytest.approx(list(rejected.xyxy), abs=1) for a in beetle)
    car = anns["car.png"]
    assert [coco_xyxy(a) for a in car if name_of[a["category_id"]] == RELABELLED_TO] == [
        pytest.approx(list(relabelled.xyxy))
    ], "the relabelled region carries its new category"
    assert not any(name_of[a["category_id"]] == "door handle" for a in car)
    wheel_ids = {a["category_id"] for a in beetle + car if name_of[a["category_id"]] == "wheel"}
    assert len(wheel_ids) == 1, "one class, one id on every image"

    second = COCO(str(export("coco", tmp_path / "coco-2", capsys) / "annotations.json"))
    assert second.dataset["categories"] == first.dataset["categories"], "two exports number the classes alike"
    key = lambda a: (a["image_id"], tuple(round(v, 3) for v in a["bbox"]))  # noqa: E731
    assert sorted(map(key, second.dataset["annotations"])) == sorted(map(key, first.dataset["annotations"]))
    assert {key(a): a["category_id"] for a in second.dataset["annotations"]} == {
        key(a): a["category_id"] for a in first.dataset["annotations"]
    }


def test_workspace_export_and_export_dash_dash_workspace_write_the_same_dataset(reviewed, tmp_path, capsys):
    one = json.loads((export("coco", tmp_path / "a", capsys) / "annotations.json").read_text())
    assert main(["workspace", "export", "--workspace", NAME, "--format", "coco", "--out", str(tmp_path / "b")]) == 0
    two = json.loads((tmp_path / "b" / "annotations.json").read_text())
    assert one["categories"] == two["categories"]
    assert [a["bbox"] for a in one["annotations"]] == [a["bbox"] for a in two["annotations"]]


# ---- YOLO --------------------------------------------------------------------------------------
def test_yolo_class_ids_follow_the_label_set(reviewed, tmp_path, capsys):
    out = export("yolo", tmp_path / "yolo", capsys)
    names = yaml.safe_load((out / "data.yaml").read_text())["names"]
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else names
    assert names == reviewed.classes
    labels = sorted((out / "labels").glob("*.txt"))
    assert {p.stem for p in labels} == {"beetle", "car"}
    for path in labels:
        ids = [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
        assert Counter(reviewed.classes[i] for i in ids) == reviewed.accepted[f"{path.stem}.png"], path.name
    beetle = [line.split() for line in (out / "labels" / "beetle.txt").read_text().splitlines()]
    mirror = [row for row in beetle if int(row[0]) == reviewed.classes.index(DRAWN[1])]
    (x1, y1, x2, y2), (w, h) = DRAWN[0], (640, 480)
    assert [float(v) for v in mirror[0][1:]] == pytest.approx([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w,
                                                               (y2 - y1) / h], abs=1e-4)  # fmt: skip


# ---- Label Studio --------------------------------------------------------------------------------
@pytest.mark.labelstudio
def test_push_the_workspace_to_a_real_label_studio_one_task_per_image_then_update(reviewed, labelstudio_server,
                                                                                   ls_settings, capsys):  # fmt: skip
    title = "Workspace street review"
    args = ["push", "--workspace", NAME, "--url", labelstudio_server.url, "--api-key", labelstudio_server.token,
            "--project", title]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "Pushed 2 of 2 images to new project" in captured.out
    progress_lines = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress_lines] == ["[1/2", "[2/2"], "one line per image, as it goes"
    assert {line.split("] ")[1] for line in progress_lines} == {"beetle.png", "car.png"}
    (project,) = [pid for pid, t in list_projects(ls_settings) if t == title]

    with Workspace.open(NAME) as ws:
        items = ws.labeled_images()
    by_hash = {item.image_hash: item for item in items}
    client = LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)

    def read_back() -> dict[str, Counter]:
        tasks = list(client.tasks.list(project=project))
        assert sorted(t.data[HASH_KEY] for t in tasks) == sorted(by_hash), "one task per reviewed image"
        out = {}
        for task in tasks:
            full = client.tasks.get(id=str(task.id))
            assert len(full.predictions) == 1, f"task {task.id}: one prediction, updated in place"
            pred = full.predictions[0] if isinstance(full.predictions[0], dict) else full.predictions[0].model_dump()
            boxes = [r for r in pred["result"] if r["type"] == "rectanglelabels"]
            out[by_hash[full.data[HASH_KEY]].name] = Counter(r["value"]["rectanglelabels"][0] for r in boxes)
        return out

    assert read_back() == reviewed.accepted, "the accepted regions, their count and labels"

    calls: list[tuple[int, int, str]] = []
    report = push_images(LSSettings(url=labelstudio_server.url, api_key=labelstudio_server.token), project, items,
                         progress=lambda done, total, name: calls.append((done, total, name)))  # fmt: skip
    assert report.ok and [i.status for i in report.images] == ["updated", "updated"], report.summary()
    assert [(done, total) for done, total, _ in calls] == [(1, 2), (2, 2)], "once per image, counting up"
    assert [name for *_, name in calls] == [i.name for i in report.images]
    assert "beetle.png" in report.summary() and "car.png" in report.summary()
    assert read_back() == reviewed.accepted, "pushed again: updated, not duplicated"
    assert main(args) == 0 and "Pushed 2 of 2 images to project" in capsys.readouterr().out
    assert read_back() == reviewed.accepted
