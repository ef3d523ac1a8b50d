"""The MCP tool functions, called directly: the answer each gives, its schema, and clear errors for bad input.

Meaning is checked on the recorded-answer engine (real Florence-2 generations replayed through the real parser):
the detect tool returns the golden boxes in pixels. The tiny random checkpoint (the real generate path) checks
only shapes. Over MCP itself (a client against the launched app): ``tests/e2e/test_e2e_mcp.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gradio as gr
import pytest
from gradio.data_classes import FileData
from PIL import Image
from recorded_engine import RecordedEngine

from florence_ui.core.tasks import (
    CAPTION_TASK,
    DETAILED_CAPTION_TASK,
    NAME_REGION_TASK,
    TASKS,
    get_task,
)
from florence_ui.model.engine import GenerationSettings
from florence_ui.ui import mcp_tools
from florence_ui.ui.mcp_tools import CAPTION_TASKS, TOOL_NAMES, FlorenceTools, register_mcp_tools

SIZE = (640, 480)  # the recorded Beetle photo's size: the golden pixel boxes are for it
SETTINGS = GenerationSettings(max_new_tokens=24, num_beams=1)


@pytest.fixture(scope="module")
def recorded(tiny_checkpoint, golden) -> RecordedEngine:
    return RecordedEngine.from_checkpoint(tiny_checkpoint, golden)


@pytest.fixture(scope="module")
def tools(recorded) -> FlorenceTools:
    return FlorenceTools(recorded, SETTINGS)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "beetle.png"
    Image.new("RGB", SIZE, (40, 160, 150)).save(path)
    return path


def golden_vector(golden: dict, task: str, image: str = "beetle") -> dict:
    return next(v for v in golden["vectors"] if v["task"] == task and v["image"] == image)


def assert_region_shape(region: dict, size=SIZE) -> None:
    width, height = size
    x1, y1, x2, y2 = region["box"]
    assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, region
    assert isinstance(region["label"], str)
    assert region["confidence"] is None or 0.0 <= region["confidence"] <= 1.0


# ---- the table: which task each tool asks ----------------------------------------------------------------
def test_each_tool_is_a_method_and_the_tasks_are_the_right_rows():
    assert all(callable(getattr(FlorenceTools, name)) for name in TOOL_NAMES)
    assert mcp_tools.OBJECTS_TASK is get_task("<OD>")
    assert mcp_tools.DESCRIBE_REGION_TASK is get_task("<REGION_TO_DESCRIPTION>")
    assert NAME_REGION_TASK is get_task("<REGION_TO_CATEGORY>")
    assert CAPTION_TASKS["brief"] is CAPTION_TASK and CAPTION_TASKS["paragraph"] is DETAILED_CAPTION_TASK
    assert list(CAPTION_TASKS.values()) == [t for t in TASKS if t.is_caption]


# ---- answers (recorded engine: real generations) ---------------------------------------------------------
def test_detect_returns_the_golden_boxes_in_pixels(tools, photo, golden):
    answer = tools.detect(str(photo))
    json.dumps(answer)  # JSON-ready as it is
    want = golden_vector(golden, "<OD>")["expected"]
    assert answer["tool"] == "detect" and answer["task"] == "Object detection"
    assert answer["image_size"] == list(SIZE)
    assert answer["count"] == len(answer["regions"]) == len(want["labels"])
    assert [r["label"] for r in answer["regions"]] == want["labels"]
    for region, box in zip(answer["regions"], want["boxes_xyxy"], strict=True):
        assert all(math.isclose(a, b, abs_tol=1.5) for a, b in zip(region["box"], box, strict=True)), (region, box)
        assert_region_shape(region)
        assert set(region) == {"label", "confidence", "box"}
    assert answer["truncated"] is False


def test_the_image_may_come_as_gradio_hands_it(tools, photo):
    """A FileData dict (what gradio passes a ``gr.api`` function), a FileData, a Path or an open picture."""
    as_dict = {"path": str(photo), "orig_name": "beetle.png", "meta": {"_type": "gradio.FileData"}}
    for image in (as_dict, FileData(path=str(photo), orig_name="beetle.png"), photo, Image.open(photo)):
        assert tools.detect(image)["image_size"] == list(SIZE)


def test_open_vocabulary_detection_names_the_query_of_each_region(tools, photo):
    answer = tools.detect_classes(str(photo), ["car", "wheel", "car"])
    assert answer["regions"], answer
    assert {r["query"] for r in answer["regions"]} <= {"car", "wheel"}
    for region in answer["regions"]:
        assert_region_shape(region)


def test_grounding_and_segmentation_answers(tools, photo):
    grounded = tools.ground_phrase(str(photo), "A green car parked in front of a yellow building.")
    assert grounded["regions"] and all(r["label"] for r in grounded["regions"])
    segmented = tools.segment(str(photo), "a car")
    [region] = segmented["regions"]
    assert region["polygons"] and all(len(part) >= 6 and len(part) % 2 == 0 for part in region["polygons"])
    xs, ys = region["polygons"][0][0::2], region["polygons"][0][1::2]
    assert region["box"][0] <= min(xs) and max(xs) <= region["box"][2] + 1  # the box is the polygon's extent
    assert region["box"][1] <= min(ys) and max(ys) <= region["box"][3] + 1


def test_region_tools_answer_each_box_in_order(tools, photo):
    boxes = [[10, 10, 200, 200], [300, 100, 500, 400]]
    for tool in (tools.describe_regions, tools.categorise_regions, tools.segment_regions):
        answer = tool(str(photo), boxes)
        assert len(answer["regions"]) == 2, tool.__name__
        if "prompt_box" in answer["regions"][0]:
            assert [r["prompt_box"] for r in answer["regions"]] == boxes
    assert [r["label"] for r in tools.categorise_regions(str(photo), boxes)["regions"]] == ["car", "car"]


def test_ocr_regions_give_text_and_quads(tools, tmp_path):
    path = tmp_path / "cover.png"
    Image.new("RGB", (403, 500), "black").save(path)
    answer = tools.ocr_with_regions(str(path))
    assert answer["regions"] and answer["regions"][0]["label"] == "CUDA"
    for region in answer["regions"]:
        assert len(region["quad"]) == 8
        assert_region_shape(region, (403, 500))


def test_caption_detail_levels(tools, photo, golden):
    answer = tools.caption(str(photo))
    assert answer["text"] == golden_vector(golden, "<CAPTION>")["expected"]["text"]
    assert answer["regions"] == [] and answer["count"] == 0
    assert tools.caption(str(photo), "detailed")["task"] == "Detailed caption"


def test_the_box_limit_cuts_and_says_so(tools, photo, monkeypatch):
    monkeypatch.setenv("FLORENCE_UI_MAX_BOXES", "2")
    answer = tools.categorise_regions(str(photo), [[10, 10, 100, 100]] * 3)
    assert len(answer["regions"]) == 2
    assert "FLORENCE_UI_MAX_BOXES" in answer["notes"][0]


# ---- bad input: a gr.Error with the app's sentence (the MCP client's error text), never a traceback ----------
@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda t, p: t.detect(None), "No image"),
        (lambda t, p: t.detect(""), "No image"),
        (lambda t, p: t.detect(str(p.parent / "missing.png")), "does not exist"),
        (lambda t, p: t.ground_phrase(str(p), "  "), "needs a text prompt"),
        (lambda t, p: t.segment(str(p), ""), "needs a text prompt"),
        (lambda t, p: t.describe_regions(str(p), []), "needs at least one box"),
        (lambda t, p: t.describe_regions(str(p), "oops"), "JSON list"),
        (lambda t, p: t.categorise_regions(str(p), [[1, 2, 3]]), "must be 4 numbers"),
        (lambda t, p: t.categorise_regions(str(p), [[1, "a", 3, 4]]), "must be 4 numbers"),
        (lambda t, p: t.detect_classes(str(p), []), "class"),
        (lambda t, p: t.detect_classes(str(p), [3]), "class names"),
        (lambda t, p: t.caption(str(p), "epic"), "detail must be one of"),
    ],
)
def test_bad_input_is_a_clear_error(tools, photo, call, words):
    with pytest.raises(gr.Error) as err:
        call(tools, photo)
    assert words.lower() in str(err.value).lower(), str(err.value)


def test_a_file_that_is_no_image_and_an_oversized_one(tools, tmp_path, monkeypatch):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="not an image this app can read"):
        tools.detect(str(text))
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    monkeypatch.setenv("FLORENCE_UI_MAX_PIXELS", "1000")
    with pytest.raises(gr.Error, match="FLORENCE_UI_MAX_PIXELS"):
        tools.detect({"path": str(big), "orig_name": "big.png"})


# ---- the tiny random checkpoint (the real generate path): shapes only -------------------------------------
def test_tiny_model_answers_have_the_shape(engine, photo):
    tiny = FlorenceTools(engine, SETTINGS)
    for answer in (tiny.detect(str(photo)), tiny.ocr_with_regions(str(photo)), tiny.segment(str(photo), "a car")):
        json.dumps(answer)
        assert answer["image_size"] == list(SIZE) and answer["count"] == len(answer["regions"])
        for region in answer["regions"]:
            assert_region_shape(region)
    assert isinstance(tiny.caption(str(photo))["text"], str)


# ---- registration: typed endpoints on a built page ------------------------------------------------------
def test_registered_tools_are_typed_endpoints_with_their_docstrings(recorded):
    with gr.Blocks() as demo:
        gr.Markdown("a page")
    options = register_mcp_tools(demo, recorded, settings=SETTINGS)
    assert options["mcp_server"] is True and callable(options["app_kwargs"]["lifespan"])
    named = demo.get_api_info()["named_endpoints"]
    assert {f"/{name}" for name in TOOL_NAMES} <= set(named)
    params = {p["parameter_name"]: p for p in named["/describe_regions"]["parameters"]}
    assert list(params) == ["image", "boxes"]
    assert params["boxes"]["type"] == {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    caption = {p["parameter_name"]: p for p in named["/caption"]["parameters"]}
    assert caption["detail"]["parameter_has_default"] and caption["detail"]["type"]["enum"] == list(CAPTION_TASKS)
    by_fn = {fn.api_name: fn for fn in demo.fns.values()}
    assert by_fn["detect"].fn.__name__ == "detect" and "Args:" in by_fn["detect"].fn.__doc__
    assert by_fn["detect"].concurrency_id == "model"


def test_an_endpoint_answers_json_text(recorded, photo):
    with gr.Blocks() as demo:
        pass
    register_mcp_tools(demo, recorded, settings=SETTINGS)
    endpoint = next(fn.fn for fn in demo.fns.values() if fn.api_name == "detect")
    answer = json.loads(endpoint({"path": str(photo), "orig_name": "beetle.png"}))
    assert answer["image_size"] == list(SIZE) and answer["regions"]


def test_the_lifespan_keeps_only_the_tools(recorded):
    """Gradio lists every public endpoint as a tool; the returned lifespan keeps the table to ours at start-up."""
    import asyncio
    from types import SimpleNamespace

    server = SimpleNamespace(tool_to_endpoint={"detect": "/detect", "run_task": "/run_task",
                                               "space_caption": "/caption", "review": "/review"})  # fmt: skip
    blocks = SimpleNamespace(mcp_server_obj=server)
    app = SimpleNamespace(get_blocks=lambda: blocks)
    with gr.Blocks() as demo:
        pass
    lifespan = register_mcp_tools(demo, recorded)["app_kwargs"]["lifespan"]

    async def start() -> None:
        async with lifespan(app):
            pass

    asyncio.run(start())
    assert server.tool_to_endpoint == {"detect": "/detect", "space_caption": "/caption"}


def test_the_lifespan_fails_closed_when_gradio_has_no_tool_table(recorded):
    import asyncio
    from types import SimpleNamespace

    app = SimpleNamespace(get_blocks=lambda: SimpleNamespace(mcp_server_obj=SimpleNamespace()))
    with gr.Blocks() as demo:
        pass
    lifespan = register_mcp_tools(demo, recorded)["app_kwargs"]["lifespan"]

    async def start() -> None:
        async with lifespan(app):
            pass

    with pytest.raises(RuntimeError, match="tool table"):
        asyncio.run(start())


def test_segment_tools_add_sams_outline_when_the_server_has_sam(tiny_checkpoint, tiny_sam_checkpoint, tmp_path):
    import numpy as np
    from PIL import Image

    from florence_ui import FlorenceEngine
    from florence_ui.model.engine import GenerationSettings
    from florence_ui.ui.mcp_tools import FlorenceTools

    engine = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", sam=str(tiny_sam_checkpoint))
    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(photo)
    tools = FlorenceTools(engine, GenerationSettings(8, 1))
    answer = tools.segment_regions(str(photo), [[4, 4, 50, 40], [30, 10, 90, 60]])
    assert answer["count"] == 2 and all("sam_polygons" in r and "sam_score" in r for r in answer["regions"])
