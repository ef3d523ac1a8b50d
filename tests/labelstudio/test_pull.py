"""``florence-ui pull`` against a real Label Studio: push the golden <OD> answers, review them through the SDK
as a person would (keep, move, relabel, delete, add), and read back exactly those annotations and counts."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio
from pycocotools.coco import COCO

from florence_ui.cli import main
from florence_ui.labelstudio.client import LSSettings, create_project, push_images

pytestmark = pytest.mark.labelstudio
TITLE = "pull and report"


def geometry(result: list[dict]) -> list[dict]:
    return [
        copy.deepcopy({k: v for k, v in r.items() if k != "score"}) for r in result if r["type"] == "rectanglelabels"
    ]


def by_label(result: list[dict], label: str) -> list[dict]:
    return [r for r in result if r["value"]["rectanglelabels"] == [label]]


def pixels(r: dict) -> list[float]:
    """COCO's [x, y, w, h] of a Label Studio rectangle: percent × original size."""
    v, w, h = r["value"], r["original_width"], r["original_height"]
    return [v["x"] * w / 100, v["y"] * h / 100, v["width"] * w / 100, v["height"] * h / 100]


@pytest.fixture(scope="module")
def reviewed(labelstudio_server, golden_labeled):
    """Golden <OD> answers of beetle and car pushed as predictions, then reviewed; australia left unreviewed."""
    if not labelstudio_server.running:
        labelstudio_server.restart()
    settings = LSSettings(url=labelstudio_server.url, api_key=labelstudio_server.token)
    items = [replace(golden_labeled[n], regions=[r for r in golden_labeled[n].regions if r.source_task == "<OD>"],
                     texts=[]) for n in ("beetle", "car")]  # fmt: skip
    australia = golden_labeled["australia"]
    items.append(replace(australia, regions=[r for r in australia.regions if r.source_task == "<REGION_PROPOSAL>"][:3],
                         texts=[]))  # fmt: skip
    project = create_project(settings, TITLE, items)
    report = push_images(settings, project, items)
    assert report.ok, report.summary()
    sdk = LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)
    beetle_task, car_task = (sdk.tasks.get(id=str(i.task_id)) for i in report.images[:2])
    beetle, car = (geometry(t.predictions[0].model_dump()["result"] if not isinstance(t.predictions[0], dict)
                            else t.predictions[0]["result"]) for t in (beetle_task, car_task))  # fmt: skip
    assert sorted(r["value"]["rectanglelabels"][0] for r in beetle) == ["car", "door", "wheel", "wheel"]
    assert sorted(r["value"]["rectanglelabels"][0] for r in car) == ["car", "door handle", "wheel", "wheel"]

    # beetle: car kept as is; door moved left by half its width (IoU 1/3); the first wheel relabelled "door";
    # the second wheel deleted; a wheel added in the top-left corner
    kept = by_label(beetle, "car")[0]
    moved = copy.deepcopy(by_label(beetle, "door")[0])
    moved["value"]["x"] -= moved["value"]["width"] / 2
    relabelled = copy.deepcopy(by_label(beetle, "wheel")[0])
    relabelled["value"]["rectanglelabels"] = ["door"]
    added = {**copy.deepcopy(kept), "id": "human-1"}
    added["value"].update(x=0, y=0, width=5, height=5, rectanglelabels=["wheel"])
    beetle_final = [kept, moved, relabelled, added]
    sdk.annotations.create(id=beetle_task.id, result=beetle_final)
    # car: a first pass removing everything, then the final one: car kept under a new id (found by IoU), the
    # door handle kept, both wheels deleted; then a cancelled (skipped) annotation, which does not count
    sdk.annotations.create(id=car_task.id, result=[])
    car_final = [{**copy.deepcopy(by_label(car, "car")[0]), "id": "renamed"}, by_label(car, "door handle")[0]]
    sdk.annotations.create(id=car_task.id, result=car_final)
    sdk.annotations.create(id=car_task.id, result=[], was_cancelled=True)
    return {"project": project, "server": labelstudio_server,
            "final": {beetle_task.id: beetle_final, car_task.id: car_final}, "moved_iou": 1 / 3}  # fmt: skip


def pull(reviewed, fmt: str, out: Path, project: str | None = None) -> int:
    server = reviewed["server"]
    return main(["pull", "--url", server.url, "--api-key", server.token, "--project", project or
                 str(reviewed["project"]), "--format", fmt, "--out", str(out)])  # fmt: skip


