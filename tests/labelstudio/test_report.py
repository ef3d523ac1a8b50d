"""The model-assisted labelling report's rules, without a server: ids first, then IoU; kept / edited / deleted /
added per class; precision and recall at IoU 0.5; the final annotation; Florence-2 predictions only."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from florence_ui.labelstudio.report import (
    KEPT_IOU,
    LSRegion,
    Report,
    build_report,
    final_annotation,
    is_ours,
    match,
    our_prediction,
    result_regions,
)


def box(rid, label, x1, y1, x2, y2) -> LSRegion:
    return LSRegion(rid, label, (float(x1), float(y1), float(x2), float(y2)))


def rect(rid, label, x, y, w, h, rotation=0, size=(200, 100)) -> dict:
    return {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": size[0], "original_height": size[1],
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}}  # fmt: skip


def test_percent_becomes_pixels_of_the_original_size():
    (r,) = result_regions([rect("a", "car", 10, 20, 50, 40)])
    assert r == LSRegion("a", "car", (20.0, 20.0, 120.0, 60.0))
    poly = {"id": "p", "type": "polygonlabels", "original_width": 200, "original_height": 100,
            "value": {"points": [[0, 0], [50, 0], [50, 50]], "polygonlabels": ["roof"]}}  # fmt: skip
    text = {"id": "a", "type": "textarea", "value": {"text": ["hi"]}}
    regions = result_regions([poly, text])
    assert [(r.label, r.xyxy, r.points) for r in regions] == [("roof", (0, 0, 100, 50), ((0, 0), (100, 0), (100, 50)))]


def test_a_rotated_rectangle_turns_about_its_top_left_corner():
    (r,) = result_regions([rect("a", "car", 50, 50, 10, 20, rotation=90)])  # 20 x 20 px, turned clockwise
    assert [c for point in r.points for c in point] == pytest.approx([100, 50, 100, 70, 80, 70, 80, 50])
    assert r.xyxy == pytest.approx((80, 50, 100, 70))


def test_same_id_is_the_same_region_whatever_it_became():
    predicted = [box("r1", "car", 0, 0, 100, 100), box("r2", "dog", 200, 200, 300, 300)]
    # r1 moved far away (IoU 0) and r2 relabelled in place: still those predictions, so both "edited"
    final = [box("r1", "car", 500, 500, 600, 600), box("r2", "cat", 200, 200, 300, 300)]
    m = match(predicted, final)
    assert [(p.predicted.id, p.final.id, p.by_id, p.kept) for p in m.pairs] == [("r1", "r1", True, False),
                                                                                ("r2", "r2", True, False)]  # fmt: skip
    assert m.pairs[0].iou == 0.0 and m.pairs[1].iou == 1.0
    assert m.deleted == [] and m.added == []


def test_without_a_shared_id_regions_pair_by_iou_at_half_or_more():
    predicted = [box("r1", "car", 0, 0, 100, 100), box("r2", "car", 300, 0, 400, 100)]
    final = [box("x", "car", 0, 0, 100, 98),  # IoU 0.98, new id: kept
             box("y", "truck", 300, 0, 400, 60),  # IoU 0.6 and another label: edited
             box("z", "car", 0, 300, 50, 350)]  # overlaps nothing: added  # fmt: skip
    m = match(predicted, final)
    assert sorted((p.predicted.id, p.final.id, p.kept) for p in m.pairs) == [("r1", "x", True), ("r2", "y", False)]
    assert [r.id for r in m.added] == ["z"] and m.deleted == []
    # below 0.5 IoU there is no pair: the prediction was deleted and the human box added
    m = match([box("r1", "car", 0, 0, 100, 100)], [box("w", "car", 60, 0, 160, 100)])  # IoU 0.25
    assert m.pairs == [] and [r.id for r in m.deleted] == ["r1"] and [r.id for r in m.added] == ["w"]


def test_ids_are_used_before_iou():
    """A final region sitting on r2 but carrying r1's id is r1 (moved), and r2 is then free to be deleted."""
    predicted = [box("r1", "car", 0, 0, 100, 100), box("r2", "car", 300, 0, 400, 100)]
    final = [box("r1", "car", 300, 0, 400, 100)]
    m = match(predicted, final)
    assert [(p.predicted.id, p.by_id) for p in m.pairs] == [("r1", True)]
    assert [r.id for r in m.deleted] == ["r2"]


def test_iou_pairing_maximises_the_total_iou():
    """Greedy would give the best single pair (a–B) and leave A unpaired; the assignment pairs both."""
    predicted = [box("a", "car", 0, 0, 100, 100), box("b", "car", 40, 0, 140, 100)]
    final = [box(None, "car", 10, 0, 110, 100), box(None, "car", 60, 0, 160, 100)]
    m = match(predicted, final)
    assert sorted((p.predicted.id, p.final.xyxy[0]) for p in m.pairs) == [("a", 10.0), ("b", 60.0)]


def test_kept_needs_the_same_label_and_iou_at_least_095():
    edge = 100 * KEPT_IOU  # a box shrunk to KEPT_IOU of its area (IoU is float32 in supervision: test beside it)
    assert match([box("r", "car", 0, 0, 100, 100)], [box("r", "car", 0, 0, 100, edge + 0.5)]).pairs[0].kept
    assert not match([box("r", "car", 0, 0, 100, 100)], [box("r", "car", 0, 0, 100, edge - 1)]).pairs[0].kept
    assert not match([box("r", "car", 0, 0, 100, 100)], [box("r", "Car", 0, 0, 100, 100)]).pairs[0].kept


