"""The Florence-2 ML backend over HTTP: the protocol, the image-host rule, labels, coordinates, auth, overload.

The engine is :class:`RecordedEngine` (real pipeline, golden Florence-2 answers
replayed), so labels and boxes are what Florence-2 really says about the Beetle
photo. "Label Studio" is a small HTTP server on 127.0.0.1 that serves uploaded
files only with the right ``Authorization: Token`` header and records every
request; another host is a :class:`CaptureServer` that must see nothing.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from capture_server import CaptureServer
from fastapi.testclient import TestClient
from PIL import Image
from recorded_engine import RecordedEngine

from florence_ui.labelstudio.backend import BackendSettings, create_app
from florence_ui.labelstudio.backend_config import Plan
from florence_ui.labelstudio.backend_predict import KEYPOINT_BOX, model_version

KEY = "legacy-key-0123456789abcdef"
SIZE = (640, 480)  # the golden Beetle answers' image size
UPLOAD = "/data/upload/1/beetle.png"

OD_CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="label" toName="image"><Label value="Car"/><Label value="Tyre" predicted_values="wheel"/>
</RectangleLabels></View>"""
OPEN_CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="label" toName="image"><Label value="Beetle"/></RectangleLabels></View>"""
CAPTION_CONFIG = """<View><Image name="image" value="$image"/><TextArea name="caption" toName="image"/>
<RectangleLabels name="label" toName="image" florence_task="none"><Label value="Car"/></RectangleLabels></View>"""


def png(size=SIZE) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (40, 160, 150)).save(buf, format="PNG")
    return buf.getvalue()


class FakeLabelStudio:
    """Serves ``UPLOAD`` to requests carrying ``Token KEY``; 401 otherwise; records (path, authorization)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        body, owner = png(), self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                owner.seen.append((self.path, auth))
                ok = self.path == UPLOAD and auth == f"Token {KEY}"
                payload = body if ok else b'{"detail": "Authentication credentials were not provided."}'
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "image/png" if ok else "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def recorded(tiny_checkpoint, golden) -> RecordedEngine:
    return RecordedEngine.from_checkpoint(tiny_checkpoint, golden)


@pytest.fixture(scope="module")
def ls():
    server = FakeLabelStudio()
    yield server
    server.close()


@pytest.fixture
def client(recorded, ls):
    app = create_app(recorded, ls_url=ls.url, ls_api_key=KEY)
    with TestClient(app) as c:
        yield c


def task(url: str = UPLOAD, task_id: int = 7) -> dict:
    return {"id": task_id, "data": {"image": url}}


def predict(client, config: str, tasks: list[dict], context: dict | None = None):
    body = {"tasks": tasks, "project": "1.1700000000", "label_config": config}
    if context is not None:
        body["params"] = {"context": context}
    return client.post("/predict", json=body)


def golden_vector(golden, task_token: str, image: str = "beetle") -> dict:
    return next(v for v in golden["vectors"] if v["task"] == task_token and v["image"] == image)


# ---- protocol ----------------------------------------------------------------------------
def test_health_and_setup_speak_the_protocol(client, recorded):
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["model_class"]
    version = model_version(recorded.model_id, recorded.revision)
    assert version.startswith("florence-2-base-ft@") and health["model_version"] == version
    setup = client.post("/setup", json={"project": "1.1700000000", "schema": OD_CONFIG, "hostname": "http://x"})
    assert setup.status_code == 200 and setup.json() == {"model_version": version}
    bad = client.post("/setup", json={"project": "1.1", "schema": "<View><Text name='t' value='$t'/></View>"})
    assert bad.status_code == 400 and "Image" in bad.json()["detail"]
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}).status_code == 200
    assert client.get("/versions").json()["versions"] == [version]  # Label Studio's model-version picker


def test_model_version_is_size_and_revision():
    assert model_version("microsoft/Florence-2-large", "abc123") == "florence-2-large@abc123"
    assert model_version("microsoft/Florence-2-base-ft", None) == "florence-2-base-ft@main"
    assert model_version("/models/my-checkpoint/", "r1") == "florence-2-my-checkpoint@r1"