@pytest.fixture
def no_operator_env(monkeypatch):
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "SPACE_ID", "FLORENCE_UI_LS_LOCKED"):
        monkeypatch.delenv(name, raising=False)


def test_pull_coco_exports_exactly_the_final_annotations(reviewed, tmp_path, capsys, no_operator_env):
    assert pull(reviewed, "coco", tmp_path) == 0
    coco = COCO(str(tmp_path / "annotations.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    got = sorted((names[a["category_id"]], a["bbox"]) for a in coco.loadAnns(coco.getAnnIds()))
    want = sorted((r["value"]["rectanglelabels"][0], pixels(r)) for final in reviewed["final"].values() for r in final)
    assert [label for label, _ in got] == [label for label, _ in want]
    for (_, box), (_, expected) in zip(got, want, strict=True):
        assert box == pytest.approx(expected, abs=0.02)  # COCO keeps 2 decimals
    assert len(coco.getImgIds()) == 2  # the unreviewed image is no part of the human-final dataset
    for img in coco.loadImgs(coco.getImgIds()):
        assert (tmp_path / "images" / img["file_name"]).is_file()
    assert sorted(names.values())[:4] == ["car", "door", "door handle", "object"]  # the project's labels
    printed = capsys.readouterr().out
    assert "Pulled 2 annotated image(s), 6 final region(s)" in printed and "kept" in printed.splitlines()[0]


def test_the_report_counts_what_the_reviewers_did(reviewed, tmp_path, no_operator_env):
    assert pull(reviewed, "jsonl", tmp_path, project=TITLE) == 0  # by title too
    report = json.loads((tmp_path / "report.json").read_text())
    top = {k: report[k] for k in ("images", "predicted", "kept", "edited", "deleted", "added", "final")}
    assert top == {"images": 2, "predicted": 8, "kept": 3, "edited": 2, "deleted": 3, "added": 1, "final": 6}
    assert report["unreviewed"] == 1
    assert report["mean_iou_edited"] == pytest.approx((reviewed["moved_iou"] + 1) / 2, abs=1e-3)
    assert (report["precision"], report["recall"]) == (pytest.approx(3 / 8, abs=1e-4), pytest.approx(3 / 6, abs=1e-4))
    per = {label: {k: row[k] for k in ("predicted", "kept", "edited", "deleted", "added", "final", "true_positives")}
           for label, row in report["per_class"].items()}  # fmt: skip
    assert per == {
        "car": {"predicted": 2, "kept": 2, "edited": 0, "deleted": 0, "added": 0, "final": 2, "true_positives": 2},
        "door": {"predicted": 1, "kept": 0, "edited": 1, "deleted": 0, "added": 0, "final": 2, "true_positives": 0},
        "door handle": {"predicted": 1, "kept": 1, "edited": 0, "deleted": 0, "added": 0, "final": 1,
                        "true_positives": 1},
        "wheel": {"predicted": 4, "kept": 0, "edited": 1, "deleted": 3, "added": 1, "final": 1, "true_positives": 0},
    }  # fmt: skip
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(line) for line in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert {line["task_id"]: sorted(r["label"] for r in line["regions"]) for line in lines} == {
        task: sorted(r["value"]["rectanglelabels"][0] for r in final) for task, final in reviewed["final"].items()
    }


def test_pull_yolo_writes_one_line_per_final_region(reviewed, tmp_path, no_operator_env):
    assert pull(reviewed, "yolo", tmp_path) == 0
    lines = [line for path in (tmp_path / "labels").glob("*.txt") for line in path.read_text().splitlines()]
    assert len(lines) == 6 and (tmp_path / "data.yaml").is_file()


def test_the_tab_shows_the_report(reviewed, no_operator_env):
    from types import SimpleNamespace

    from florence_ui.ui import labelstudio_tab as tab

    server = reviewed["server"]
    session = SimpleNamespace(labelstudio={})
    _, _, text, chart = tab.on_report(session, server.url, server.token, reviewed["project"])
    assert "| wheel | 4 | 0 | 1 | 3 | 1 |" in text and "| **all** | 8 | 3 | 2 | 3 | 1 |" in text, text
    assert Path(chart).read_bytes()[:4] == b"\x89PNG" and server.token not in text
    _, _, text, chart = tab.on_report(session, server.url, "", None)
    assert "Pick the project" in text and chart is None
