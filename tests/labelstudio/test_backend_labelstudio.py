"""The ML backend connected to a real Label Studio: "retrieve predictions" and a smart tool, end to end.

Label Studio (``labelstudio_server``, the version ``make labelstudio`` installs) is
the caller here, not a test client: it checks the backend when it is connected
(``/health``, ``/setup``), sends it the project's tasks when the Data Manager's
"Retrieve predictions" action runs, stores what comes back, and forwards a smart
tool's rectangle (``interactive-annotating``). The backend runs in-process with
uvicorn on 127.0.0.1, with :class:`RecordedEngine` (real pipeline, golden
Florence-2 answers), and reads the uploaded images from Label Studio with its key.
Connecting a backend on a local address needs ``ML_BLOCK_LOCAL_IP=false`` and
``SSRF_PROTECTION_ENABLED=false`` (:func:`florence_ui.labelstudio.server.start` sets them);
without them Label Studio answers 403 "URL resolves to a reserved network address".
"""

from __future__ import annotations

import threading
import time

import pytest
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from PIL import Image
from recorded_engine import RecordedEngine

from florence_ui.core.labels import LabeledImage, regions_from_result
from florence_ui.labelstudio.backend import create_app
from florence_ui.labelstudio.backend_predict import model_version
from florence_ui.labelstudio.client import Connection, LSSettings, upload_image
from florence_ui.labelstudio.server import free_port

pytestmark = pytest.mark.labelstudio
LABELS = ("car", "door", "wheel")  # the golden <OD> answer's classes (the Beetle photo)
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          + "".join(f'<Label value="{label}"/>' for label in LABELS) + "</RectangleLabels></View>")  # fmt: skip
#: the images' sizes: the golden Beetle photo's, and another golden image's (percent must follow each size)
SIZES = {"beetle": (640, 480), "australia": (1300, 876)}
BIN = 100 / 1000  # one <loc_N> bin, in percent: the most a box may move on its way through the tokens


class BackendServer:
    """The backend on 127.0.0.1 with uvicorn in a thread; ``stop()`` ends it."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="ml-backend", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60  # a wait for the socket, not a timed assert
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the ML backend did not start listening on 127.0.0.1")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def recorded(tiny_checkpoint, golden) -> RecordedEngine:
    return RecordedEngine.from_checkpoint(tiny_checkpoint, golden)


@pytest.fixture(scope="module")
def backend(labelstudio_server, recorded):
    if not labelstudio_server.running:
        labelstudio_server.restart()
    app = create_app(recorded, ls_url=labelstudio_server.url, ls_api_key=labelstudio_server.token)
    server = BackendServer(app)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(labelstudio_server) -> LabelStudio:
    """Label Studio's own client, with room for it to wait on the backend (CPU generation on a busy machine)."""
    return LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token, timeout=300)


@pytest.fixture(scope="module")
def project(labelstudio_server, sdk, backend):
    """A project with the golden classes, one uploaded image per size, and the backend connected."""
    conn = Connection.of(LSSettings(url=labelstudio_server.url, api_key=labelstudio_server.token, timeout=60))
    made = sdk.projects.create(title="Florence-2 ML backend", label_config=CONFIG)
    tasks: dict[int, tuple[str, Image.Image]] = {}
    for name, size in SIZES.items():
        image = Image.new("RGB", size, (40, 160, 150))
        upload_id, reference = upload_image(conn, made.id, LabeledImage(*size, image=image, name=f"{name}.png"))
        task = sdk.tasks.create(project=made.id, data={"image": reference}, file_upload=upload_id)
        tasks[int(task.id)] = (name, image)
    try:
        ml = sdk.ml.create(url=backend.url, project=made.id, title="Florence-2", is_interactive=True)
    except ApiError as exc:
        if exc.status_code == 403 and "reserved network address" in str(exc.body):
            pytest.fail("Label Studio refused a backend on 127.0.0.1: florence_ui.labelstudio.server.start must "
                        "set ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false")  # fmt: skip
        raise
    return made.id, int(ml.id), tasks


def percent(xyxy, size) -> list[float]:
    (x1, y1, x2, y2), (w, h) = xyxy, size
    return [x1 / w * 100, y1 / h * 100, (x2 - x1) / w * 100, (y2 - y1) / h * 100]


def pixels(box, size) -> list[float]:
    """Label Studio's percent ``x, y, width, height`` back to pixel ``x1, y1, x2, y2``."""
    (x, y, w, h), (width, height) = box, size
    return [x * width / 100, y * height / 100, (x + w) * width / 100, (y + h) * height / 100]


def boxes_of(prediction: dict) -> list[tuple[str, list[float], tuple[int, int]]]:
    out = []
    for region in prediction["result"]:
        if region["type"] == "rectanglelabels":
            v = region["value"]
            [label] = v["rectanglelabels"]
            out.append((label, [v["x"], v["y"], v["width"], v["height"]],
                        (region["original_width"], region["original_height"])))  # fmt: skip
    return sorted(out)