def test_counts_per_class_go_to_the_predicted_label_and_added_to_the_final_one():
    report = Report()
    predicted = [box("r1", "car", 0, 0, 100, 100), box("r2", "car", 200, 0, 300, 100),
                 box("r3", "dog", 0, 200, 100, 300), box("r4", "dog", 200, 200, 300, 300)]  # fmt: skip
    final = [box("r1", "car", 0, 0, 100, 100),  # kept
             box("r2", "truck", 200, 0, 300, 100),  # relabelled: edited, IoU 1
             box("r3", "dog", 50, 200, 150, 300),  # moved: edited, IoU 1/3
             box("h1", "cat", 500, 500, 550, 550)]  # added (r4 deleted)  # fmt: skip
    report.add(predicted, final)
    d = report.to_dict()
    assert {k: d[k] for k in ("images", "predicted", "kept", "edited", "deleted", "added", "final")} == {
        "images": 1,
        "predicted": 4,
        "kept": 1,
        "edited": 2,
        "deleted": 1,
        "added": 1,
        "final": 4,
    }
    assert d["mean_iou_edited"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-4)
    per = d["per_class"]
    assert set(per) == {"car", "dog", "truck", "cat"}
    assert (per["car"]["kept"], per["car"]["edited"], per["car"]["deleted"]) == (1, 1, 0)
    assert (per["dog"]["edited"], per["dog"]["deleted"], per["dog"]["mean_iou_edited"]) == (
        1,
        1,
        pytest.approx(1 / 3, abs=1e-4),
    )
    assert (per["truck"]["predicted"], per["truck"]["added"], per["truck"]["final"]) == (0, 0, 1)
    assert per["cat"]["added"] == 1 and per["cat"]["precision"] is None and per["cat"]["recall"] == 0.0
    for label, row in per.items():  # every prediction is kept, edited or deleted, under its own label
        assert row["predicted"] == row["kept"] + row["edited"] + row["deleted"], label
    # at IoU 0.5 with the same label only r1 matches (r3 moved to IoU 1/3, r2 is a truck now)
    assert (d["true_positives"], d["precision"], d["recall"]) == (1, 0.25, 0.25)
    assert (per["car"]["precision"], per["car"]["recall"]) == (0.5, 1.0)


def test_precision_and_recall_ignore_ids_and_pair_one_to_one():
    """Two predictions on one final box: one true positive; the final box keeps its id-free match."""
    report = Report()
    report.add([box("r1", "car", 0, 0, 100, 100), box("r2", "car", 0, 0, 100, 90)], [box("zz", "car", 0, 0, 100, 100)])
    assert (report.totals.true_positives, report.totals.precision, report.totals.recall) == (1, 0.5, 1.0)


def test_final_annotation_is_the_newest_not_cancelled():
    task = {"annotations": [
        {"id": 1, "created_at": "2024-01-01T00:00:00Z", "result": []},
        {"id": 2, "created_at": "2024-01-02T00:00:00Z", "result": [rect("a", "car", 0, 0, 1, 1)]},
        {"id": 3, "created_at": "2024-01-03T00:00:00Z", "result": [], "was_cancelled": True},
    ]}  # fmt: skip
    assert final_annotation(task)["id"] == 2
    assert final_annotation({"annotations": [{"id": 5, "was_cancelled": True}]}) is None


def test_only_florence_predictions_count():
    assert is_ours("microsoft/Florence-2-base-ft@main: <OD> <CAPTION>")
    assert is_ours("florence-2-large@abc123")
    assert not is_ours("yolov8n") and not is_ours(None)
    assert is_ours("florence-2-large@abc: <OD>", "florence-2-large@abc") and not is_ours(
        "florence-2-large@x", "florence-2-large@abc"
    )
    task = {"predictions": [{"id": 1, "model_version": "florence-2-base@r", "created_at": "2024-01-01", "result": []},
                            {"id": 2, "model_version": "florence-2-base@r", "created_at": "2024-01-02", "result": []},
                            {"id": 3, "model_version": "sam2", "created_at": "2024-02-01", "result": []}]}  # fmt: skip
    assert our_prediction(task)["id"] == 2


def test_build_report_counts_reviewed_tasks_and_writes_json_and_png(tmp_path):
    pred = {"model_version": "florence-2-base@r", "result": [rect("r1", "car", 0, 0, 50, 50)]}
    tasks = [
        {"id": 1, "predictions": [pred], "annotations": [{"id": 9, "result": [rect("r1", "car", 0, 0, 50, 50)]}]},
        {"id": 2, "predictions": [pred], "annotations": []},  # not reviewed yet
        {"id": 3, "predictions": [], "annotations": [{"id": 8, "result": [rect("h", "dog", 0, 0, 10, 10)]}]},
    ]
    report = build_report(tasks)
    assert (report.totals.images, report.unreviewed, report.without_prediction) == (2, 1, 1)
    assert (report.totals.kept, report.totals.added) == (1, 1)
    json_path, png = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    keys = {"images", "predicted", "kept", "edited", "deleted", "added", "mean_iou_edited", "precision", "recall"}
    assert keys <= set(data) and all(keys <= set(row) for row in data["per_class"].values())
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 100
    table = report.table()
    assert table.splitlines()[0].split()[:3] == ["class", "predicted", "kept"] and "dog" in table
