"""The workspace on real SQLite files: durable, refuses stale writes, undoes across restarts, migrates, imports, exports.

No mocks: every test opens real files in ``tmp_path``, the imported answers
are real Florence-2 generations (the golden outputs) re-parsed by the real
processor, and the COCO export is read back with pycocotools.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from florence_ui.errors import ConflictError, FlorenceUIError, WorkspaceError
from florence_ui.export.datasets import export_coco
from florence_ui.workspace import SCHEMA_VERSION, ImageStatus, Workspace, workspace_path
from florence_ui.workspace.store import MIGRATIONS, connect, data_dir


def photo(folder: Path, name: str, size=(320, 240), colour=(200, 40, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.new("RGB", size, colour).save(path)
    return path


def golden_labels(golden: dict, image: str, task: str) -> list[str]:
    vec = next(v for v in golden["vectors"] if v["image"] == image and v["task"] == task)
    return vec["expected"]["labels"]


# ---- durability -------------------------------------------------------------------------------
def test_actions_survive_closing_and_a_second_connection_sees_them(tmp_path):
    path = tmp_path / "ws.sqlite3"
    ws = Workspace(path)
    image = ws.add_image(photo(tmp_path, "a.png"))
    car = ws.add_region(image, [10, 10, 100, 80], "car")
    ws.set_status([car.id], "rejected")
    other = Workspace(path)  # another browser / process, open at the same time
    assert other.region(car.id).status == "rejected"
    assert other.add_image(photo(tmp_path, "a.png")) == image, "the same bytes are the same image"
    ws.close()
    other.close()
    with Workspace(path) as again:
        assert [(r.label, r.status) for r in again.regions(image)] == [("car", "rejected")]
        assert [e.action for e in again.history()] == ["set_status", "add_region"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_stale_write_is_refused_with_what_changed_and_loses_nothing(tmp_path):
    path = tmp_path / "ws.sqlite3"
    first, second = Workspace(path), Workspace(path)
    image = first.add_image(photo(tmp_path, "a.png"))
    seen = first.add_region(image, [10, 10, 100, 80], "car", status="pending")
    stale = second.region(seen.id)
    first.set_status(seen.id, "accepted", expected_version=seen.version)
    with pytest.raises(ConflictError, match=r"Region #\d+ \(car\) was changed by someone else") as err:
        second.relabel(stale.id, "truck", expected_version=stale.version)
    assert "status pending → accepted" in str(err.value) and "Nothing was saved" in str(err.value)
    assert isinstance(err.value, WorkspaceError) and isinstance(err.value, FlorenceUIError)
    assert (err.value.expected, err.value.actual) == (stale.version, stale.version + 1)
    kept = Workspace(path).region(seen.id)
    assert (kept.label, kept.status, kept.version) == ("car", "accepted", seen.version + 1)
    fresh = second.relabel(seen.id, "truck", expected_version=kept.version)  # reloaded: now it goes through
    assert (fresh.label, fresh.status) == ("truck", "accepted")


def test_undo_and_redo_persist_across_reopening(tmp_path):
    path = tmp_path / "ws.sqlite3"
    with Workspace(path) as ws:
        image = ws.add_image(photo(tmp_path, "a.png"))
        box = ws.add_region(image, [10, 10, 110, 60], "car", status="pending")
        ws.move(box.id, [20, 20, 220, 120])
        ws.delete(box.id)
    with Workspace(path) as ws:
        assert ws.regions(image) == []
        assert ws.undo().action == "delete"
        assert ws.region(box.id).xyxy == (20, 20, 220, 120) and not ws.region(box.id).deleted
        assert ws.undo().action == "move"
    with Workspace(path) as ws:
        assert ws.region(box.id).xyxy == (10, 10, 110, 60)
        assert ws.redo().action == "move"
    with Workspace(path) as ws:
        assert ws.region(box.id).xyxy == (20, 20, 220, 120)
        ws.set_status(box.id, "accepted")  # a new action: the undone delete can no longer be redone
        assert ws.redo() is None
        assert [e.state for e in ws.history()] == ["done", "dropped", "done", "done"]
        assert ws.undo().action == "set_status" and ws.undo().action == "move" and ws.undo().action == "add_region"
        assert ws.regions(image) == [] and ws.undo() is None


def test_undo_refuses_to_overwrite_a_later_edit_from_elsewhere(tmp_path):
    path = tmp_path / "ws.sqlite3"
    mine, theirs = Workspace(path), Workspace(path)
    image = mine.add_image(photo(tmp_path, "a.png"))
    region = mine.add_region(image, [0, 0, 50, 50], "car", status="pending")
    mine.set_status(region.id, "accepted")
    theirs.relabel(region.id, "truck")
    assert mine.undo().action == "relabel"  # the last action in the workspace is theirs
    assert mine.region(region.id).label == "car"


def test_move_carries_the_outline_with_the_box(tmp_path, golden, parser):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        from florence_ui.batch.results_file import result_from_line

        vec = next(v for v in golden["vectors"] if v["task"] == "<REFERRING_EXPRESSION_SEGMENTATION>")
        image = ws.add_image(photo(tmp_path, "car.png", size=tuple(vec["image_size"])))
        line = {"image": "car.png", "width": vec["image_size"][0], "height": vec["image_size"][1],
                "task": vec["task"], "text_input": vec["text_input"], "generated_text": vec["generated_text"]}  # fmt: skip
        (region_id,) = ws.add_result(image, result_from_line(parser, line))
        before = ws.region(region_id)
        x1, y1, x2, y2 = before.xyxy
        moved = ws.move(region_id, [x1 + 10, y1 + 5, x2 + 10, y2 + 5], expected_version=before.version)
        xs = moved.polygons[0][0::2]
        assert min(xs) == pytest.approx(min(before.polygons[0][0::2]) + 10, abs=0.02)
        assert moved.status == "pending" and moved.version == before.version + 1


# ---- schema -----------------------------------------------------------------------------------
def test_a_file_of_schema_version_1_is_upgraded_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = connect(path, MIGRATIONS[:1])  # what the first florence-ui with workspaces wrote
    old.execute("INSERT INTO images (identity, name, width, height, added) VALUES ('abc', 'a.png', 10, 10, 'then')")
    old.execute("INSERT INTO regions (image_id, label, xyxy, source_task, status) "
                "VALUES (1, 'car', '[1, 1, 5, 5]', '<OD>', 'accepted')")  # fmt: skip
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    old.close()
    with Workspace(path) as ws:
        assert [(r.label, r.status) for r in ws.regions(1)] == [("car", "accepted")]
        assert ws.images()[0].status == ImageStatus.REVIEWED
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS) > 1
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"regions_by_image", "events_by_state"} <= indexes


def test_a_file_from_a_newer_florence_ui_is_refused_untouched(tmp_path):
    path = tmp_path / "new.sqlite3"
    Workspace(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(WorkspaceError, match=r"schema version \d+, newer than this florence-ui knows .*pip install -U"):
        Workspace(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_damaged_files_and_bad_names_say_what_to_do(tmp_path):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(WorkspaceError, match="not a usable workspace file .* Move it aside .*FLORENCE_UI_DATA"):
        Workspace(bad)
    for name in ("../etc", "my photos", "", "a.b"):
        with pytest.raises(WorkspaceError, match="letters, digits, '-' or '_'"):
            Workspace.open(name, tmp_path)


def test_the_data_folder_follows_florence_ui_data_then_xdg(tmp_path):
    assert data_dir({"FLORENCE_UI_DATA": str(tmp_path)}) == tmp_path
    assert data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "florence-ui"
    assert workspace_path("street-1", tmp_path) == tmp_path / "workspaces" / "street-1.sqlite3"
    with Workspace.open("street-1", tmp_path) as ws:
        assert ws.path == tmp_path / "workspaces" / "street-1.sqlite3" and ws.path.is_file()


# ---- import ------------------------------------------------------------------------------------
def test_importing_golden_results_gives_pending_regions_with_the_golden_labels(golden, golden_jsonl, parser, tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        report = ws.import_results(golden_jsonl, parser=parser)
        assert report.runs_added >= len(golden["vectors"]) - len(report.skipped) and report.images_added == 4
        beetle = next(i for i in ws.images() if i.name == "beetle.png")
        od = [r for r in ws.regions(beetle.id) if r.source_task == "<OD>"]
        assert [r.label for r in od] == golden_labels(golden, "beetle", "<OD>")
        assert {r.status for r in ws.regions(beetle.id)} == {"pending"} and beetle.status == ImageStatus.PENDING
        runs = ws.runs(beetle.id)
        od_run = next(r for r in runs if r["task"] == "<OD>")
        vec = next(v for v in golden["vectors"] if v["image"] == "beetle" and v["task"] == "<OD>")
        assert od_run["raw"] == vec["generated_text"] and od_run["model"] == vec["model"]
        assert all(r.run_id == od_run["id"] for r in od)
        caption = next(r for r in runs if r["task"] == "<CAPTION>")
        assert caption["text"] and not [r for r in ws.regions(beetle.id) if r.run_id == caption["id"]]
        assert {"car", "door", "wheel"} <= set(ws.class_names())
        assert "turquoise Volkswagen Beetle" not in ws.class_names(), "free-text descriptions are not classes"


def test_importing_the_same_file_twice_adds_nothing(golden_jsonl, parser, tmp_path):
    path = tmp_path / "ws.sqlite3"
    with Workspace(path) as ws:
        first = ws.import_results(golden_jsonl, parser=parser)
        counts = ws.progress().regions
    with Workspace(path) as ws:
        again = ws.import_results(golden_jsonl, parser=parser)
        assert (again.runs_added, again.regions_added, again.images_added) == (0, 0, 0)
        assert again.runs_already_there == first.runs_added
        assert ws.progress().regions == counts


def test_a_line_whose_image_is_gone_is_skipped_and_reported(box_jsonl, parser, tmp_path):
    (box_jsonl.parent / "car.png").unlink()
    warnings: list[str] = []
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        report = ws.import_results(box_jsonl, parser=parser, warn=warnings.append)
        assert [i.name for i in ws.images()] == ["beetle.png"]
    assert report.skipped and all("car.png" in s and "not there" in s for s in report.skipped)
    assert len(warnings) == len(report.skipped)


# ---- queue -------------------------------------------------------------------------------------
def test_the_queue_filters_and_counts_progress(box_jsonl, parser, tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ws.import_results(box_jsonl, parser=parser)
        blank = ws.add_image(photo(tmp_path, "blank.png"))
        beetle, car = (next(i for i in ws.images() if i.name == n) for n in ("beetle.png", "car.png"))
        assert ws.image(blank).status == ImageStatus.NEW
        ws.set_status([r.id for r in ws.regions(car.id)], "accepted")
        assert [i.name for i in ws.images(status="pending")] == ["beetle.png"]
        assert [i.name for i in ws.images(has_pending=False)] == ["car.png", "blank.png"]
        assert [i.name for i in ws.images(label="door")] == ["beetle.png"]
        progress = ws.progress()
        assert str(progress) == "1 / 3 reviewed"
        assert progress.images == {"new": 1, "pending": 1, "reviewed": 1}
        assert progress.regions["accepted"] == len(ws.regions(car.id))
        ws.add_region(car.id, [0, 0, 30, 30], "wheel", status="pending")
        ws.add_region(blank, [0, 0, 30, 30], "wheel", status="pending")
        (weak,) = ws.regions(blank)
        with sqlite3.connect(ws.path) as conn:  # give the hand-drawn region a model's weak score to sort by
            conn.execute("UPDATE regions SET score = 0.01 WHERE id = ?", (weak.id,))
        assert ws.images(low_confidence_first=True)[0].id == blank
        with pytest.raises(WorkspaceError, match="not one of new, pending, reviewed"):
            ws.images(status="done")


# ---- export ------------------------------------------------------------------------------------
def test_a_three_image_workspace_exports_one_coco_dataset_with_stable_class_ids(box_jsonl, parser, tmp_path):
    from pycocotools.coco import COCO

    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ws.add_label("wheel", synonyms=["wheels", "tyre"])  # the label set first: wheel is class 0
        ws.import_results(box_jsonl, parser=parser)
        third = ws.add_image(photo(tmp_path, "street.png", size=(200, 100)).read_bytes(), name="street.png")
        drawn = ws.add_region(third, [5, 5, 60, 50], "tyre")  # a synonym: stored as the class
        ws.add_region(third, [70, 10, 190, 90], "car")
        beetle, car = (next(i for i in ws.images() if i.name == n) for n in ("beetle.png", "car.png"))
        for image in (beetle, car):
            regions = ws.regions(image.id)
            ws.set_status([r.id for r in regions if r.label != "door"], "accepted")
            ws.set_status([r.id for r in regions if r.label == "door"], "rejected")
        moved = ws.move(next(r.id for r in ws.regions(car.id) if r.label == "car"), [100, 100, 400, 300])
        items, classes = ws.labeled_images(), ws.class_names()
    assert drawn.label == "wheel" and classes[0] == "wheel"
    assert len(items) == 3 and all(i.regions for i in items)
    annotations = export_coco(items, tmp_path / "coco", classes=classes)
    coco = COCO(str(annotations))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert list(names.values())[: len(classes)] == classes, "category ids follow the label set"
    # an image kept as bytes (an upload) is named with its hash too, as everywhere else: street-<hash>.png
    by_file = {
        img["file_name"].split("-")[0].removesuffix(".png") + ".png": img["id"] for img in coco.dataset["images"]
    }
    assert set(by_file) == {"beetle.png", "car.png", "street.png"}
    wheel_ids = {a["category_id"] for a in coco.dataset["annotations"] if names[a["category_id"]] == "wheel"}
    assert len(wheel_ids) == 1, "one class id for wheel in every image"
    per_image = {name: sorted(names[a["category_id"]] for a in coco.loadAnns(coco.getAnnIds(imgIds=[i])))
                 for name, i in by_file.items()}  # fmt: skip
    assert per_image["beetle.png"] == ["a green car", "car", "wheel", "wheel"]  # the door was rejected
    assert per_image["street.png"] == ["car", "wheel"]
    assert not [a for a in coco.dataset["annotations"] if names[a["category_id"]] == "door"]
    car_boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[by_file["car.png"]]))
                 if names[a["category_id"]] == "car"]  # fmt: skip
    assert [100, 100, 300, 200] in [[round(v) for v in b] for b in car_boxes], moved.xyxy
    json.loads(annotations.read_text())  # plain JSON
