"""Pure conversions to Label Studio JSON, on the golden Florence-2 outputs (no server)."""

from __future__ import annotations

import pytest
from label_studio_sdk.label_interface import LabelInterface

from florence_ui.core.labels import ImageText, LabeledImage, Region
from florence_ui.labelstudio.convert import (
    BOXES,
    CAPTION,
    HASH_KEY,
    OCR,
    POLYGONS,
    REGION_TEXT,
    UNNAMED_LABEL,
    LabelCheck,
    MissingInProject,
    ProjectSchema,
    extend_config,
    generate_label_config,
    label_of,
    to_prediction,
    to_task,
)

TOL = 0.05  # percent


def pct_box(region: Region, w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = region.xyxy
    return [x1 / w * 100, y1 / h * 100, (x2 - x1) / w * 100, (y2 - y1) / h * 100]


def geometry_results(prediction: dict) -> list[dict]:
    return [r for r in prediction["result"] if r["type"] in ("rectanglelabels", "polygonlabels")]


def test_generated_config_is_valid_and_holds_every_label(golden_labeled):
    items = list(golden_labeled.values())
    config = generate_label_config(items)
    li = LabelInterface(config)
    li.validate()  # raises on an invalid config
    tags = {c.name: c.tag for c in li.controls}
    assert tags == {"label": "RectangleLabels", "polygon": "PolygonLabels", "region_text": "TextArea",
                    "caption": "TextArea", "ocr": "TextArea"}  # fmt: skip
    assert li.get_control("region_text").attr["perRegion"] == "true"
    boxes = set(li.get_control("label").labels)
    assert {"car", "door", "wheel", "wheels", "a green car", "a yellow building", UNNAMED_LABEL, "Description"} <= boxes
    assert set(li.get_control("polygon").labels) == {"Text", "a car", "segment"}


def test_only_what_is_pushed_goes_into_a_new_config(golden_labeled):
    li = LabelInterface(generate_label_config([golden_labeled["car"]]))
    assert {c.tag for c in li.controls} == {"RectangleLabels", "PolygonLabels"}  # boxes + a segmentation, no text
    li = LabelInterface(generate_label_config([LabeledImage(10, 10, texts=[ImageText("<CAPTION>", "a dot")])]))
    assert [(c.name, c.tag) for c in li.controls] == [("caption", "TextArea")]


@pytest.mark.parametrize("image", ["beetle", "car", "australia", "book_cover"])
def test_every_coordinate_is_percent_of_the_original_size(golden_labeled, image):
    item = golden_labeled[image]
    w, h = item.width, item.height
    conv = to_prediction(item)
    assert LabelInterface(generate_label_config([item])).validate_prediction(conv.prediction, return_errors=True) == []
    results = geometry_results(conv.prediction)
    assert conv.regions_sent == conv.regions_accepted == len(item.regions)
    assert len(results) == conv.ls_regions == sum(max(1, len(r.polygons)) for r in item.regions)
    by_id = {r["id"]: r for r in results}
    for i, region in enumerate(item.regions, start=1):
        res = by_id[f"r{i}"]
        assert res["original_width"] == w and res["original_height"] == h
        assert res["score"] == region.score
        value = res["value"]
        if res["type"] == "rectanglelabels":
            assert [value["x"], value["y"], value["width"], value["height"]] == pytest.approx(pct_box(region, w, h),
                                                                                              abs=TOL)  # fmt: skip
            assert value["rectanglelabels"] == [label_of(region)]
        else:
            flat = region.polygons[0] if region.polygons else region.quad
            expected = [[x / w * 100, y / h * 100] for x, y in zip(flat[0::2], flat[1::2], strict=True)]
            assert len(value["points"]) == len(expected)
            for got, want in zip(value["points"], expected, strict=True):
                assert got == pytest.approx(want, abs=TOL)
            assert value["polygonlabels"] == [label_of(region)]


def test_coordinates_match_the_published_golden_geometry(golden, golden_labeled):
    """Against the golden's own expected pixels (within the 1 px the parser may truncate)."""
    checked = 0
    for vec in golden["vectors"]:
        item = golden_labeled[vec["image"]]
        w, h = vec["image_size"]
        results = geometry_results(to_prediction(item).prediction)
        if "boxes_xyxy" in vec["expected"]:
            boxes = [[r["value"]["x"], r["value"]["y"], r["value"]["x"] + r["value"]["width"],
                      r["value"]["y"] + r["value"]["height"]] for r in results if "x" in r["value"]]  # fmt: skip
            for x1, y1, x2, y2 in vec["expected"]["boxes_xyxy"]:
                want = [x1 / w * 100, y1 / h * 100, x2 / w * 100, y2 / h * 100]
                tol = [100 / w, 100 / h] * 2  # 1 px
                assert any(all(abs(g - e) <= t for g, e, t in zip(b, want, tol, strict=True)) for b in boxes), want
                checked += 1
        for flat in vec["expected"].get("quads_xyxyxyxy", []) + vec["expected"].get("polygons", []):
            want = [[x / w * 100, y / h * 100] for x, y in zip(flat[0::2], flat[1::2], strict=True)]
            polys = [r["value"]["points"] for r in results if "points" in r["value"]]
            assert any(len(p) == len(want) and all(abs(a - c) <= 100 / w and abs(b - d) <= 100 / h
                                                   for (a, b), (c, d) in zip(p, want, strict=True))
                       for p in polys), want[:2]  # fmt: skip
            checked += 1
    assert checked == 45  # every golden box, OCR quad and polygon


def test_region_texts_and_image_texts(golden_labeled):
    item = golden_labeled["book_cover"]
    result = to_prediction(item).prediction["result"]
    quads = [r for r in result if r["type"] == "polygonlabels"]
    texts = [r for r in result if r["type"] == "textarea" and r["from_name"] == "region_text"]
    assert [t["value"]["text"][0] for t in texts] == [r.label for r in item.regions]
    assert [t["id"] for t in texts] == [q["id"] for q in quads]  # the text belongs to its region
    assert all(t["value"]["points"] == q["value"]["points"] for t, q in zip(texts, quads, strict=True))
    assert {q["value"]["polygonlabels"][0] for q in quads} == {"Text"}
    ocr = [r for r in result if r["from_name"] == "ocr"]
    assert ocr[0]["value"]["text"] == [t.text for t in item.texts]
    beetle = to_prediction(golden_labeled["beetle"]).prediction
    captions = [r for r in beetle["result"] if r["from_name"] == "caption"]
    assert len(captions) == 1 and len(captions[0]["value"]["text"]) == 2
    dense = [r for r in beetle["result"] if r["from_name"] == "region_text"]
    assert "turquoise Volkswagen Beetle" in {t["value"]["text"][0] for t in dense}


def test_prediction_carries_model_version_and_score(golden_labeled):
    item = golden_labeled["beetle"]
    pred = to_prediction(item).prediction
    assert pred["model_version"].startswith("microsoft/Florence-2-base-ft@main: <OD>")
    assert "<REGION_TO_SEGMENTATION>" in pred["model_version"] and "<CAPTION>" in pred["model_version"]
    scores = [r.score for r in item.regions] + [t.score for t in item.texts]
    assert pred["score"] == pytest.approx(sum(scores) / len(scores), abs=1e-3)
    task = to_task(item, "/data/upload/1/x.png")
    assert task["data"]["image"] == "/data/upload/1/x.png" and task["data"][HASH_KEY] == item.image_hash


def test_min_confidence_and_unscored_regions():
    regions = [Region("cat", (0, 0, 5, 5), "<OD>", score=0.9), Region("dog", (1, 1, 4, 4), "<OD>", score=0.2),
               Region("", (2, 2, 8, 8), "<REGION_PROPOSAL>", score=None)]  # fmt: skip
    item = LabeledImage(10, 10, regions=regions)
    conv = to_prediction(item, min_confidence=0.5)
    labels = [r["value"]["rectanglelabels"][0] for r in conv.result]
    assert labels == ["cat", UNNAMED_LABEL] and conv.regions_accepted == 2
    assert "score" not in conv.result[1]


def test_degenerate_polygon_is_listed_not_dropped():
    region = Region("blob", (1, 1, 2, 2), "<REFERRING_EXPRESSION_SEGMENTATION>", polygons=[[1, 1, 2, 2]])
    conv = to_prediction(LabeledImage(10, 10, regions=[region]))
    assert conv.result == [] and conv.regions_sent == 0
    assert conv.left_out == ["'blob' region #1 (Referring-expression segmentation): a polygon needs 3 points"]


def detection_config(*labels: str) -> str:
    inner = "".join(f'<Label value="{label}"/>' for label in labels)
    return f'<View><Image name="img" value="$picture"/><RectangleLabels name="bbox" toName="img">{inner}' \
           "</RectangleLabels></View>"  # fmt: skip


def test_existing_project_with_another_label_set(golden_labeled):
    item = golden_labeled["car"]  # car, door handle, wheel, wheels, a car (polygon)
    schema = ProjectSchema.from_config(detection_config("car", "vehicle", "tyre"))
    assert (schema.image, schema.data_key, schema.controls) == ("img", "picture", {BOXES: "bbox"})
    check = LabelCheck.of([item], schema)
    assert check.missing_labels[BOXES] == {"door handle": 1, "wheel": 2, "wheels": 3}
    assert check.missing_controls == {POLYGONS: 1}
    assert "door handle" in check.describe() and "PolygonLabels" in check.describe()
    with pytest.raises(MissingInProject) as err:
        to_prediction(item, schema)  # never silently dropped: the caller must choose
    assert err.value.check.missing_label_names() == ["a car", "door handle", "wheel", "wheels"]
    # leave them out: pushed regions and left-out regions add up
    conv = to_prediction(item, schema, leave_out_missing=True)
    assert conv.regions_sent == 1 and len(conv.left_out) == len(item.regions) - 1
    assert conv.result[0]["from_name"] == "bbox" and conv.result[0]["to_name"] == "img"
    # map them (the polygon still needs a control)
    mapping = {"door handle": "car", "wheel": "tyre", "wheels": "tyre"}
    conv = to_prediction(item, schema, label_map=mapping, leave_out_missing=True)
    assert conv.regions_sent == len(item.regions) - 1 and len(conv.left_out) == 1
    expected = sorted(mapping.get(r.label, r.label) for r in item.regions if not r.polygons)
    assert sorted(r["value"]["rectanglelabels"][0] for r in conv.result) == expected
    assert set(expected) == {"car", "tyre"}
    # add them: the extended config holds everything, nothing is left out
    config = extend_config(detection_config("car", "vehicle", "tyre"), check, schema)
    li = LabelInterface(config)
    new_schema = ProjectSchema.from_config(config)
    assert LabelCheck.of([item], new_schema).ok
    conv = to_prediction(item, new_schema)
    assert conv.regions_sent == len(item.regions) and not conv.left_out
    assert li.validate_prediction(conv.prediction)
    assert set(li.get_control("bbox").labels) == {"car", "vehicle", "tyre", "door handle", "wheel", "wheels"}


def test_missing_text_areas_are_reported_and_added(golden_labeled):
    item = golden_labeled["book_cover"]
    schema = ProjectSchema.from_config('<View><Image name="image" value="$image"/><PolygonLabels name="p" '
                                       'toName="image"><Label value="Text"/></PolygonLabels></View>')  # fmt: skip
    check = LabelCheck.of([item], schema)
    assert check.missing_controls == {REGION_TEXT: 6, OCR: 1} and not check.missing_labels
    conv = to_prediction(item, schema, leave_out_missing=True)
    assert conv.regions_sent == 0 and len(conv.left_out) == 7
    config = extend_config('<View><Image name="image" value="$image"/><PolygonLabels name="p" toName="image">'
                           '<Label value="Text"/></PolygonLabels></View>', check, schema)  # fmt: skip
    new = ProjectSchema.from_config(config)
    assert new.controls[REGION_TEXT] == "region_text" and new.controls[OCR] in ("ocr", "caption")
    assert CAPTION in new.controls
    conv = to_prediction(item, new)
    assert conv.regions_sent == 6 and conv.texts_sent == 1 and not conv.left_out


def test_config_without_image_is_refused():
    with pytest.raises(ValueError, match="no <Image>"):
        ProjectSchema.from_config('<View><Text name="t" value="$text"/><Choices name="c" toName="t">'
                                  '<Choice value="a"/></Choices></View>')  # fmt: skip
