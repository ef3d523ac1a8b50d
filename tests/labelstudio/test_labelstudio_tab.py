"""The "Label Studio & export" tab: its handlers against a real server, and the page in a browser."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pytest
from browser import chromium_page
from PIL import Image

from florence_ui.core.review import ACCEPTED
from florence_ui.labelstudio.server import free_port
from florence_ui.ui import labelstudio_tab as tab
from florence_ui.ui.session import UISession

pytestmark = pytest.mark.labelstudio


def reviewed_session(engine, golden) -> UISession:
    """A session whose current image has the golden <OD> and <CAPTION> answers, all accepted."""
    session = UISession()
    session.set_image(Image.new("RGB", (640, 480), (30, 140, 120)), "beetle.png")
    for vec in golden["vectors"]:
        if vec["image"] == "beetle" and vec["task"] in ("<OD>", "<CAPTION>"):
            session.review.add_result(engine.parse(vec["task"], vec["generated_text"], (640, 480)))
    session.review.set_all(ACCEPTED)
    return session


def flat(outputs) -> str:
    """Everything a handler sends back to the page, as text."""
    return repr(outputs) + "".join(str(o) for o in outputs)


def test_key_is_stored_never_echoed(labelstudio_server, engine, golden, caplog):
    caplog.set_level(logging.DEBUG)
    session = reviewed_session(engine, golden)
    out = tab.on_test(session, labelstudio_server.url, labelstudio_server.token)
    assert out[1].startswith("✅ Connected as **florence-ui@localhost")
    assert out[2]["value"] == ""  # the key box is emptied once the key is stored
    assert isinstance(session.labelstudio["api_key"], tab.Secret)
    assert labelstudio_server.token not in flat(out) + repr(session) + caplog.text
    # the next actions use the stored key without it being typed again
    check = tab.on_check(session, labelstudio_server.url, "", tab.NEW, None)
    assert "RectangleLabels ['car', 'door', 'wheel']" in check[2]
    out = tab.on_push(session, labelstudio_server.url, "", tab.NEW, None, "tab push", "add", [], "upload", "")
    assert out[2].startswith("✅ Pushed and verified"), out[2]
    assert "created" in out[2] and "regions pushed 4 of 4 accepted" in out[2] and "1 text(s)" in out[2]
    project = session.labelstudio["created_project"]
    again = tab.on_push(session, labelstudio_server.url, "", tab.NEW, None, "tab push", "add", [], "upload", "")
    assert "updated" in again[2] and session.labelstudio["created_project"] == project  # same project, same task
    assert labelstudio_server.token not in flat(out) + flat(again) + caplog.text


def test_wrong_key_and_dead_server_keep_the_session(labelstudio_server, engine, golden):
    session = reviewed_session(engine, golden)
    accepted = session.review.counts()[ACCEPTED]
    out = tab.on_test(session, labelstudio_server.url, "definitely-wrong-key-123456")
    assert out[1].startswith("> ⚠️") and "refused the API key" in out[1]
    assert "definitely-wrong-key-123456" not in flat(out)
    dead = f"http://127.0.0.1:{free_port()}"
    out = tab.on_push(session, dead, labelstudio_server.token, tab.NEW, None, "x", "add", [], "upload", "")
    assert "cannot reach Label Studio" in out[2] and labelstudio_server.token not in flat(out)
    assert session.review.counts()[ACCEPTED] == accepted  # nothing lost: push again later
    out = tab.on_push(UISession(), labelstudio_server.url, "", tab.NEW, None, "x", "add", [], "upload", "")
    assert "Load an image" in out[2]


def test_existing_project_with_other_labels_mapping(labelstudio_server, engine, golden):
    from label_studio_sdk import LabelStudio

    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
              '<Label value="vehicle"/><Label value="tyre"/></RectangleLabels>'
              '<TextArea name="caption" toName="image"/></View>')  # fmt: skip
    client = LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)
    project = client.projects.create(title="their labels (tab)", label_config=config).id
    session = reviewed_session(engine, golden)
    tab.remember_connection(session, labelstudio_server.url, labelstudio_server.token)
    url = labelstudio_server.url  # the URL box always sends its value; the key box is empty once stored
    _, _, message, rows = tab.on_check(session, url, "", tab.EXISTING, project)
    assert message.startswith("⚠️") and "'door'" in message
    assert sorted(r[0] for r in rows) == ["car", "door", "wheel"]
    out = tab.on_push(session, url, "", tab.EXISTING, project, "", "ask", rows, "upload", "")
    assert "Choose: add them" in out[2]  # nothing pushed until the user chooses
    rows = [[label, n, {"car": "vehicle", "wheel": "tyre"}.get(label, "")] for label, n, _ in rows]
    out = tab.on_push(session, url, "", tab.EXISTING, project, "", "map", rows, "upload", "")
    assert "door" in out[2] and out[2].startswith("> ⚠️")  # 'door' is still unmapped
    rows[[r[0] for r in rows].index("door")][2] = "vehicle"
    out = tab.on_push(session, url, "", tab.EXISTING, project, "", "map", rows, "upload", "")
    assert out[2].startswith("✅"), out[2]
    (task,) = list(client.tasks.list(project=project))
    (pred,) = task.predictions
    result = pred["result"] if isinstance(pred, dict) else pred.result
    assert sorted(r["value"]["rectanglelabels"][0] for r in result if "rectanglelabels" in r["value"]) == [
        "tyre", "tyre", "vehicle", "vehicle"]  # fmt: skip


def test_downloads(engine, golden):
    session = reviewed_session(engine, golden)
    for fmt, suffixes in (("labelstudio", [".json", ".xml"]), ("coco", [".zip"]), ("yolo", [".zip"])):
        files, message = tab.on_download(session, fmt)
        assert [Path(f).suffix for f in files] == suffixes and all(Path(f).stat().st_size for f in files)
        assert "4 region(s) exported" in message
    files, message = tab.on_download(UISession(), "coco")
    assert "Load an image" in message


@pytest.mark.e2e
def test_tab_in_a_browser_never_shows_the_key(labelstudio_server, engine, golden, artifacts_dir):
    seeded = reviewed_session(engine, golden)
    with gr.Blocks() as demo:
        state = gr.State(seeded)
        with gr.Tab("Label Studio & export"):
            tab.build(state)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with chromium_page(1400, 1600) as page:
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#ls-url input, #ls-url textarea", labelstudio_server.url)
            page.fill("#ls-key input, #ls-key textarea", labelstudio_server.token)
            page.click("#ls-test")
            page.get_by_text("Connected as", exact=False).wait_for(timeout=30_000)
            page.fill("#ls-title input, #ls-title textarea", "pushed from the tab")
            page.click("#ls-push")
            page.get_by_text("Pushed and verified", exact=False).wait_for(timeout=60_000)
            html = page.content()
            key_box = page.locator("#ls-key input").input_value()
            link = page.locator("#ls-push-result a").first.get_attribute("href")
            page.screenshot(path=str(artifacts_dir / "labelstudio_tab.png"), full_page=True)
    finally:
        demo.close()
    assert key_box == "" and labelstudio_server.token not in html
    assert link.startswith(f"{labelstudio_server.url}/projects/")
