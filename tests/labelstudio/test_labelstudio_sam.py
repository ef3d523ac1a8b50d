"""SAM-refined regions in Label Studio: PolygonLabels (the default) and BrushLabels RLE, both read back exactly.

The regions come from a real Florence-2 answer (golden ``<OD>``) refined by the
tiny random SAM, so their outlines are irregular many-point polygons: the
hardest case for a percent round trip. The first tests are pure conversion;
the last ones push to and read back from a real Label Studio server.
"""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from PIL import Image

from florence_ui.core.labels import LabeledImage, RegionKind, region_mask, regions_from_result
from florence_ui.core.tasks import DEFAULT_TASK
from florence_ui.labelstudio.convert import (
    BRUSH,
    ProjectSchema,
    brush_mask,
    generate_label_config,
    label_of,
    to_prediction,
)
from florence_ui.model.refine import refine_result

PIXEL_TOL = 640 * 5e-9 * 2  # region_geometry's 6-decimal percentages, in pixels


@pytest.fixture(scope="module")
def refined_item(engine, golden, segmenter) -> LabeledImage:
    vec = next(v for v in golden["vectors"] if v["task"] == DEFAULT_TASK.token and v["image"] == "beetle")
    width, height = vec["image_size"]
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    result = engine.parse(vec["task"], vec["generated_text"], (width, height))
    refined = refine_result(result, image, segmenter)
    regions = [r for r in regions_from_result(refined) if r.kind is RegionKind.POLYGON]
    for i, region in enumerate(regions):
        region.score = round(0.5 + 0.05 * i, 2)
    assert regions, "the tiny SAM gave no mask at all: the fixture needs other boxes"
    return LabeledImage(width, height, regions=regions, image=image, model="florence+sam", revision="test")


def test_refined_regions_are_polygon_labels_that_read_back_to_the_pixels(refined_item):
    item = refined_item
    conversion = to_prediction(item)
    polys = [r for r in conversion.result if r["type"] == "polygonlabels"]
    assert len(polys) == sum(len(r.polygons) for r in item.regions) == conversion.ls_regions
    at = 0
    for region in item.regions:
        for flat in region.polygons:
            value = polys[at]["value"]
            back = [c * (item.width if k % 2 == 0 else item.height) / 100
                    for point in value["points"] for k, c in enumerate(point)]  # fmt: skip
            assert np.allclose(back, flat, atol=PIXEL_TOL) and value["polygonlabels"] == [label_of(region)]
            at += 1


def test_brush_rle_reads_back_to_the_very_same_mask(refined_item):
    item = refined_item
    schema = ProjectSchema.from_config(generate_label_config([item], masks_as="brush"))
    assert BRUSH in schema.controls
    conversion = to_prediction(item, schema, masks_as="brush")
    brushes = [r for r in conversion.result if r["type"] == "brushlabels"]
    assert len(brushes) == len(item.regions)
    for region, result in zip(item.regions, brushes, strict=True):
        mask = brush_mask(result["value"], item.width, item.height)
        assert np.array_equal(mask, region_mask(region, item.width, item.height))
        assert result["value"]["brushlabels"] == [label_of(region)]


def test_masks_as_must_be_a_known_format(refined_item):
    with pytest.raises(ValueError, match="masks_as"):
        to_prediction(refined_item, masks_as="png")


# ---- a real Label Studio ----------------------------------------------------------------------------
def _read_back(server, project: int) -> list[dict]:
    client = LabelStudio(base_url=server.url, api_key=server.token)
    [task] = list(client.tasks.list(project=project))
    [pred] = task.predictions
    pred = pred if isinstance(pred, dict) else pred.model_dump()
    return pred["result"]


@pytest.mark.labelstudio
def test_polygons_pushed_to_label_studio_read_back(labelstudio_server, ls_settings, refined_item):
    from florence_ui.labelstudio.client import create_project, push_images

    item = refined_item
    project = create_project(ls_settings, "SAM polygons", [item])
    report = push_images(ls_settings, project, [item])
    assert report.ok, report.summary()
    got = [r for r in _read_back(labelstudio_server, project) if r["type"] == "polygonlabels"]
    sent = [r for r in to_prediction(item).result if r["type"] == "polygonlabels"]
    assert len(got) == len(sent)
    for mine, theirs in zip(sent, got, strict=True):
        flat = [c for point in theirs["value"]["points"] for c in point]
        assert flat == pytest.approx([c for point in mine["value"]["points"] for c in point], abs=1e-9)
        assert theirs["value"]["polygonlabels"] == mine["value"]["polygonlabels"]


@pytest.mark.labelstudio
def test_brush_rle_imported_into_label_studio_reads_back_exactly(labelstudio_server, refined_item):
    item = refined_item
    client = LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)
    config = generate_label_config([item], masks_as="brush")
    project = client.projects.create(title="SAM brush", label_config=config)
    prediction = to_prediction(item, ProjectSchema.from_config(config), masks_as="brush").prediction
    client.projects.import_tasks(id=project.id, request=[{"data": {"image": "/static/images/logo.png"},
                                                          "predictions": [prediction]}])  # fmt: skip
    got = [r for r in _read_back(labelstudio_server, project.id) if r["type"] == "brushlabels"]
    assert len(got) == len(item.regions)
    for region, result in zip(item.regions, got, strict=True):
        assert np.array_equal(brush_mask(result["value"], item.width, item.height),
                              region_mask(region, item.width, item.height))  # fmt: skip
