"""Detect the label set on real workspace files, with real Florence-2 answers replayed through the real parsing.

The engine is :class:`RecordedEngine`: the tiny checkpoint's real pipeline
(prompts, image features, decoding, parsing) whose generation stage replays the
golden open-vocabulary answer ("a green car" and its box) for every class
asked. So the label rule is tested on what Florence-2 really says: a phrase
that is no class of the label set gives its box the class that was asked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from recorded_engine import RecordedEngine
from sample_data import make_photo_folder

from florence_ui.errors import InputError, WorkspaceError
from florence_ui.export.datasets import export_coco
from florence_ui.workspace import Workspace
from florence_ui.workspace.detect import detect_label_set, label_as_asked

OVD = "<OPEN_VOCABULARY_DETECTION>"


@pytest.fixture(scope="module")
def recorded(tiny_checkpoint, golden) -> RecordedEngine:
    return RecordedEngine.from_checkpoint(tiny_checkpoint, golden)


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    folder = make_photo_folder(tmp_path, extras=False)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))


@pytest.fixture
def ws(tmp_path, photos):
    """A workspace of two real photos and a person's label set: car (synonym automobile), person."""
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        for path in photos[:2]:
            ws.add_image(path)
        ws.set_label_set([("person", []), ("car", ["automobile"])])
        yield ws


def recorded_phrase(golden: dict) -> str:
    """The phrase the replayed open-vocabulary answer names (the recorded engine prefers the beetle's)."""
    vec = next(v for v in golden["vectors"] if v["task"] == OVD and v["image"] == "beetle")
    return vec["expected"]["labels"][0]


def test_each_class_is_asked_once_per_image_and_its_boxes_come_in_pending_under_that_class(ws, recorded, golden):
    assert recorded_phrase(golden) not in ws.class_names(), "the replayed phrase is no class: the rule is exercised"
    calls, batches = len(recorded.calls), len(recorded.recorded.batches)
    seen: list[tuple[int, int, str]] = []
    report = detect_label_set(ws, recorded, progress=lambda done, total, msg: seen.append((done, total, msg)))
    images = ws.images()
    assert [c["text"] for c in recorded.calls[calls:]] == ["person", "car"] * 2
    generated = recorded.recorded.batches[batches:]
    assert [b.input_ids.shape[0] for b in generated] == [2, 2], "one generate per image, one row per class"
    assert [(d, t) for d, t, _ in seen] == [(0, 2), (1, 2), (2, 2)], "progress before the first image, then per image"
    assert images[0].name in seen[1][2] and images[1].name in seen[2][2]
    for image in images:
        regions = ws.regions(image.id)
        assert sorted(r.label for r in regions) == ["car", "person"]
        assert {r.status for r in regions} == {"pending"} and {r.source_task for r in regions} == {OVD}
        runs = ws.runs(image.id)
        assert [(run["task"], run["text_input"]) for run in runs] == [(OVD, "person"), (OVD, "car")]
        assert all(recorded_phrase(golden) in run["raw"] for run in runs), "the model's own phrase is kept, raw"
        assert runs[0]["settings"] == {"max_new_tokens": 1024, "num_beams": 3}
    assert report.counts == {images[0].id: 2, images[1].id: 2}
    assert report.per_class == {"person": 2, "car": 2} and not report.failures
    assert ws.class_names() == ["person", "car"] and ws.unmatched_labels() == {}
    assert re.match(
        r"Detected 4 regions \(person 2, car 2\) on 2 images .* of 2 classes; they are pending", report.summary()
    )


def test_class_ids_follow_the_label_set_into_the_result_and_the_export(ws, recorded, tmp_path):
    from pycocotools.coco import COCO

    stored = []
    real_add = ws.add_result
    ws.add_result = lambda image_id, result, **kw: stored.append(result) or real_add(image_id, result, **kw)
    detect_label_set(ws, recorded)
    assert [(r.text_input, r.detections.class_id.tolist()) for r in stored] == [("person", [0]), ("car", [1])] * 2
    for image in ws.images():
        ws.set_status([r.id for r in ws.regions(image.id)], "accepted")
    coco = COCO(str(export_coco(ws.labeled_images(), tmp_path / "coco", classes=ws.class_names())))
    names = [c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))]
    assert names[:2] == ["person", "car"]
    assert sorted(names[a["category_id"] - min(coco.getCatIds())] for a in coco.dataset["annotations"]) == [
        "car", "car", "person", "person"
    ]  # fmt: skip


