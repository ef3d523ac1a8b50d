"""One image identity everywhere (issue 12, item 4), and sessions that hold polygons, not masks (item 10).

A photo is the sha256 of its file's bytes wherever it enters: ``florence-ui
push`` (the CLI hashes the file), the page (the upload's bytes are kept), the
batch loop and :class:`LabeledImage`. Pushing one photo from the CLI and then
from the page must find one Label Studio task. Images with no file, or turned
in the annotator, are keyed by a canonical encoding of their pixels.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from florence_ui.batch.results_file import labeled_images, load_parser
from florence_ui.batch.runner import load_image
from florence_ui.core.labels import LabeledImage
from florence_ui.core.review import ACCEPTED
from florence_ui.ui.controller import Controller
from florence_ui.ui.session import UISession


def write_jpeg(path: Path, size: tuple[int, int] = (640, 480), orientation: int | None = None) -> Path:
    """A real JPEG (noise, so lossy coding matters), optionally with an EXIF orientation tag."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=85, exif=exif.tobytes())
    return path


def page_session(controller: Controller, path: Path, turns: int = 0) -> UISession:
    """The session after the page's image handler got ``path`` as gradio hands over an upload."""
    session = UISession()
    controller.set_input(session, {"image": {"path": str(path)}, "boxes": [], "orientation": turns})
    return session


def test_a_jpeg_has_one_identity_in_the_page_the_cli_and_the_batch(tmp_path, engine):
    photo = write_jpeg(tmp_path / "photo.jpg", orientation=6)  # EXIF-turned: the pixels differ from the bytes
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()  # what `sha256sum photo.jpg` prints
    session = page_session(Controller(engine), photo)
    assert session.image.size == (480, 640)  # EXIF applied for the model and the drawing
    assert session.review.image_key == sha
    assert session.labeled_image().image_hash == sha
    assert session.labeled_image().image_bytes() == photo.read_bytes()  # Label Studio gets the file itself
    assert LabeledImage(480, 640, image_path=str(photo)).image_hash == sha  # the CLI's LabeledImage
    assert load_image(str(photo))[1] == sha  # the batch loop's image_sha256
    from florence_ui.core.images import image_identity  # the one rule (new in issue 12)

    assert image_identity(photo) == image_identity(photo.read_bytes()) == sha


def test_the_page_keeps_the_upload_when_gradio_drops_its_copy(tmp_path, engine):
    upload = write_jpeg(tmp_path / "upload.jpg")
    data = upload.read_bytes()
    session = page_session(Controller(engine), upload)
    upload.unlink()  # gradio's cache may be cleaned before the push
    item = session.labeled_image()
    assert item.image_bytes() == data and item.image_hash == hashlib.sha256(data).hexdigest()
    from florence_ui.labelstudio.convert import image_name

    assert image_name(item).endswith(".jpg")  # JPEG bytes keep a JPEG name


def test_images_without_a_file_and_turned_images_are_keyed_by_their_pixels(tmp_path, engine):
    from florence_ui.core.images import canonical_bytes, image_identity

    controller = Controller(engine)
    photo = write_jpeg(tmp_path / "photo.jpg")
    turned = page_session(controller, photo, turns=1)
    pixels = turned.image
    assert pixels.size == (480, 640)
    want = hashlib.sha256(canonical_bytes(pixels)).hexdigest()
    assert turned.review.image_key == turned.labeled_image().image_hash == want
    assert want != hashlib.sha256(photo.read_bytes()).hexdigest()  # the turned frame is another image
    with Image.open(io.BytesIO(turned.labeled_image().image_bytes())) as sent:  # what Label Studio would get
        assert sent.size == (480, 640) and np.array_equal(np.asarray(sent.convert("RGB")), np.asarray(pixels))
    # a pasted canvas (an array, no file): the same rule, wherever it is hashed
    pasted = UISession()
    array = np.asarray(pixels)
    controller.set_input(pasted, {"image": array, "boxes": []})
    assert pasted.review.image_key == want == image_identity(array)
    assert LabeledImage(480, 640, image=pixels).image_hash == want
    assert canonical_bytes(pixels).startswith(b"P6\n480 640\n255\n")


