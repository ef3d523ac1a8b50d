"""gradio_client against the launched app: the documented endpoints, on the real generate path.

The server runs the tiny random Florence-2 (real from_pretrained → generate →
decode → parse), so answers are noise: these tests check the contract of each
endpoint (what goes in, what comes back, per-client state, clear errors).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

pytestmark = pytest.mark.e2e
ROCKET = Path(__file__).resolve().parents[2] / "florence_ui" / "examples" / "rocket.jpg"


@pytest.fixture(scope="module")
def client(tiny_app) -> Client:
    return Client(tiny_app, verbose=False)


def test_api_lists_every_action(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/run_task", "/caption_and_ground", "/review", "/review_update", "/review_relabel",
            "/review_accept_above", "/teaching", "/tasks"} <= names  # fmt: skip
    assert len(client.predict(api_name="/tasks")) == 15


def test_run_task_whole_image_returns_png_and_json(client):
    image_path, result = client.predict(handle_file(str(ROCKET)), "<OD>", "", [], api_name="/run_task")
    with Image.open(image_path) as annotated:
        assert annotated.format == "PNG"
        assert annotated.size == (640, 427)
    assert result["task"] == "<OD>"
    assert result["image_size"] == [640, 427]
    assert result["prompts"] == ["<OD>"]
    assert result["generated_tokens"] and result["timings"]["total_s"] > 0
    assert result["truncated"] in (True, False)


def test_run_task_region_boxes_one_answer_per_box(client):
    boxes = [[10, 20, 200, 220], [300, 100, 600, 400], [1, 1, 2, 2]]
    _, result = client.predict(handle_file(str(ROCKET)), "<REGION_TO_DESCRIPTION>", "", boxes,
                               api_name="/run_task")  # fmt: skip
    assert len(result["regions"]) == 3
    assert [r["prompt_box"] for r in result["regions"]] == [[10, 20, 200, 220], [300, 100, 600, 400], [1, 1, 2, 2]]
    assert len(result["prompts"]) == 3 and all(p.startswith("<REGION_TO_DESCRIPTION><loc_") for p in result["prompts"])
    # boxes may also come as a JSON string
    _, again = client.predict(handle_file(str(ROCKET)), "REGION_TO_CATEGORY", "", "[[10, 20, 200, 220]]",
                              api_name="/run_task")  # fmt: skip
    assert len(again["regions"]) == 1


def test_review_endpoints_share_the_clients_session(tiny_app):
    client = Client(tiny_app, verbose=False)
    _, result = client.predict(handle_file(str(ROCKET)), "<REGION_TO_CATEGORY>", "", [[5, 5, 100, 100], [200, 50, 400, 300]],
                               api_name="/run_task")  # fmt: skip
    ids = result["review_ids"]
    assert len(ids) == 2
    review = client.predict([ids[0]], "accepted", api_name="/review_update")
    assert review["counts"] == {"pending": 1, "accepted": 1, "rejected": 0}
    assert [item["box_number"] for item in review["items"]] == [1, 2]  # the box each region answers
    review = client.predict(ids[1], "a rocket", api_name="/review_relabel")
    assert review["items"][1]["label"] == "a rocket"
    teaching = client.predict(0, api_name="/teaching")
    assert teaching["task"] == "<REGION_TO_CATEGORY>" and len(teaching["prompts"]) == 2
    assert teaching["num_image_tokens"] > 0
    # another client has its own, empty review
    other = Client(tiny_app, verbose=False)
    assert other.predict(api_name="/review")["items"] == []


def test_bad_requests_raise_clear_errors(client):
    with pytest.raises(Exception, match="needs at least one box"):
        client.predict(handle_file(str(ROCKET)), "<REGION_TO_OCR>", "", [], api_name="/run_task")
    with pytest.raises(Exception, match="needs a text prompt"):
        client.predict(handle_file(str(ROCKET)), "<OPEN_VOCABULARY_DETECTION>", "  ", [], api_name="/run_task")
    with pytest.raises(Exception, match="Unknown Florence-2 task"):
        client.predict(handle_file(str(ROCKET)), "<NOPE>", "", [], api_name="/run_task")
    with pytest.raises(Exception, match=r"4 numbers"):
        client.predict(handle_file(str(ROCKET)), "<REGION_TO_OCR>", "", [[1, 2, 3]], api_name="/run_task")
    with pytest.raises(Exception, match="outside"):
        client.predict(
            handle_file(str(ROCKET)), "<REGION_TO_OCR>", "", [[5000, 5000, 6000, 6000]], api_name="/run_task"
        )
