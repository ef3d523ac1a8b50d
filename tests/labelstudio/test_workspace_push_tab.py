"""The Label Studio tab's "What to send": every reviewed image of the open workspace, against a real server.

A workspace is made from the golden results (real published Florence-2 answers, imported: no model run),
partly reviewed; the tab's handlers are driven as the page drives them (plain values, no browser), with
``session.labelstudio["scope"] = "workspace"``. What is promised: one task per reviewed image, each with one
prediction holding exactly the accepted regions (read back through label_studio_sdk); the progress callable
called once per image; a second push updates those tasks instead of adding new ones; the COCO download
numbers its categories by the workspace's ``export_classes()``; and no open workspace is a sentence.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sample_data import write_golden_jsonl

from florence_ui.batch.results_file import load_parser
from florence_ui.core.review import ReviewStatus
from florence_ui.ui import labelstudio_tab as tab
from florence_ui.ui import workspace_view as view
from florence_ui.ui.session import UISession
from florence_ui.workspace import ImageStatus, Workspace

pytestmark = pytest.mark.labelstudio

BOX_TASKS = ("<OD>", "<OPEN_VOCABULARY_DETECTION>")


@pytest.fixture
def workspace(tmp_path, monkeypatch, golden, tiny_checkpoint) -> Iterator[tuple[view.WorkspaceState, Workspace]]:
    """Workspace "ls-scope": image 1 reviewed (some accepted, the rest rejected), image 2 partly accepted (the
    rest pending), image 3 new (never run): what the tab must send is images 1 and 2 with their accepted regions.
    """
    monkeypatch.setenv("FLORENCE_UI_DATA", str(tmp_path / "data"))  # before anything opens a workspace
    jsonl = write_golden_jsonl(golden, tmp_path / "golden", tasks=BOX_TASKS)
    state = view.WorkspaceState()
    ws = view.open_workspace(state, "ls-scope")
    try:
        report = ws.import_results(jsonl, parser=load_parser(str(tiny_checkpoint)))
        assert report.images_added == 2, report.summary()
        first, second = ws.images()
        regions = ws.regions(first.id)
        assert len(regions) >= 3
        ws.set_status([r.id for r in regions[:2]], ReviewStatus.ACCEPTED)
        ws.set_status([r.id for r in regions[2:]], ReviewStatus.REJECTED)
        ws.set_status([r.id for r in ws.regions(second.id)[:2]], ReviewStatus.ACCEPTED)
        ws.add_image(_png(tmp_path / "never-run.png"))
        assert [s.status for s in ws.images()] == [ImageStatus.REVIEWED, ImageStatus.PENDING, ImageStatus.NEW]
        yield state, ws
    finally:
        view.REGISTRY.close_all()


def _png(path: Path) -> Path:
    Image.new("RGB", (96, 64), (10, 120, 200)).save(path)
    return path


def workspace_session(state: view.WorkspaceState) -> UISession:
    session = UISession()
    session.workspace = state
    session.labelstudio["scope"] = "workspace"
    return session


def accepted_boxes(ws: Workspace) -> list[list[tuple[str, tuple[float, ...]]]]:
    """Per image with accepted regions: its accepted (label, box in percent of the image) pairs, sorted."""
    out = []
    for summary in ws.images():
        rows = [r for r in ws.regions(summary.id) if r.status == ReviewStatus.ACCEPTED]
        if rows:
            out.append(sorted((r.label, _percent(r.xyxy, summary.width, summary.height)) for r in rows))
    return sorted(out)


def _percent(xyxy, width: int, height: int) -> tuple[float, ...]:
    x1, y1, x2, y2 = xyxy
    return tuple(round(v, 1) for v in (100 * x1 / width, 100 * y1 / height, 100 * (x2 - x1) / width,
                                       100 * (y2 - y1) / height))  # fmt: skip


def _field(obj, name):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def read_back(server, project: int) -> tuple[list, list[list[tuple[str, tuple[float, ...]]]]]:
    """The project's tasks, and per task its one prediction's rectangles as (label, box in percent), sorted."""
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=server.url, api_key=server.token)
    tasks = list(client.tasks.list(project=project))
    boxes = []
    for task in tasks:
        predictions = task.predictions
        assert len(predictions) == 1, f"task {task.id} has {len(predictions)} predictions, expected one"
        rects = []
        for result in _field(predictions[0], "result"):
            value = result["value"]
            if "rectanglelabels" in value:
                (label,) = value["rectanglelabels"]
                rects.append((label, tuple(round(float(value[k]), 1) for k in ("x", "y", "width", "height"))))
        boxes.append(sorted(rects))
    return tasks, sorted(boxes)


def push(session: UISession, server, title: str, progress=None) -> tuple:
    return tab.on_push(session, server.url, server.token, tab.NEW, None, title, "add", [], "upload", "",
                       progress=progress)  # fmt: skip


def test_the_workspace_scope_pushes_every_reviewed_image_once_and_updates_on_a_second_push(
    labelstudio_server, workspace
):
    state, ws = workspace
    session = workspace_session(state)
    expected = accepted_boxes(ws)
    assert len(expected) == 2 and sum(len(e) for e in expected) == 4
    calls: list[tuple[float, str | None]] = []

    def progress(fraction: float, desc: str | None = None) -> None:
        calls.append((fraction, desc))

    out = push(session, labelstudio_server, "workspace scope push", progress)
    assert out[2].startswith("✅ Pushed and verified"), out[2]
    project = session.labelstudio["created_project"]
    assert len(calls) == 2, calls  # once per image sent (the new image is not sent)
    assert [round(f, 3) for f, _ in calls] == [0.5, 1.0]
    tasks, boxes = read_back(labelstudio_server, project)
    assert len(tasks) == 2
    assert boxes == expected

    # a second push (after one more decision) updates the same tasks, it does not add any
    first = ws.images()[0]
    ws.set_status(next(r.id for r in ws.regions(first.id) if r.status == ReviewStatus.REJECTED),
                  ReviewStatus.ACCEPTED)  # fmt: skip
    again = push(session, labelstudio_server, "workspace scope push")
    assert again[2].startswith("✅ Pushed and verified"), again[2]
    assert "updated" in again[2] and session.labelstudio["created_project"] == project
    tasks_again, boxes_again = read_back(labelstudio_server, project)
    assert sorted(t.id for t in tasks_again) == sorted(t.id for t in tasks)
    assert boxes_again == accepted_boxes(ws) != expected


def test_the_workspace_scope_downloads_coco_numbered_by_the_label_set(workspace, tmp_path):
    from pycocotools.coco import COCO

    state, ws = workspace
    files, message = tab.on_download(workspace_session(state), "coco")
    assert "4 region(s) exported" in message, message
    (archive,) = files
    with zipfile.ZipFile(archive) as zf:
        (member,) = [n for n in zf.namelist() if n.endswith("annotations.json")]
        (tmp_path / "annotations.json").write_bytes(zf.read(member))
    coco = COCO(str(tmp_path / "annotations.json"))
    classes = ws.export_classes()
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    assert [c["name"] for c in cats] == classes
    assert [c["id"] - cats[0]["id"] for c in cats] == list(range(len(classes)))  # the label set's order is the id order
    names = {c["id"]: c["name"] for c in cats}
    exported = sorted(names[a["category_id"]] for a in coco.loadAnns(coco.getAnnIds()))
    accepted = sorted(label for image in accepted_boxes(ws) for label, _ in image)
    assert exported == accepted
    assert len(coco.getImgIds()) == 2
    assert json.loads((tmp_path / "annotations.json").read_text())["images"]


def test_the_workspace_scope_without_an_open_workspace_is_a_sentence(labelstudio_server):
    for state in (None, view.WorkspaceState()):
        session = UISession()
        session.workspace = state
        session.labelstudio["scope"] = "workspace"
        out = push(session, labelstudio_server, "no workspace")
        assert out[2].startswith("> ⚠️") and "No workspace is open" in out[2], out[2]
        assert "Traceback" not in out[2] and "created_project" not in session.labelstudio
        files, message = tab.on_download(session, "coco")
        assert "No workspace is open" in message and "Traceback" not in message
