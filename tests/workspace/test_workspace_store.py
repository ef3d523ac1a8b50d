"""The workspace's bulk review, label-set rules, pixels, many-image adds and database failure modes, on real files.

Every test opens real SQLite files in ``tmp_path``; the answers are real
Florence-2 generations (the golden outputs) re-parsed by the real processor;
the read-only filesystem is a real read-only mount (root) or real permissions.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from sample_data import write_golden_jsonl

from florence_ui.errors import WorkspaceError
from florence_ui.workspace import SCHEMA_VERSION, ImageStatus, Workspace
from florence_ui.workspace.folders import add_folder
from florence_ui.workspace.store import MIGRATIONS, connect

ROOT = Path(__file__).resolve().parents[2]
#: the golden tasks that box one object several ways: what duplicate merging is for
OBJECT_TASKS = ("<OD>", "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<REGION_TO_CATEGORY>")


def photo(folder: Path, name: str, size=(320, 240), colour=(200, 40, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def objects_jsonl(golden, tmp_path) -> Path:
    return write_golden_jsonl(golden, tmp_path / "objects", tasks=OBJECT_TASKS)


def by_name(ws: Workspace, name: str) -> int:
    return next(i.id for i in ws.images() if i.name == name)


def set_scores(ws: Workspace, scores: dict[int, float | None]) -> None:
    """Give regions a model's scores (the imported golden answers carry none: scoring needs the weights)."""
    with sqlite3.connect(ws.path) as conn:
        conn.executemany("UPDATE regions SET score = ? WHERE id = ?", [(s, i) for i, s in scores.items()])


# ---- duplicates ---------------------------------------------------------------------------------
def test_od_open_vocabulary_and_grounding_boxes_of_one_car_merge_in_one_undoable_action(
    objects_jsonl, parser, tmp_path
):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ws.add_label("car", synonyms=["a green car"])  # grounding says "A green car", open-vocabulary "a green car"
        ws.import_results(objects_jsonl, parser=parser)
        beetle = by_name(ws, "beetle.png")
        cars = [r for r in ws.regions(beetle) if r.label == "car"]
        assert {r.source_task for r in cars} == set(OBJECT_TASKS), "four tasks boxed the same car"
        ovd = next(r for r in cars if r.source_task == "<OPEN_VOCABULARY_DETECTION>")
        ws.set_status(ovd.id, "accepted")
        events, live = len(ws.history()), len(ws.regions(beetle))

        (group,) = ws.duplicates(beetle)  # the wheels are two objects, the door another label: one group
        assert group.label == "car" and group.keep.id == ovd.id, "the accepted one is kept"
        assert sorted(group.region_ids) == sorted(r.id for r in cars)
        assert len(ws.history()) == events and len(ws.regions(beetle)) == live, "looking changes nothing"

        (merged,) = ws.merge_duplicates(beetle)
        assert merged.keep.status == "accepted" and all(d.deleted for d in merged.duplicates)
        assert [r.id for r in ws.regions(beetle) if r.label == "car"] == [ovd.id]
        assert sorted(r.label for r in ws.regions(beetle)) == ["a yellow building", "car", "door", "wheel", "wheel"]
        assert ws.history()[0].action == "merge_duplicates" and len(ws.history()) == events + 1
        assert ws.merge_duplicates(beetle) == [] and len(ws.history()) == events + 1, "nothing left: no event"

        assert ws.undo().action == "merge_duplicates"
        assert sorted(r.id for r in ws.regions(beetle) if r.label == "car") == sorted(r.id for r in cars)