# ---- automatic pre-annotation ----------------------------------------------------------------
def test_od_labels_map_onto_the_config_and_coordinates_round_trip(client, recorded, golden, ls):
    ls.seen.clear()
    calls = len(recorded.calls)
    answer = predict(client, OD_CONFIG, [task()])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [prediction] = body["results"]
    assert [c["task"] for c in recorded.calls[calls:]] == ["<OD>"]  # generic labels: plain detection, one call
    assert ls.seen == [(UPLOAD, f"Token {KEY}")]
    vector = golden_vector(golden, "<OD>")
    parsed = recorded.parse("<OD>", vector["generated_text"], SIZE).regions()  # the pixels the backend had
    expected = [(row["label"], row["box"]) for row in parsed if row["label"] in ("car", "wheel")]
    regions = prediction["result"]
    # car → Car (exact, any case), wheel → Tyre (its predicted_values); door matches no label: left out, counted
    assert [r["value"]["rectanglelabels"] for r in regions] == [["Car"] if lab == "car" else ["Tyre"]
                                                                 for lab, _ in expected]  # fmt: skip
    assert body["florence_ui"]["tasks"][0]["left_out"] == [row["label"] for row in parsed].count("door") == 1
    width, height = SIZE
    for region, (_, (x1, y1, x2, y2)) in zip(regions, expected, strict=True):
        value = region["value"]
        assert (region["original_width"], region["original_height"]) == SIZE
        assert value["x"] * width / 100 == pytest.approx(x1, abs=1e-4)
        assert value["y"] * height / 100 == pytest.approx(y1, abs=1e-4)
        assert (value["x"] + value["width"]) * width / 100 == pytest.approx(x2, abs=1e-4)
        assert (value["y"] + value["height"]) * height / 100 == pytest.approx(y2, abs=1e-4)
        assert 0 < region["score"] <= 1 and region["to_name"] == "image" and region["from_name"] == "label"
    assert 0 < prediction["score"] <= 1
    assert prediction["model_version"] == body["model_version"] == model_version(recorded.model_id, recorded.revision)


def test_project_labels_run_open_vocabulary_detection_once_per_label(client, recorded):
    calls = len(recorded.calls)
    [prediction] = predict(client, OPEN_CONFIG, [task()]).json()["results"]
    asked = recorded.calls[calls:]
    assert [(c["task"], c["text"]) for c in asked] == [("<OPEN_VOCABULARY_DETECTION>", "Beetle")]
    # Florence-2 answers "a green car": no label, so the box gets the one label that was asked
    assert [r["value"]["rectanglelabels"] for r in prediction["result"]] == [["Beetle"]]


def test_caption_textarea_gets_a_caption_and_an_opted_out_control_nothing(client, recorded, golden):
    plan = Plan.from_config(CAPTION_CONFIG)
    assert [s.task.token for s in plan.steps] == ["<MORE_DETAILED_CAPTION>"]  # the table's choice
    # florence_task overrides it (the golden answers hold <CAPTION>, not the more detailed one)
    config = CAPTION_CONFIG.replace('name="caption"', 'name="caption" florence_task="CAPTION"')
    [prediction] = predict(client, config, [task()]).json()["results"]
    [text] = prediction["result"]
    expected = recorded.parse("<CAPTION>", golden_vector(golden, "<CAPTION>")["generated_text"], SIZE).text
    assert text["from_name"] == "caption" and text["value"]["text"] == [expected] and text["score"] > 0