def test_label_studio_connects_the_backend(sdk, project, backend, recorded):
    _, ml_id, _ = project
    ml = sdk.ml.get(id=ml_id)
    assert ml.url == backend.url and ml.is_interactive
    state = getattr(ml.state, "value", ml.state)
    assert state != "ER", f"Label Studio could not set the backend up: {ml.error_message}"
    assert ml.model_version in ("", None, model_version(recorded.model_id, recorded.revision))


def test_retrieve_predictions_stores_florence_boxes_on_every_task(sdk, project, recorded, golden):
    project_id, _, tasks = project
    version = model_version(recorded.model_id, recorded.revision)
    sdk.actions.create(id="retrieve_tasks_predictions", project=project_id,
                       selected_items={"all": True, "excluded": []})  # fmt: skip
    stored = {int(t.id): t for t in sdk.tasks.list(project=project_id, fields="all")}
    assert set(stored) == set(tasks)
    golden_od = next(v for v in golden["vectors"] if v["task"] == "<OD>" and v["image"] == "beetle")
    for task_id, (name, image) in tasks.items():
        predictions = [p if isinstance(p, dict) else p.model_dump() for p in stored[task_id].predictions or []]
        assert len(predictions) == 1, f"task {task_id} ({name}): {len(predictions)} predictions"
        [prediction] = predictions
        assert prediction["model_version"] == version
        got = boxes_of(prediction)
        # what the engine itself answers for this image, in pixels, as percent of this image's size
        want = sorted((r.label, percent(r.xyxy, image.size), image.size)
                      for r in regions_from_result(recorded.run(image, "<OD>")))  # fmt: skip
        assert [g[0] for g in got] == [w[0] for w in want] == sorted(golden_od["expected"]["labels"])
        for (_, box, size), (_, expected, want_size) in zip(got, want, strict=True):
            assert size == want_size == image.size
            assert box == pytest.approx(expected, abs=1e-3)
        if image.size == tuple(golden_od["image_size"]):  # and the real model's pixels, independently
            real = sorted(zip(golden_od["expected"]["labels"], golden_od["expected"]["boxes_xyxy"], strict=True))
            for (_, box, _), (_, xyxy) in zip(got, real, strict=True):
                assert pixels(box, image.size) == pytest.approx(xyxy, abs=1.0)  # the golden file's tolerance


def test_a_smart_tool_rectangle_is_answered_with_its_category(sdk, project, recorded):
    _, ml_id, tasks = project
    task_id = next(t for t, (name, _) in tasks.items() if name == "beetle")
    drawn = {"x": 5.2, "y": 33.2, "width": 88.0, "height": 44.2, "rotation": 0}  # around the whole car
    context = {"result": [{"id": "drawn1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                           "original_width": 640, "original_height": 480, "image_rotation": 0, "origin": "manual",
                           "value": {**drawn, "rectanglelabels": ["car"]}}]}  # fmt: skip
    calls = len(recorded.calls)
    answer = sdk.ml.with_raw_response.predict_interactive(id=ml_id, task=task_id, context=context).response
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert not body.get("errors"), body
    assert [c["task"] for c in recorded.calls[calls:]] == ["<REGION_TO_CATEGORY>"]
    data = body["data"]
    assert data["model_version"] == model_version(recorded.model_id, recorded.revision)
    [(label, box, size)] = boxes_of(data)
    assert label == "car" and size == (640, 480)
    assert box == pytest.approx([drawn["x"], drawn["y"], drawn["width"], drawn["height"]], abs=2 * BIN)


@pytest.mark.e2e
def test_label_studios_editor_shows_the_backends_boxes(labelstudio_server, sdk, project, recorded):
    """Chromium in Label Studio's own editor: the task opened shows the backend's prediction, region by region."""
    import os
    from pathlib import Path

    from browser import chromium_page
    from test_labelstudio_browser import login

    from florence_ui.labelstudio.client import Connection, LSSettings

    project_id, _, tasks = project
    task_id = next(t for t, (name, _) in tasks.items() if name == "beetle")
    task = sdk.tasks.get(id=task_id)
    if not task.predictions:  # run alone: ask the backend now
        sdk.actions.create(id="retrieve_tasks_predictions", project=project_id,
                           selected_items={"all": False, "included": [task_id]})  # fmt: skip
        task = sdk.tasks.get(id=task_id)
    [prediction] = [p if isinstance(p, dict) else p.model_dump() for p in task.predictions]
    labels = sorted(label for label, _box, _size in boxes_of(prediction))
    with chromium_page(1400, 1000) as page:
        login(page, labelstudio_server)
        page.goto(Connection.of(LSSettings(url=labelstudio_server.url, api_key=labelstudio_server.token))
                  .task_url(project_id, task_id))  # the link a push shows  # fmt: skip
        nodes = page.locator(".lsf-tree__node")
        nodes.first.wait_for(timeout=90_000)  # Label Studio opens the prediction as the task's draft
        page.mouse.move(5, 5)
        page.wait_for_function(f"() => document.querySelectorAll('.lsf-tree__node').length >= {len(labels)}")
        if os.environ.get("FLORENCE_UI_SCREENSHOTS"):
            shots = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "labelstudio-backend.png"))
        rows = [text.split("\n") for text in nodes.all_inner_texts()]
    assert sorted(row[1] for row in rows) == labels