def test_the_keeper_is_the_highest_score_then_the_earliest_and_rejections_are_left_alone(tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        image = ws.add_image(photo(tmp_path, "a.png", size=(400, 300)))
        a, b, c = (ws.add_region(image, box, "dog", status="pending") for box in
                   ([10, 10, 110, 110], [12, 10, 112, 110], [10, 12, 110, 112]))  # fmt: skip
        far = ws.add_region(image, [250, 150, 350, 250], "dog", status="pending")
        other = ws.add_region(image, [10, 10, 110, 110], "cat", status="pending")
        (group,) = ws.duplicates(image)
        assert group.keep.id == a.id and {d.id for d in group.duplicates} == {b.id, c.id}, "no scores: the earliest"
        set_scores(ws, {a.id: 0.4, b.id: 0.9, c.id: None})
        (group,) = ws.duplicates(image)
        assert group.keep.id == b.id, "the highest score"
        ws.set_status(b.id, "rejected")
        (group,) = ws.duplicates(image)
        assert group.region_ids == (a.id, c.id), "a rejected region is a decision, not a copy"
        assert ws.duplicates(image, iou=0.99) == [], "the boxes overlap by about 0.96"
        ws.merge_duplicates(image)
        assert {r.id for r in ws.regions(image)} == {a.id, b.id, far.id, other.id}
        with pytest.raises(WorkspaceError, match="IoU"):
            ws.duplicates(image, iou=0)


def test_a_kept_region_labelled_with_a_synonym_takes_the_class_name(objects_jsonl, parser, tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ws.import_results(objects_jsonl, parser=parser)  # no label set: "A green car" becomes a class of its own
        beetle = by_name(ws, "beetle.png")
        assert {"car", "a green car"} <= {c.casefold() for c in ws.class_names()}
        assert {g.label.casefold() for g in ws.duplicates(beetle)} == {"car", "a green car"}, "labels differ: 2 groups"
        ovd = next(r for r in ws.regions(beetle) if r.source_task == "<OPEN_VOCABULARY_DETECTION>")
        ws.set_status(ovd.id, "accepted")
        ws.set_label_set([("car", ["a green car"]), ("wheel", []), ("door", [])])
        (merged,) = ws.merge_duplicates(beetle)
        assert (merged.keep.id, merged.keep.label, merged.keep.status) == (ovd.id, "car", "accepted")
        ws.undo()
        assert ws.region(ovd.id).label.casefold() == "a green car"


# ---- the label set and "unmatched" ---------------------------------------------------------------
def test_without_a_users_class_the_models_categories_join_the_label_set(box_jsonl, parser, tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        image = ws.add_image(photo(tmp_path, "a.png"))
        ws.add_region(image, [0, 0, 50, 50], "bicycle")  # a hand-drawn box does not curate the set
        ws.import_results(box_jsonl, parser=parser)
        assert {"bicycle", "car", "door", "wheel", "wheels", "door handle"} <= set(ws.class_names())
        assert {c.origin for c in ws.label_set()} == {"seen"}
        assert ws.unmatched_labels() == {} and ws.images(unmatched=True) == []


def test_once_a_person_defines_a_class_unknown_phrases_stay_unmatched_until_relabelled(box_jsonl, parser, tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ws.add_label("car")
        ws.import_results(box_jsonl, parser=parser)
        assert ws.class_names() == ["car"] and ws.label_set()[0].origin == "user"
        assert ws.unmatched_labels() == {"wheel": 4, "wheels": 3, "door": 1, "a green car": 1, "door handle": 1}
        car = by_name(ws, "car.png")
        assert [i.name for i in ws.images(unmatched=True)] == ["beetle.png", "car.png"]
        assert [i.name for i in ws.images(label="wheels")] == ["car.png"], "an unmatched phrase is still a filter"

        events = len(ws.history())
        assert ws.relabel_all("Wheels", "wheel") == 3  # the phrase, case-insensitive
        assert len(ws.history()) == events + 1 and ws.history()[0].action == "relabel_all"
        assert ws.class_names() == ["car", "wheel"], "the person's target joins the set"
        assert ws.label_set()[1].synonyms == ("wheels",) and ws.canonical_label("WHEELS") == "wheel"
        assert "wheels" not in ws.unmatched_labels() and "wheel" not in ws.unmatched_labels()
        assert [r.label for r in ws.regions(car) if r.source_task == "<OPEN_VOCABULARY_DETECTION>"] == ["wheel"] * 3
        ws.undo()
        assert ws.unmatched_labels()["wheels"] == 3 and ws.canonical_label("wheels") == "wheel", "the synonym stays"
        ws.redo()

        ws.relabel_all("door", "door", add_synonym=False)  # a person confirms a phrase as a class
        ws.relabel_all("door handle", "handle")
        hand = ws.add_region(car, [0, 0, 40, 40], "mirror")  # a person's label joins a curated set as 'user'
        assert hand.label == "mirror" and ws.class_names() == ["car", "wheel", "door", "handle", "mirror"]
        assert [c.origin for c in ws.label_set()] == ["user"] * 5
        assert ws.unmatched_labels() == {"a green car": 1}
        assert [i.name for i in ws.images(unmatched=False)] == ["car.png"]


def test_an_accepted_unmatched_region_is_exported_after_the_label_set(box_jsonl, parser, tmp_path):
    from pycocotools.coco import COCO

    from florence_ui.export.datasets import export_coco

    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ws.set_label_set([("wheel", ["wheels"]), ("car", [])])
        ws.import_results(box_jsonl, parser=parser)
        beetle = by_name(ws, "beetle.png")
        green = next(r for r in ws.regions(beetle) if r.label == "a green car")
        ws.set_status([r.id for r in ws.regions(beetle) if r.label in ("car", "wheel", "a green car")], "accepted")
        ws.set_status([r.id for r in ws.regions(beetle) if r.label == "door"], "rejected")
        assert ws.unmatched_labels() == {"door": 1, "a green car": 1, "door handle": 1}
        assert ws.export_classes() == ["wheel", "car", "a green car"], "accepted unmatched phrases only, after the set"
        (item,) = ws.labeled_images()
        assert green.label in [r.label for r in item.regions], "nothing accepted is lost"
        coco = COCO(str(export_coco([item], tmp_path / "coco", classes=ws.export_classes())))
    names = [c["name"] for c in sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])]
    assert names[:3] == ["wheel", "car", "a green car"]
    assert sorted(names[a["category_id"] - min(coco.getCatIds())] for a in coco.dataset["annotations"]) == [
        "a green car", "car", "wheel", "wheel"]  # fmt: skip


def test_editing_the_label_set_keeps_ids_dense_and_says_what_still_uses_a_removed_class(box_jsonl, parser, tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ws.set_label_set([("vehicle", []), ("car", ["auto"]), ("wheel", ["wheels", "tyre"])])
        ws.import_results(box_jsonl, parser=parser)
        cars = sorted(r.id for i in ws.images() for r in ws.regions(i.id) if r.label == "car")
        assert len(cars) == 2
        assert ws.remove_label("Car") == cars, "the regions keep the name and are now unmatched"
        assert [(c.name, c.position) for c in ws.label_set()] == [("vehicle", 0), ("wheel", 1)]
        assert ws.unmatched_labels()["car"] == 2
        with pytest.raises(WorkspaceError, match="not in the label set"):
            ws.remove_label("car")
        with pytest.raises(WorkspaceError, match="twice"):
            ws.set_label_set([("dog", []), ("Dog", [])])
        with pytest.raises(WorkspaceError, match="map onto one class only"):
            ws.set_label_set([("dog", ["puppy"]), ("cat", ["puppy"])])
        assert ws.class_names() == ["vehicle", "wheel"], "a refused label set changes nothing"


# ---- bulk accept ----------------------------------------------------------------------------------
def test_accept_above_accepts_pending_regions_at_or_over_the_threshold_in_one_event(tmp_path):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        image = ws.add_image(photo(tmp_path, "a.png"))
        boxes = [ws.add_region(image, [i * 20, 0, i * 20 + 15, 15], f"c{i}", status="pending") for i in range(6)]
        high, edge, low, unscored, rejected, accepted = boxes
        set_scores(ws, {high.id: 0.9, edge.id: 0.5, low.id: 0.2, rejected.id: 0.95, accepted.id: 0.1})
        ws.set_status(rejected.id, "rejected")
        ws.set_status(accepted.id, "accepted")
        events = len(ws.history())
        assert [r.id for r in ws.accept_above(image, 0.5)] == [high.id, edge.id]
        assert len(ws.history()) == events + 1 and ws.history()[0].action == "accept_above"
        assert ws.region(rejected.id).status == "rejected" and ws.region(low.id).status == "pending"
        assert ws.accept_above(image, 0.5) == [] and len(ws.history()) == events + 1
        assert [r.id for r in ws.accept_above(image, 0.3, include_unscored=True)] == [unscored.id]
        ws.undo()
        ws.undo()
        assert {ws.region(r.id).status for r in (high, edge, unscored)} == {"pending"}
        with pytest.raises(WorkspaceError, match="between 0 and 1"):
            ws.accept_above(image, 1.5)


# ---- pixels -----------------------------------------------------------------------------------------
def test_thumbnails_are_made_once_upright_stored_and_a_missing_file_is_a_sentence(tmp_path):
    turned = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° to show": the file is 400×200, shown 200×400
    Image.new("RGB", (400, 200), (10, 200, 10)).save(turned, exif=exif)
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        image = ws.add_image(turned)
        mark = ws.change_mark()
        first = ws.thumbnail(image)
        assert first[:2] == b"\xff\xd8" and Image.open(io.BytesIO(first)).size == (80, 160), "upright, fits 160"
        assert ws.image_pil(image).size == (200, 400) and ws.image_bytes(image) == turned.read_bytes()
        with sqlite3.connect(ws.path) as conn:
            assert conn.execute("SELECT size, length(data) FROM thumbnails").fetchall() == [(160, len(first))]
        assert ws.change_mark() == mark, "a thumbnail is not a change anyone must redraw for"
        turned.unlink()
        assert ws.thumbnail(image) == first, "the second request reads the stored one"
        with pytest.raises(WorkspaceError, match=r"Image #\d+ \(phone.jpg\) cannot be shown: its file .* is gone"):
            ws.thumbnail(image, 64)
        with pytest.raises(WorkspaceError, match="is gone"):
            ws.image_bytes(image)
        upload = photo(tmp_path, "up.png").read_bytes()
        stored = ws.add_image(upload, name="up.png")
        assert ws.image_bytes(stored) == upload and Image.open(io.BytesIO(ws.thumbnail(stored, 32))).size == (32, 24)
        with pytest.raises(WorkspaceError, match="16 to 1024"):
            ws.thumbnail(stored, 4)


# ---- many images ---------------------------------------------------------------------------------------
def test_add_images_in_chunks_reports_unreadable_files_and_duplicates(tmp_path, monkeypatch):
    import florence_ui.workspace.workspace as workspace_module

    monkeypatch.setattr(workspace_module, "ADD_CHUNK", 2)
    a, b = photo(tmp_path, "a.png"), photo(tmp_path, "b.png", colour=(1, 2, 3))
    (tmp_path / "notes.png").write_text("not an image")
    calls: list[tuple[int, int]] = []
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        before = ws.add_image(a)
        report = ws.add_images([a, b, b.read_bytes(), tmp_path / "notes.png", tmp_path / "gone.png",
                                photo(tmp_path, "c.png", colour=(9, 9, 9)).read_bytes()],
                               names=[None, None, None, None, None, "c.png"], progress=lambda *p: calls.append(p))  # fmt: skip
        assert (report.total, report.added, report.already_there) == (6, 2, 2)
        assert report.ids[:3] == [before, report.ids[1], report.ids[1]], "the same bytes are the same image"
        assert len(report.skipped) == 2 and "notes.png" in report.skipped[0] and "gone.png" in report.skipped[1]
        assert calls == [(0, 6), (2, 6), (4, 6), (6, 6)]
        assert [i.name for i in ws.images()] == ["a.png", "b.png", "c.png"]
        assert "2 added, 2 already in the workspace, 2 skipped" in report.summary()
        with pytest.raises(WorkspaceError, match="one name each"):
            ws.add_images([a], names=[])


def test_a_folder_is_taken_only_inside_the_allowed_root_in_sorted_order(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    photos = root / "photos"
    photo(photos, "b.png")
    photo(photos, "a.JPG", colour=(0, 0, 200))
    photo(photos / "sub", "c.webp", colour=(0, 200, 0))
    photo(photos, ".hidden.png", colour=(5, 5, 5))
    (photos / "notes.txt").write_text("sidecar")
    secret = photo(outside, "secret.png", colour=(1, 1, 1))
    (photos / "leak.png").symlink_to(secret)
    (photos / "again.png").symlink_to(photos / "b.png")
    (photos / "elsewhere").symlink_to(outside, target_is_directory=True)
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        report = ws.add_folder("photos", allowed_root=root)
        assert [i.name for i in ws.images()] == ["a.JPG", "again.png", "sub/c.webp"], "sorted; hidden files left out"
        assert (report.added, report.already_there, report.not_images) == (3, 1, 1), "b.png is again.png's bytes"
        assert any("leak.png" in s and "outside" in s for s in report.skipped)
        assert any("elsewhere" in s and "not followed" in s for s in report.skipped)
        top = add_folder(ws, photos, allowed_root=root, recursive=False)  # the function form the page calls
        assert (top.added, top.already_there) == (0, 3), "sub/ is not looked into"
        for escape in (photos / ".." / ".." / "outside", photos / "elsewhere", outside):
            with pytest.raises(WorkspaceError, match="outside the folder images may be taken from"):
                ws.add_folder(escape, allowed_root=root)
        with pytest.raises(WorkspaceError, match="does not exist"):
            ws.add_folder("nope", allowed_root=root)
        assert "secret.png" not in [i.name for i in ws.images()]


# ---- the database's failure modes ----------------------------------------------------------------------
def test_a_v2_file_with_data_is_upgraded_to_the_current_schema_keeping_its_rows(tmp_path):
    path = tmp_path / "v2.sqlite3"
    old = connect(path, MIGRATIONS[:2])
    old.execute("INSERT INTO images (identity, name, width, height, added) VALUES ('abc', 'a.png', 10, 10, 'then')")
    old.execute("INSERT INTO regions (image_id, label, xyxy, source_task, status) "
                "VALUES (1, 'car', '[1, 1, 5, 5]', '<OD>', 'pending')")  # fmt: skip
    old.execute("INSERT INTO labels (name, synonyms, position) VALUES ('car', '[\"auto\"]', 0)")
    old.close()
    with Workspace(path) as ws:
        assert [(r.label, r.status) for r in ws.regions(1)] == [("car", "pending")]
        assert [(c.name, c.synonyms, c.origin) for c in ws.label_set()] == [("car", ("auto",), "seen")]
        mark = ws.change_mark()
        ws.set_status(1, "accepted")
        assert ws.change_mark() > mark and ws.images()[0].status == ImageStatus.REVIEWED
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert conn.execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0] == 0


def test_read_only_opening_refuses_every_write_with_a_sentence(box_jsonl, parser, tmp_path):
    path = tmp_path / "workspaces" / "ws.sqlite3"
    with Workspace(path) as ws:
        ws.import_results(box_jsonl, parser=parser)
        beetle = by_name(ws, "beetle.png")
        region = ws.regions(beetle)[0]
        counts = ws.progress().regions
    with Workspace.open("ws", tmp_path, readonly=True) as ro:
        assert ro.readonly and ro.progress().regions == counts and ro.class_names()
        writes = [lambda: ro.add_image(photo(tmp_path, "x.png")), lambda: ro.set_status(region.id, "accepted"),
                  lambda: ro.add_label("dog"), lambda: ro.undo(), lambda: ro.merge_duplicates(beetle),
                  lambda: ro.accept_above(beetle, 0.0), lambda: ro.relabel_all("door", "car"),
                  lambda: ro.add_images([photo(tmp_path, "y.png")]), lambda: ro.import_results(box_jsonl, parser=parser)]  # fmt: skip
        for write in writes:
            with pytest.raises(WorkspaceError, match=r"is read-only: it was opened read-only\. Nothing was saved"):
                write()
        assert ro.thumbnail(beetle)[:2] == b"\xff\xd8", "made, not stored"
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0] == 0
    assert Workspace(path).region(region.id).status == "pending"
    with pytest.raises(WorkspaceError, match="does not exist and cannot be created"):
        Workspace(tmp_path / "none.sqlite3", readonly=True)
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"not a database" * 200)
    with pytest.raises(WorkspaceError, match="not a usable workspace file"):
        Workspace(bad, readonly=True)
    old = tmp_path / "old.sqlite3"
    connect(old, MIGRATIONS[:2]).close()
    with pytest.raises(WorkspaceError, match="must be upgraded to 3 .* read-only"):
        Workspace(old, readonly=True)


_READ_ONLY_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[2])
from florence_ui.errors import WorkspaceError
from florence_ui.workspace import Workspace
ws = Workspace(sys.argv[1])
try:
    ws.set_status(1, "rejected")
    error = None
