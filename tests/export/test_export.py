"""COCO, YOLO and Label Studio JSON files from the golden labels, read back with their own readers."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
import supervision as sv
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image
from pycocotools.coco import COCO

from florence_ui.core.labels import ImageText, LabeledImage, Region, region_mask
from florence_ui.export.datasets import export_coco, export_labelstudio_json, export_yolo, zip_dir
from florence_ui.labelstudio.convert import HASH_KEY, label_of


@pytest.fixture(scope="module")
def items(golden_labeled) -> list[LabeledImage]:
    return list(golden_labeled.values())


def all_labels(items: list[LabeledImage]) -> list[str]:
    return sorted({label_of(r) for item in items for r in item.regions})


def test_coco_reads_back_with_pycocotools(items, tmp_path):
    path = export_coco(items, tmp_path / "coco")
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == all_labels(items)
    assert len(coco.getImgIds()) == len(items)
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for image_info, item in zip(coco.loadImgs(coco.getImgIds()), items, strict=True):
        assert (image_info["width"], image_info["height"]) == (item.width, item.height)
        assert (tmp_path / "coco" / "images" / image_info["file_name"]).exists()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_info["id"]))
        assert len(anns) == len(item.regions)
        for ann, region in zip(anns, item.regions, strict=True):
            x1, y1, x2, y2 = region.xyxy
            assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1.0)
            assert names[ann["category_id"]] == label_of(region)
            if region.polygons:  # masks: the polygon's area, rasterised
                want = region_mask(region, item.width, item.height).sum()
                assert coco.annToMask(ann).sum() == pytest.approx(want, rel=0.1)


def test_coco_boxes_only_and_min_confidence(tmp_path):
    regions = [Region("cat", (0, 0, 5, 5), "<OD>", score=0.9), Region("dog", (1, 1, 4, 4), "<OD>", score=0.2),
               Region("", (2, 2, 8, 8), "<REGION_PROPOSAL>")]  # fmt: skip
    item = LabeledImage(10, 10, regions=regions, image=Image.new("RGB", (10, 10)))
    coco = json.loads(export_coco([item], tmp_path / "c", min_confidence=0.5).read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "object"]
    assert [a["bbox"] for a in coco["annotations"]] == [[0, 0, 5, 5], [2, 2, 6, 6]]


def test_yolo_reads_back_with_supervision(items, tmp_path):
    data_yaml = export_yolo(items, tmp_path / "yolo")
    ds = sv.DetectionDataset.from_yolo(str(tmp_path / "yolo" / "images"), str(tmp_path / "yolo" / "labels"),
                                       str(data_yaml))  # fmt: skip
    assert ds.classes == all_labels(items)
    by_name = {path.rsplit("/", 1)[-1]: det for path, det in ds.annotations.items()}
    assert len(by_name) == len(items)
    for path, item in zip(sorted((tmp_path / "yolo" / "images").iterdir()), sorted(items, key=_name), strict=True):
        det = by_name[path.name]
        assert len(det) == len(item.regions)
        for k, region in enumerate(item.regions):
            assert ds.classes[det.class_id[k]] == label_of(region)
            assert det.xyxy[k] == pytest.approx(np.array(region.xyxy), abs=2.0)


def _name(item: LabeledImage) -> str:
    from florence_ui.labelstudio.convert import image_name

    return image_name(item)


def test_labelstudio_json_is_import_ready(items, tmp_path):
    path = export_labelstudio_json(items, tmp_path / "ls")
    tasks = json.loads(path.read_text())
    li = LabelInterface((tmp_path / "ls" / "label_config.xml").read_text())
    assert len(tasks) == len(items)
    for task, item in zip(tasks, items, strict=True):
        assert task["data"][HASH_KEY] == item.image_hash
        header, payload = task["data"]["image"].split(",", 1)
        assert header == "data:image/png;base64"
        assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (item.width, item.height)
        (pred,) = task["predictions"]
        assert li.validate_prediction(pred, return_errors=True) == []
        geometry = [r for r in pred["result"] if r["type"] != "textarea"]
        assert len(geometry) == len(item.regions)


def test_labelstudio_json_with_file_references(tmp_path):
    item = LabeledImage(8, 8, regions=[Region("a", (1, 1, 4, 4), "<OD>")], image=Image.new("RGB", (8, 8)))
    path = export_labelstudio_json([item], tmp_path, image_url="/data/local-files/?d=images/{name}", copy_images=True)
    task = json.loads(path.read_text())[0]
    name = task["data"]["florence_ui_image_name"]
    assert task["data"]["image"] == f"/data/local-files/?d=images/{name}"
    assert (tmp_path / "images" / name).exists()


def test_text_only_image_and_zip(tmp_path):
    item = LabeledImage(6, 4, texts=[ImageText("<CAPTION>", "a grey rectangle", 0.8)], image=Image.new("RGB", (6, 4)))
    coco = json.loads(export_coco([item], tmp_path / "c").read_text())
    assert len(coco["images"]) == 1 and coco["annotations"] == []
    export_yolo([item], tmp_path / "y")
    tasks = json.loads(export_labelstudio_json([item], tmp_path / "l").read_text())
    assert tasks[0]["predictions"][0]["result"][0]["value"]["text"] == ["a grey rectangle"]
    archive = zip_dir(tmp_path / "y")
    assert {"data.yaml", "images/" + _name(item)} <= set(zipfile.ZipFile(archive).namelist())


def test_image_names_never_collide(tmp_path):
    """Two ``1.png`` from different folders keep both images."""
    for folder, colour in (("a", (1, 2, 3)), ("b", (9, 9, 9))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (4, 4), colour).save(tmp_path / folder / "1.png")
    items = [LabeledImage(4, 4, regions=[Region("a", (0, 0, 2, 2), "<OD>")], image_path=str(tmp_path / f / "1.png"))
             for f in ("a", "b")]  # fmt: skip
    coco = json.loads(export_coco(items, tmp_path / "c").read_text())
    names = [i["file_name"] for i in coco["images"]]
    assert names[0] == "1.png" and names[1].endswith("-1.png")
    assert {Image.open(tmp_path / "c" / "images" / n).getpixel((0, 0)) for n in names} == {(1, 2, 3), (9, 9, 9)}


@pytest.mark.labelstudio
def test_labelstudio_json_imports_into_a_real_server(labelstudio_server, items, tmp_path):
    from label_studio_sdk import LabelStudio

    path = export_labelstudio_json(items, tmp_path / "ls")
    client = LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)
    project = client.projects.create(
        title="imported JSON", label_config=(tmp_path / "ls" / "label_config.xml").read_text()
    )
    tasks = json.loads(path.read_text())
    client.projects.import_tasks(id=project.id, request=tasks)
    back = {t.data[HASH_KEY]: t for t in client.tasks.list(project=project.id)}
    assert len(back) == len(items)
    for task in tasks:
        (pred,) = back[task["data"][HASH_KEY]].predictions
        pred = pred if isinstance(pred, dict) else pred.model_dump()
        assert pred["result"] == task["predictions"][0]["result"]
        assert pred["model_version"] == task["predictions"][0]["model_version"]


def two_part_item() -> LabeledImage:
    """A hand-built multi-part segmentation (two disjoint pieces), a box and an OCR quad on one image."""
    parts = [[10.0, 10.0, 40.0, 10.0, 40.0, 40.0, 10.0, 40.0], [60.5, 30.25, 90.0, 30.25, 75.0, 62.0]]
    regions = [Region("thing", (10, 10, 90, 62), "<REFERRING_EXPRESSION_SEGMENTATION>", polygons=parts),
               Region("cat", (5.5, 5.5, 20.25, 30.75), "<OD>"),
               Region("STOP", (50, 2, 70, 9), "<OCR_WITH_REGION>", quad=[50, 2, 70, 3, 69, 9, 51, 8])]  # fmt: skip
    return LabeledImage(100, 80, regions=regions, image=Image.new("RGB", (100, 80)))


def _perimeter(flat: list[float]) -> float:
    pts = np.asarray(flat, dtype=float).reshape(-1, 2)
    return float(np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1).sum())


def test_coco_is_never_crowd_and_keeps_every_polygon_part(items, tmp_path):
    """iscrowd 0 and polygons (all parts) everywhere; area and bbox agree with pycocotools on those polygons."""
    from pycocotools import mask as mask_utils

    every = [*items, two_part_item()]
    coco = COCO(str(export_coco(every, tmp_path / "coco")))
    anns = coco.dataset["annotations"]
    assert len(anns) == sum(len(i.regions) for i in every)
    assert [a["id"] for a in anns if a["iscrowd"] != 0] == []  # training frameworks skip crowd annotations
    by_image = {img["id"]: img for img in coco.dataset["images"]}
    for ann in anns:
        assert ann["iscrowd"] == 0
        seg = ann["segmentation"]
        assert isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 for p in seg)
        img = by_image[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, img["height"], img["width"]))
        covered = float(mask_utils.area(rle))
        assert coco.annToMask(ann).sum() == covered
        # both count pixels inside the polygons; they may differ on boundary pixels only
        assert abs(ann["area"] - covered) <= max(2.0, 0.5 * sum(_perimeter(p) for p in seg)), (ann, covered)
        points = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in seg])
        extent = [*points.min(axis=0), *(points.max(axis=0) - points.min(axis=0))]
        assert ann["bbox"] == pytest.approx(extent, abs=0.01)
    [thing] = [a for a in anns if coco.cats[a["category_id"]]["name"] == "thing"]
    assert len(thing["segmentation"]) == 2  # both parts, as Florence-2 gave them
    assert thing["segmentation"][1] == [60.5, 30.25, 90.0, 30.25, 75.0, 62.0]
    assert thing["bbox"] == pytest.approx([10, 10, 80, 52])
    [cat] = [a for a in anns if coco.cats[a["category_id"]]["name"] == "cat"]
    assert cat["segmentation"] == [[5.5, 5.5, 20.25, 5.5, 20.25, 30.75, 5.5, 30.75]]  # a box is its rectangle


def test_yolo_writes_one_line_per_polygon_part(tmp_path):
    item = two_part_item()
    export_yolo([item], tmp_path / "yolo")
    [labels] = list((tmp_path / "yolo" / "labels").iterdir())
    lines = [line.split() for line in labels.read_text().splitlines()]
    classes = sorted({label_of(r) for r in item.regions})
    thing = [line for line in lines if classes[int(line[0])] == "thing"]
    assert len(lines) == 4 and len(thing) == 2  # the two parts, then the box and the quad as polygons
    got = [np.asarray(line[1:], dtype=float).reshape(-1, 2) * [100, 80] for line in thing]
    for want, points in zip(item.regions[0].polygons, got, strict=True):
        assert points.shape == np.asarray(want).reshape(-1, 2).shape  # Florence-2's vertices, not a re-traced mask
        assert np.allclose(points, np.asarray(want).reshape(-1, 2), atol=0.01)
