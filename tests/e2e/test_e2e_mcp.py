"""An MCP client (the ``mcp`` SDK) against the app started with ``--mcp``: the tools it lists and what they answer.

``python app.py --mcp`` runs in its own process on the tiny random Florence-2 (the real generate path, answers are
noise: shapes only); the recorded-answer engine, served in-process the same way, checks that detection comes back
as the golden pixel boxes. Both transports gradio serves are used: streamable HTTP (``/gradio_api/mcp/``) and SSE
(``/gradio_api/mcp/sse``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client
from launched_app import ROOT, LaunchedApp, launch_app
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from florence_ui.labelstudio.server import free_port
from florence_ui.model.engine import GenerationSettings
from florence_ui.ui.app import build_app, launch_options
from florence_ui.ui.mcp_tools import TOOL_NAMES, register_mcp_tools
from florence_ui.ui.serve import mcp_url

pytestmark = pytest.mark.e2e
ROCKET = ROOT / "florence_ui" / "examples" / "rocket.jpg"  # 640 × 427


def data_url(path: Path) -> str:
    mime = "image/jpeg" if path.suffix == ".jpg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


async def _session(url: str, work, transport: str = "http") -> Any:
    client = streamable_http_client(url) if transport == "http" else sse_client(url + "sse")
    async with client as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        return await work(session)


def with_session(url: str, work, transport: str = "http") -> Any:
    return asyncio.run(asyncio.wait_for(_session(url, work, transport), timeout=240))


def call(url: str, tool: str, arguments: dict) -> Any:
    async def work(session: ClientSession):
        return await session.call_tool(tool, arguments)

    return with_session(url, work)


def answer_of(result) -> dict:
    assert not result.isError, result.content
    [content] = result.content
    return json.loads(content.text)


@pytest.fixture(scope="module")
def mcp_app(tiny_checkpoint, tmp_path_factory) -> Iterator[LaunchedApp]:
    app = launch_app(tiny_checkpoint, tmp_path_factory.mktemp("mcp-app"),
                     program=[sys.executable, str(ROOT / "app.py"), "--mcp"])  # fmt: skip
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def url(mcp_app) -> str:
    return mcp_app.url.rstrip("/") + "/gradio_api/mcp/"


def test_the_start_says_where_the_mcp_server_is(mcp_app, url):
    assert f"MCP server: {url}" in mcp_app.log()
    assert mcp_url("0.0.0.0", 7860) == "http://127.0.0.1:7860/gradio_api/mcp/"


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_exactly_the_florence_tools_are_listed(url, transport):
    async def work(session: ClientSession):
        return (await session.list_tools()).tools

    tools = with_session(url, work, transport)
    assert sorted(t.name for t in tools) == sorted(TOOL_NAMES)  # no run_task, review, workspace_*, labelstudio_*
    by_name = {t.name: t for t in tools}
    detect = by_name["detect"]
    assert "pixels" in detect.description and "confidence" in detect.description
    assert detect.inputSchema["required"] == ["image"]
    assert "url" in detect.inputSchema["properties"]["image"]["format"]
    boxes = by_name["describe_regions"].inputSchema["properties"]["boxes"]
    assert boxes["type"] == "array" and boxes["items"]["items"]["type"] == "number"
    assert "[x1, y1, x2, y2]" in boxes["description"]
    assert by_name["caption"].inputSchema["properties"]["detail"]["enum"] == ["brief", "detailed", "paragraph"]


def test_detect_on_an_image_gives_boxes(url):
    answer = answer_of(call(url, "detect", {"image": data_url(ROCKET)}))
    assert answer["tool"] == "detect" and answer["image_size"] == [640, 427]
    assert answer["count"] == len(answer["regions"])
    for region in answer["regions"]:
        x1, y1, x2, y2 = region["box"]
        assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 427
        assert region["confidence"] is None or 0 <= region["confidence"] <= 1


def test_region_tools_take_pixel_boxes(url):
    answer = answer_of(call(url, "categorise_regions", {"image": data_url(ROCKET), "boxes": [[10, 10, 300, 200]]}))
    [region] = answer["regions"]
    assert region["prompt_box"] == [10.0, 10.0, 300.0, 200.0]


def test_bad_input_comes_back_as_a_tool_error_with_the_reason(url, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [
        ("detect", {"image": data_url(text)}, "not an image this app can read"),
        ("categorise_regions", {"image": data_url(ROCKET), "boxes": [[1, 2, 3]]}, "must be 4 numbers"),
        ("ground_phrase", {"image": data_url(ROCKET), "phrase": " "}, "needs a text prompt"),
        ("detect", {"image": "/etc/passwd"}, "url"),  # a server path is no input: only URLs and data URLs
        ("run_task", {"image": data_url(ROCKET), "task": "<OD>"}, "Unknown tool"),  # the HTTP API is no tool
    ]
    for tool, arguments, words in cases:
        result = call(url, tool, arguments)
        assert result.isError, (tool, result.content)
        assert words.lower() in result.content[0].text.lower(), (tool, result.content[0].text)


def test_the_http_api_is_unchanged_and_has_the_tools_too(mcp_app):
    names = set(Client(mcp_app.url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/run_task", "/review", "/tasks"} <= names
    assert {f"/{name}" for name in TOOL_NAMES} <= names


# ---- recorded answers: the boxes are Florence-2's ------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded_mcp(recorded_engine) -> Iterator[str]:
    settings = GenerationSettings(max_new_tokens=24, num_beams=1)
    demo = build_app(recorded_engine, settings=settings)
    options = launch_options() | register_mcp_tools(demo, recorded_engine, settings=settings)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    try:
        yield mcp_url("127.0.0.1", port)
    finally:
        demo.close()


def test_detect_answers_the_golden_boxes(recorded_mcp, golden, tmp_path):
    photo = tmp_path / "beetle.png"
    Image.new("RGB", (640, 480), (40, 160, 150)).save(photo)
    answer = answer_of(call(recorded_mcp, "detect", {"image": data_url(photo)}))
    want = next(v for v in golden["vectors"] if v["task"] == "<OD>" and v["image"] == "beetle")["expected"]
    assert answer["image_size"] == [640, 480]
    assert [r["label"] for r in answer["regions"]] == want["labels"]
    for region, box in zip(answer["regions"], want["boxes_xyxy"], strict=True):
        assert all(math.isclose(a, b, abs_tol=1.5) for a, b in zip(region["box"], box, strict=True)), (region, box)
        assert 0 < region["confidence"] <= 1


def test_the_page_tools_are_not_mcp_tools_in_process_either(recorded_mcp):
    async def work(session: ClientSession):
        return sorted(t.name for t in (await session.list_tools()).tools)

    assert with_session(recorded_mcp, work) == sorted(TOOL_NAMES)