except WorkspaceError as exc:
    error = str(exc)
print(json.dumps({"readonly": ws.readonly, "reason": ws.readonly_reason, "labels": [r.label for r in ws.regions(1)],
                  "error": error}))
"""


def test_a_file_on_a_read_only_filesystem_opens_read_only(tmp_path):
    folder = tmp_path / "ro"
    with Workspace(folder / "ws.sqlite3") as ws:
        image = ws.add_image(photo(tmp_path, "a.png"))
        ws.add_region(image, [0, 0, 20, 20], "car")
    script = tmp_path / "check.py"
    script.write_text(_READ_ONLY_CHECK)
    command = [sys.executable, str(script), str(folder / "ws.sqlite3"), str(ROOT)]
    if os.geteuid() == 0:  # root writes through permissions: make it a real read-only mount in a user namespace
        if not shutil.which("unshare") or subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                                                         capture_output=True).returncode:  # fmt: skip
            pytest.skip("running as root without user namespaces: no way to make a read-only filesystem here")
        mount = f'mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder} && exec "$@"'
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, "sh", *command]
    else:
        for path in folder.iterdir():
            path.chmod(0o444)
        folder.chmod(0o555)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["readonly"] is True and "not writable" in seen["reason"]
    assert seen["labels"] == ["car"], "the review is still readable"
    assert "is read-only" in seen["error"] and "Nothing was saved" in seen["error"]
    assert Workspace(folder / "ws.sqlite3").region(1).status == "accepted", "and nothing changed"


def test_a_file_another_connection_holds_the_write_lock_on_reads_and_refuses_writes_clearly(tmp_path):
    path = tmp_path / "ws.sqlite3"
    with Workspace(path) as ws:
        image = ws.add_image(photo(tmp_path, "a.png"))
        region = ws.add_region(image, [0, 0, 20, 20], "car", status="pending")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program is writing and does not let go
    try:
        ws = Workspace(path, busy_timeout_ms=100)
        assert ws.region(region.id).status == "pending" and ws.progress().total == 1, "readers are not blocked"
        with pytest.raises(WorkspaceError, match="is locked by another program .* try again"):
            ws.set_status(region.id, "accepted")
        old = tmp_path / "old.sqlite3"
        connect(old, MIGRATIONS[:2]).close()
        other = sqlite3.connect(old, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(WorkspaceError, match="is locked by another program .* upgraded"):
            Workspace(old, busy_timeout_ms=100)
        other.execute("ROLLBACK")
    finally:
        holder.execute("ROLLBACK")
    assert ws.set_status(region.id, "accepted")[0].status == "accepted", "once it lets go, writes go through"
    ws.close()


# ---- the change feed ------------------------------------------------------------------------------------
def test_the_change_mark_moves_with_every_change_from_any_connection(tmp_path):
    path = tmp_path / "ws.sqlite3"
    mine, theirs = Workspace(path), Workspace(path)
    marks = [mine.change_mark()]
    image = theirs.add_image(photo(tmp_path, "a.png"))
    marks.append(mine.change_mark())
    region = theirs.add_region(image, [0, 0, 20, 20], "car", status="pending")
    marks.append(mine.change_mark())
    theirs.set_status(region.id, "accepted")
    marks.append(mine.change_mark())
    theirs.undo()
    marks.append(mine.change_mark())
    theirs.add_label("car", synonyms=["auto"])
    marks.append(mine.change_mark())
    mine.images(), mine.regions(image), mine.progress()
    assert mine.change_mark() == marks[-1], "reading changes nothing"
    assert marks == sorted(marks) and len(set(marks)) == len(marks), marks
