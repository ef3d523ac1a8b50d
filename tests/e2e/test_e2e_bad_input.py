"""The bad-input catalogue through ``gradio_client`` against the launched app (tiny real model).

Each case is a fresh client whose caption was accepted first; after the case,
the same client runs another task on its photo and its accepted caption is
still there. Errors must arrive as the app's own message (``gr.Error``), not
as a bare "Error" or a dropped connection. One more case needs the server's
own limit: an upload over ``max_file_size`` is refused by the web server.
"""

from __future__ import annotations

import re

import pytest
from app_server import serve
from bad_inputs import CASES, ROCKET, Case, build_files, no_locations
from gradio_client import Client, handle_file

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("bad-inputs-api"))


@pytest.fixture(scope="module")
def small_upload_app(engine, monkeypatch_module):
    monkeypatch_module.setenv("FLORENCE_UI_MAX_FILE_SIZE", "1mb")
    with serve(engine) as url:
        yield url


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def accepted_client(url: str) -> tuple[Client, int]:
    client = Client(url, verbose=False)
    _, result = client.predict(handle_file(str(ROCKET)), "<CAPTION>", "", [], 16, 1, api_name="/run_task")
    item_id = result["review_ids"][-1]
    client.predict([item_id], "accepted", api_name="/review_update")
    return client, item_id


def call(client: Client, path, case: Case):
    return client.predict(handle_file(str(path)), case.task, case.text, case.boxes, case.max_new_tokens or 16, 1,
                          api_name="/run_task")  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_through_gradio_client(case: Case, tiny_app, engine, files):
    client, accepted_id = accepted_client(tiny_app)
    try:
        with no_locations(engine, case.no_loc):
            _, result = call(client, files[case.image], case)
        outcome, value = "ok", result
    except Exception as exc:  # noqa: BLE001 - gradio_client raises AppError with the app's message
        outcome, value = "error", str(exc)
    if case.expect == "error":
        assert outcome == "error", f"expected an error for {case.id}, got {value}"
        assert re.search(case.match, value), value
    else:
        assert outcome == "ok", f"{case.id} failed: {value}"
        if case.match:
            assert re.search(case.match, " ".join(value["notes"])), value["notes"]
        if case.check:
            case.check(value)
    # the client's session goes on and its accepted caption survives
    _, again = client.predict(handle_file(str(ROCKET)), "<OD>", "", [], 16, 1, api_name="/run_task")
    assert again["image_size"] == [640, 427]
    review = client.predict(api_name="/review")
    assert {i["id"]: i["status"] for i in review["items"]}[accepted_id] == "accepted"


def test_upload_over_max_file_size_is_refused(small_upload_app, files):
    assert files["big_upload"].stat().st_size > 1_000_000
    client = Client(small_upload_app, verbose=False)
    with pytest.raises(Exception, match=r"(?i)size|large|413"):
        client.predict(handle_file(str(files["big_upload"])), "<OD>", "", [], 16, 1, api_name="/run_task")
    # a file under the limit still works on the same server
    _, result = client.predict(handle_file(str(ROCKET)), "<OD>", "", [], 16, 1, api_name="/run_task")
    assert result["image_size"] == [640, 427]