def test_an_image_whose_file_is_gone_is_reported_and_the_others_are_stored(tmp_path, photos, recorded):
    with Workspace(tmp_path / "ws.sqlite3") as ws:
        ids = [ws.add_image(p) for p in photos[:3]]
        ws.add_label("car")
        gone = tmp_path / "gone.png"
        gone.write_bytes(photos[3].read_bytes())
        lost = ws.add_image(gone)
        gone.unlink()
        seen = []
        report = detect_label_set(ws, recorded, [ids[0], lost, ids[1]], progress=lambda *a: seen.append(a[:2]))
        assert [f.image_id for f in report.failures] == [lost]
        assert "gone" in report.failures[0].error and report.failures[0].name == "gone.png"
        assert report.counts == {ids[0]: 1, ids[1]: 1}
        assert [r.label for r in ws.regions(ids[0])] == ["car"] and ws.regions(lost) == []
        assert ws.regions(ids[2]) == [], "an image not asked about is left alone"
        assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
        assert "1 image failed" in report.summary() and "gone.png" in report.summary()


def test_one_image_or_chosen_classes(ws, recorded):
    first, second = (i.id for i in ws.images())
    calls = len(recorded.calls)
    report = detect_label_set(ws, recorded, [second], classes=["bicycle", "automobile"])
    assert [c["text"] for c in recorded.calls[calls:]] == ["bicycle", "automobile"]
    assert ws.regions(first) == []
    # a synonym asked is stored as its class; a class outside the person's label set stays unmatched
    assert sorted(r.label for r in ws.regions(second)) == ["bicycle", "car"]
    assert ws.unmatched_labels() == {"bicycle": 1} and "bicycle" not in ws.class_names()
    assert report.classes == ["bicycle", "car"], "the classes asked, as the label set names them"
    assert list(report.per_class.items()) == [("bicycle", 1), ("car", 1)], "in the order asked"


def test_a_web_request_caps_the_classes_it_asks_and_says_so(ws, recorded):
    calls = len(recorded.calls)
    ws.add_label("bicycle")
    report = detect_label_set(ws, recorded, [ws.images()[0].id], cap=2)
    assert [c["text"] for c in recorded.calls[calls:]] == ["person", "car"]
    assert any("3 texts were given; only the first 2" in n for n in report.notes)


def test_an_empty_label_set_asks_for_classes_first_and_runs_nothing(tmp_path, photos, recorded):
    with Workspace(tmp_path / "empty.sqlite3") as ws:
        ws.add_image(photos[0])
        calls = len(recorded.calls)
        with pytest.raises(WorkspaceError, match="no class yet.*add the classes first"):
            detect_label_set(ws, recorded)
        with pytest.raises(WorkspaceError, match="no class yet"):
            detect_label_set(ws, recorded, classes=["", "  "])
        assert len(recorded.calls) == calls


def test_a_task_without_text_or_a_read_only_workspace_is_refused_before_the_model(ws, recorded, tmp_path):
    calls = len(recorded.calls)
    with pytest.raises(InputError, match="takes no text"):
        detect_label_set(ws, recorded, task="<OD>")
    with pytest.raises(InputError, match="num_beams"):
        from florence_ui.model.generation import GenerationSettings

        detect_label_set(ws, recorded, settings=GenerationSettings(num_beams=99))
    with Workspace(ws.path, readonly=True) as readonly:
        with pytest.raises(WorkspaceError, match="read-only"):
            detect_label_set(readonly, recorded)
    assert len(recorded.calls) == calls


def test_the_label_rule_on_real_answers(tmp_path, golden, parser):
    """A phrase that is a class (by name or synonym) keeps it; any other phrase takes the class asked."""
    wheels = next(v for v in golden["vectors"] if v["task"] == OVD and v["image"] == "car")
    beetle = next(v for v in golden["vectors"] if v["task"] == OVD and v["image"] == "beetle")
    with Workspace(tmp_path / "rule.sqlite3") as ws:
        ws.set_label_set([("car", ["a green car"]), ("wheel", ["wheels"]), ("tyre", [])])
        answered = parser.parse(OVD, wheels["generated_text"], wheels["image_size"], text="tyre")
        assert label_as_asked(ws, answered) == ["wheel"] * 3, "the model named a class (a synonym): kept"
        assert answered.detections.class_id.tolist() == [1, 1, 1]
        generic = parser.parse(OVD, beetle["generated_text"], beetle["image_size"], text="tyre")
        ws.set_label_set([("car", []), ("tyre", [])])
        assert label_as_asked(ws, generic) == ["tyre"], "'a green car' is no class: the class asked"
        assert generic.detections.data["class_name"].tolist() == ["tyre"] and generic.detections.class_id.tolist() == [
            1
        ]
        assert generic.raw == beetle["generated_text"], "the answer itself is untouched"