@pytest.mark.labelstudio
def test_one_photo_pushed_from_the_cli_and_from_the_page_is_one_task(tmp_path, golden, tiny_checkpoint, engine,
                                                                     labelstudio_server):  # fmt: skip
    from label_studio_sdk import LabelStudio

    from florence_ui.cli import main
    from florence_ui.labelstudio.client import LSSettings, create_project
    from florence_ui.ui import labelstudio_tab as tab

    photo = write_jpeg(tmp_path / "beetle.jpg")
    vec = next(v for v in golden["vectors"] if v["image"] == "beetle" and v["task"] == "<OD>")
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"image": str(photo), "width": 640, "height": 480, "task": "<OD>",
                                   "text_input": None, "boxes": None, "generated_text": vec["generated_text"],
                                   "model": vec["model"]}) + "\n")  # fmt: skip
    items = labeled_images([json.loads(results.read_text())], load_parser(str(tiny_checkpoint)))
    settings = LSSettings(url=labelstudio_server.url, api_key=labelstudio_server.token)
    project = create_project(settings, "one photo, two ways", items)
    cli = ["push", str(results), "--url", labelstudio_server.url, "--api-key", labelstudio_server.token,
           "--model", str(tiny_checkpoint), "--project", str(project)]  # fmt: skip
    assert main(cli) == 0

    # the page: the upload comes in through the image handler, the golden answer is reviewed and accepted
    session = page_session(Controller(engine), photo)
    session.review.add_result(engine.parse("<OD>", vec["generated_text"], (640, 480)))
    session.review.set_all(ACCEPTED)
    out = tab.on_push(session, labelstudio_server.url, labelstudio_server.token, tab.EXISTING, project, "", "ask",
                      [], "upload", "")  # fmt: skip
    assert "updated" in out[2] and "created" not in out[2], out[2]

    client = LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.token)
    tasks = list(client.tasks.list(project=project))
    assert len(tasks) == 1
    assert tasks[0].data["florence_ui_image_hash"] == hashlib.sha256(photo.read_bytes()).hexdigest()


# ---- item 10: results keep polygons, not (n, H, W) masks -------------------------------------------------
def array_bytes(obj, seen: set[int] | None = None) -> int:
    """Bytes of every numpy array reachable from ``obj`` (dataclasses, containers, sv.Detections, object arrays)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | Image.Image) or obj is None:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        own = obj.nbytes
        return own + (sum(array_bytes(v, seen) for v in obj.ravel()) if obj.dtype == object else 0)
    if isinstance(obj, dict):
        return sum(array_bytes(k, seen) + array_bytes(v, seen) for k, v in obj.items())
    if isinstance(obj, list | tuple | set):
        return sum(array_bytes(v, seen) for v in obj)
    if is_dataclass(obj):
        return sum(array_bytes(getattr(obj, f.name), seen) for f in fields(obj))
    return sum(array_bytes(v, seen) for v in getattr(obj, "__dict__", {}).values())


def test_a_session_after_a_big_segmentation_run_holds_polygons_not_masks(tiny_checkpoint, golden):
    from recorded_engine import RecordedEngine

    engine = RecordedEngine.from_checkpoint(tiny_checkpoint, golden)
    controller = Controller(engine)
    width, height = 2000, 1500  # 3 MP: 64 eager masks would be 192 MB (a 50 MP photo: 3.2 GB)
    session = UISession()
    controller.set_input(session, {"image": np.full((height, width, 3), 90, np.uint8), "boxes": []})
    step_x, step_y = width // 8, height // 8
    boxes = [[c * step_x, r * step_y, (c + 1) * step_x - 1, (r + 1) * step_y - 1] for r in range(8) for c in range(8)]
    result = controller.run(session, "<REGION_TO_SEGMENTATION>", boxes=boxes)
    result_key = session.review.image_key
    assert len(result.detections) == 64 and all(len(p) for p in result.detections.data["polygons"])
    one_mask = width * height
    assert array_bytes(session) < one_mask // 10  # far below even one full-resolution mask
    # leaving the image archives its review and runs: still no masks there
    controller.set_input(session, {"image": np.full((48, 64, 3), 10, np.uint8), "boxes": []})
    assert len(session.archive) == 1 and array_bytes(session) < one_mask // 10
    # the review keeps every part, so export and Label Studio lose nothing (masks on demand: test_golden.py)
    review, _ = session.archive[result_key]
    assert [len(i.region.polygons) for i in review.items] == [len(p) for p in result.detections.data["polygons"]]
