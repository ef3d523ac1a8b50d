"""The bad-input catalogue through the page's controller (what every button calls), on the real tiny model.

For each case: the expected clear error or working answer, and then the
session goes on (the same session runs another task) and keeps its accepted
work (the caption accepted before the case is still accepted). The same
catalogue goes through ``gradio_client`` in ``e2e/test_e2e_bad_input.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from bad_inputs import CASES, ROCKET, Case, build_files, no_locations
from PIL import Image

from florence_ui.core.images import ImageLoadError, open_image
from florence_ui.core.review import ACCEPTED
from florence_ui.model.engine import GenerationSettings, InputError
from florence_ui.ui.controller import Controller
from florence_ui.ui.session import UISession

SETTINGS = GenerationSettings(max_new_tokens=16, num_beams=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("bad-inputs"))


@pytest.fixture(scope="module")
def controller(engine) -> Controller:
    return Controller(engine, SETTINGS)


def reviewed_session(controller: Controller) -> tuple[UISession, int]:
    """A session on the rocket photo with its caption accepted: the work that must survive every case."""
    session = UISession()
    controller.set_input(session, {"image": str(ROCKET), "boxes": []})
    controller.run(session, "<CAPTION>", settings=SETTINGS)
    item = session.review.items[-1]
    session.review.set_status([item.id], ACCEPTED)
    return session, item.id


def run_case(controller: Controller, session: UISession, case: Case, path) -> tuple[str, object]:
    """One request as the page makes it: sync the image, then run the task (bad input → a typed error)."""
    try:
        controller.set_input(session, {"image": str(path), "boxes": []})
        settings = controller.settings_for(case.max_new_tokens or SETTINGS.max_new_tokens, 1)
        with no_locations(controller.engine, case.no_loc):
            result = controller.run(session, case.task, case.text, settings, boxes=case.boxes or None)
    except (InputError, ImageLoadError, ValueError) as exc:
        return "error", str(exc)
    return "ok", result


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_through_the_controller(case: Case, controller, files):
    session, accepted_id = reviewed_session(controller)
    size_before = session.image.size
    outcome, value = run_case(controller, session, case, files[case.image])
    if case.expect == "error":
        assert outcome == "error", f"expected an error, got a result for {case.id}"
        assert re.search(case.match, value), value
        assert session.image is not None and session.image.size == size_before  # the picture was not replaced
    else:
        assert outcome == "ok", f"{case.id} failed: {value}"
        result = value.to_dict()
        if case.match:
            assert re.search(case.match, " ".join(value.notes)), value.notes
        if case.check:
            case.check(result)
    # the session goes on, and the accepted caption is still there (restored with its image)
    controller.set_input(session, {"image": str(ROCKET), "boxes": []})
    assert session.review.get(accepted_id).status == ACCEPTED
    controller.run(session, "<OD>", settings=SETTINGS)
    assert session.review.runs >= 2


def test_catalogue_has_at_least_25_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 25


def test_pixel_cap_is_configurable(monkeypatch, tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setenv("FLORENCE_UI_MAX_PIXELS", "5000")
    with pytest.raises(ImageLoadError, match="100×100 pixels, more than the 5,000 allowed"):
        open_image(path)
    monkeypatch.setenv("FLORENCE_UI_MAX_PIXELS", "20000")
    assert open_image(path).size == (100, 100)


def test_pillow_bomb_limit_stays_above_our_cap(files):
    """With our cap raised past Pillow's hard limit, Pillow still refuses the 3.6-gigapixel bomb."""
    limit = 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        open_image(files["bomb"], max_pixels=limit * 100)


def test_animated_gif_uses_the_first_frame(files):
    assert open_image(files["gif"]).getpixel((10, 10)) == (255, 0, 0)


def test_exif_rotated_box_covers_what_was_drawn(controller, files):
    """The blue band lies along the top of the upright photo: a box drawn there covers blue pixels."""
    session = UISession()
    controller.set_input(session, {"image": str(files["exif_rotated"]), "boxes": []})
    assert session.image.size == (100, 200)
    r, g, b = np.asarray(session.image.crop((10, 5, 90, 50))).reshape(-1, 3).mean(axis=0)
    assert b > 200 and r < 60 and g < 60


def test_bad_upload_keeps_the_previous_picture_and_review(controller, files):
    session, accepted_id = reviewed_session(controller)
    for name in ("corrupt_jpeg", "text_as_jpg", "empty", "huge", "bomb"):
        with pytest.raises(ImageLoadError):
            controller.set_input(session, {"image": str(files[name]), "boxes": []})
        assert session.image.size == (640, 427)
        assert session.review.get(accepted_id).status == ACCEPTED


def test_switching_images_archives_and_restores_the_review(controller, files):
    session, accepted_id = reviewed_session(controller)
    controller.set_input(session, {"image": str(files["gray"]), "boxes": []})
    assert session.review.items == []
    controller.set_input(session, None)  # the user clears the picture
    controller.set_input(session, {"image": str(ROCKET), "boxes": []})
    assert session.review.get(accepted_id).status == ACCEPTED
    assert len(session.results) == 1


def test_an_answer_that_arrives_after_an_image_switch_goes_to_its_own_image(controller, files):
    """The upload event runs beside the model event: a switch mid-run must not put A's regions on B."""
    session, accepted_id = reviewed_session(controller)

    class SwitchDuringRun:  # the real engine; the user opens another image while it answers
        def __init__(self, engine):
            self.engine = engine

        def run(self, *args, **kwargs):
            result = self.engine.run(*args, **kwargs)
            controller.set_input(session, {"image": str(files["gray"]), "boxes": []})
            return result

    racing = Controller(SwitchDuringRun(controller.engine), SETTINGS)
    with pytest.raises(InputError, match="image changed while Florence-2 was answering"):
        racing.run(session, "<OD>", settings=SETTINGS)
    assert session.review.items == [] and session.results == []  # nothing landed on the new image
    controller.set_input(session, {"image": str(ROCKET), "boxes": []})
    assert session.review.runs == 2 and len(session.results) == 2  # the answer was filed under the rocket
    assert session.review.get(accepted_id).status == ACCEPTED