def test_a_task_on_another_host_is_refused_and_nothing_is_requested(client, ls, caplog):
    ls.seen.clear()
    with CaptureServer(status=200) as cap, caplog.at_level(logging.INFO):
        body = predict(client, OD_CONFIG, [task(cap.url + "/data/upload/1/beetle.png", 8), task()]).json()
        assert cap.requests == []
    refused, ok = body["results"]
    assert refused == [] and ok["result"]  # no prediction for the refused task, the other one answered
    assert "not fetched" in body["florence_ui"]["tasks"][0]["refused"]
    assert any("not fetched" in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text
    for other in ("file:///etc/passwd", "s3://bucket/x.png", "//evil.example/x.png"):
        assert predict(client, OD_CONFIG, [task(other)]).json()["results"] == [[]]
    assert [path for path, _ in ls.seen] == [UPLOAD]


def test_an_allowed_host_is_read_without_the_key(recorded, ls):
    with CaptureServer(status=404) as cap:
        app = create_app(recorded, ls_url="http://127.0.0.1:9", ls_api_key=KEY, allowed_hosts=[cap.url])
        with TestClient(app) as c:
            body = predict(c, OD_CONFIG, [task(cap.url + "/photo.png")]).json()
        assert [r.path for r in cap.requests] == ["/photo.png"] and cap.seen(KEY) == []
    assert body["results"] == [[]] and "404" in body["florence_ui"]["tasks"][0]["refused"]


def test_a_data_url_needs_no_request(client, ls):
    ls.seen.clear()
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    [prediction] = predict(client, OD_CONFIG, [task(url)]).json()["results"]
    assert prediction["result"] and ls.seen == []


# ---- interactive ----------------------------------------------------------------------------------
def test_a_smart_rectangle_gets_its_category(client, recorded, golden):
    x1, y1, x2, y2 = golden_vector(golden, "<REGION_TO_CATEGORY>")["expected"]["boxes_xyxy"][0]
    width, height = SIZE
    drawn = {"x": x1 / width * 100, "y": y1 / height * 100, "width": (x2 - x1) / width * 100,
             "height": (y2 - y1) / height * 100, "rotation": 0}  # fmt: skip
    context = {"result": [{"type": "rectanglelabels", "from_name": "label", "to_name": "image", "value": drawn,
                           "original_width": width, "original_height": height, "is_positive": True}]}  # fmt: skip
    calls = len(recorded.calls)
    [prediction] = predict(client, OD_CONFIG, [task()], context).json()["results"]
    assert [c["task"] for c in recorded.calls[calls:]] == ["<REGION_TO_CATEGORY>"]
    [region] = prediction["result"]
    assert region["value"]["rectanglelabels"] == ["Car"]
    for key in ("x", "y", "width", "height"):
        assert region["value"][key] == pytest.approx(drawn[key], abs=1e-4)


def test_a_keypoint_asks_about_a_box_around_it(client, recorded):
    calls = len(recorded.calls)
    context = {"result": [{"type": "keypointlabels", "from_name": "kp", "value": {"x": 50, "y": 50}}]}
    predict(client, OD_CONFIG, [task()], context)
    [call] = recorded.calls[calls:]
    side = KEYPOINT_BOX * min(SIZE)
    x1, y1, x2, y2 = call["boxes"][0]
    assert (x2 - x1, y2 - y1) == (pytest.approx(side, abs=0.01), pytest.approx(side, abs=0.01))
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == (pytest.approx(320, abs=0.01), pytest.approx(240, abs=0.01))


def test_a_typed_text_is_grounded(client, recorded):
    calls = len(recorded.calls)
    context = {"result": [{"type": "textarea", "from_name": "prompt", "value": {"text": ["car"]}}]}
    [prediction] = predict(client, OD_CONFIG, [task()], context).json()["results"]
    assert [(c["task"], c["text"]) for c in recorded.calls[calls:]] == [("<CAPTION_TO_PHRASE_GROUNDING>", "car")]
    assert {r["value"]["rectanglelabels"][0] for r in prediction["result"]} <= {"Car", "Tyre"}


# ---- auth, secrecy, overload ----------------------------------------------------------------------
def test_basic_auth_is_required_and_the_key_never_comes_back(recorded, ls, caplog):
    app = create_app(recorded, ls_url=ls.url, ls_api_key=KEY, basic_auth=("ls", "s3cret"))
    with TestClient(app) as c, caplog.at_level(logging.DEBUG):
        assert c.get("/health").status_code == 401
        assert c.get("/health", auth=("ls", "wrong")).status_code == 401
        assert predict(c, OD_CONFIG, [task()]).status_code == 401
        ok = c.post("/predict", json={"tasks": [task("http://elsewhere.test/x.png")], "label_config": OD_CONFIG},
                    auth=("ls", "s3cret"))  # fmt: skip
        assert ok.status_code == 200 and c.get("/health", auth=("ls", "s3cret")).json()["status"] == "UP"
    assert KEY not in ok.text and KEY not in caplog.text


class Gate:
    """A generation stage that waits until the test opens it (wrapping the recorded one): a slow model."""

    def __init__(self, inner) -> None:
        self.inner, self.entered, self.release = inner, threading.Event(), threading.Event()

    def __call__(self, model, batch):
        self.entered.set()
        assert self.release.wait(60), "the test never released the slow generation"
        return self.inner(model, batch)


def test_overload_is_a_503_with_a_sentence(tiny_checkpoint, golden, ls):
    engine = RecordedEngine.from_checkpoint(tiny_checkpoint, golden)
    slow = Gate(engine.generation)
    engine.generation = slow
    app = create_app(engine, ls_url=ls.url, ls_api_key=KEY, settings=BackendSettings(max_waiting=0))
    with TestClient(app) as c:
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(r=predict(c, OD_CONFIG, [task()])))
        worker.start()
        try:
            assert slow.entered.wait(60)
            busy = predict(c, OD_CONFIG, [task()])
            assert busy.status_code == 503 and "busy" in busy.json()["detail"] and busy.headers["Retry-After"]
        finally:
            slow.release.set()
            worker.join(60)
        assert first["r"].status_code == 200 and first["r"].json()["results"][0]["result"]
        assert predict(c, OD_CONFIG, [task()]).status_code == 200  # the queue is free again


def test_the_real_generation_path_answers_in_the_protocols_shape(engine):
    """The tiny random checkpoint end to end (a real ``generate``): its answers are noise, the shape is not."""
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    app = create_app(engine, ls_url="http://127.0.0.1:9", ls_api_key=KEY)
    with TestClient(app) as c:
        response = predict(c, OD_CONFIG, [task(url, 1), task(url, 2)])
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 2 and body["model_version"].startswith("florence-2-")
    for prediction in body["results"]:
        assert prediction == [] or prediction["model_version"] == body["model_version"]
        for region in (prediction or {}).get("result", []):
            value = region["value"]
            assert 0 <= value["x"] <= 100 and 0 <= value["y"] <= 100
            assert set(value["rectanglelabels"]) <= {"Car", "Tyre"}  # only the project's own labels, never invented
