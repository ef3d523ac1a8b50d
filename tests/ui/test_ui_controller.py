"""The page's handlers (Controller + views) driven directly, with recorded Florence-2 answers."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from recorded_engine import RecordedEngine

from florence_ui.core.images import ImageLoadError
from florence_ui.model.engine import GenerationSettings, InputError
from florence_ui.ui.controller import (
    Controller,
    annotator_value,
    box_rows,
    boxes_from_value,
    status_markdown,
    task_choices,
)
from florence_ui.ui.session import UISession
from florence_ui.ui.views import REVIEW_HEADERS, answer_text, page_views, review_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "florence_ui" / "examples"
ROCKET = EXAMPLES / "rocket.jpg"


@pytest.fixture(scope="module")
def recorded(tiny_checkpoint, golden) -> RecordedEngine:
    return RecordedEngine.from_checkpoint(tiny_checkpoint, golden)


@pytest.fixture
def controller(recorded) -> Controller:
    recorded.force_truncated = False
    return Controller(recorded, GenerationSettings(32, 1))


def value(path=ROCKET, boxes=(), turns=0) -> dict:
    """The annotator's value: it keeps the newest box first."""
    drawn = [{"xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3], "label": ""} for b in boxes]
    return {"image": str(path), "boxes": list(reversed(drawn)), "orientation": turns}


def session_with(controller, boxes=()) -> UISession:
    session = UISession()
    controller.set_input(session, value(boxes=boxes))
    return session


def test_task_choices_cover_the_catalogue_whole_image_first():
    choices = task_choices()
    assert len(choices) == 15
    assert choices[0][1] == "<CAPTION>" and choices[-1][1].startswith("<REGION_TO")
    assert dict(choices)["Region to description — uses your boxes"] == "<REGION_TO_DESCRIPTION>"


def test_input_sync_keeps_drawing_order_and_resets_on_a_new_image(controller):
    session = UISession()
    assert controller.set_input(session, value(boxes=[[1, 2, 30, 40], [50, 60, 70, 80]])) is True
    assert session.boxes == [[1, 2, 30, 40], [50, 60, 70, 80]]
    assert session.image.size == (640, 427)
    assert box_rows(session.boxes)[1] == [2, 50, 60, 70, 80, "20×20"]
    controller.run(session, "<OD>")
    # more boxes on the same image: no reset
    assert controller.set_input(session, value(boxes=[[1, 2, 30, 40]])) is False
    assert session.review.runs == 1
    # another image: the review starts over
    assert controller.set_input(session, value(EXAMPLES / "coffee.jpg")) is True
    assert session.review.items == [] and session.results == [] and session.boxes == []
    # the annotator's value round-trips (newest first, numbered)
    session.boxes = [[1, 2, 3, 4], [5, 6, 7, 8]]
    round_trip = annotator_value(session)
    assert [b["label"] for b in round_trip["boxes"]] == ["#2", "#1"]
    assert boxes_from_value(round_trip) == session.boxes
    # clearing the image clears everything
    assert controller.set_input(session, None) is True
    assert session.image is None and annotator_value(session) is None


def test_exif_orientation_and_annotator_rotation_are_honoured(controller, tmp_path):
    upright = Image.open(ROCKET).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone would store
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    session = UISession()
    controller.set_input(session, value(path))
    assert session.image.size == upright.size
    controller.set_input(session, value(ROCKET, turns=1))
    assert session.image.size == (427, 640)


def test_corrupt_upload_is_a_clear_error(controller, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageLoadError, match="broken.png"):
        controller.set_input(UISession(), value(broken))


def test_region_task_answers_every_box_in_one_call(controller, recorded):
    boxes = [[20, 30, 200, 260], [300, 80, 620, 400]]
    session = session_with(controller, boxes)
    result = controller.run(session, "<REGION_TO_DESCRIPTION>")
    assert recorded.calls[-1]["boxes"] == boxes
    assert len(result.detections) == 2
    rows = review_rows(session)
    assert [r[1] for r in rows] == [1, 2]
    assert [r[4] for r in rows] == ["turquoise Volkswagen Beetle"] * 2
    assert rows[0][6] == "[20.0, 30.0, 200.0, 260.0]" and rows[1][6] == "[300.0, 80.0, 620.0, 400.0]"
    assert answer_text(result) == "#1: turquoise Volkswagen Beetle\n#2: turquoise Volkswagen Beetle"
    assert "model time" in session.status and "total" in session.status


def test_every_task_runs_and_redraws_the_page(controller):
    session = session_with(controller, [[100, 50, 300, 300]])
    for token, text in [("<CAPTION>", None), ("<DETAILED_CAPTION>", None), ("<OD>", None),
                        ("<DENSE_REGION_CAPTION>", None), ("<REGION_PROPOSAL>", None), ("<OCR>", None),
                        ("<OCR_WITH_REGION>", None), ("<CAPTION_TO_PHRASE_GROUNDING>", "A green car."),
                        ("<OPEN_VOCABULARY_DETECTION>", "wheels"), ("<REFERRING_EXPRESSION_SEGMENTATION>", "a car"),
                        ("<REGION_TO_SEGMENTATION>", None), ("<REGION_TO_CATEGORY>", None),
                        ("<REGION_TO_DESCRIPTION>", None)]:  # fmt: skip
        controller.run(session, token, text)
        views = page_views(controller, session)
        assert len(views) == 10
        image, status, answer, result_json, rows, summary, teach_md, tokens, bins, picker = views
        assert image["value"].size == (640, 427) and image["alt_text"].startswith("Result image")
        assert result_json["task"] == token
        assert token in teach_md and tokens
        assert len(rows[0]) == len(REVIEW_HEADERS)
    assert session.review.runs == 13
    assert session.review.counts()["pending"] == len(session.review.items)


def test_bad_input_raises_input_errors(controller):
    with pytest.raises(InputError, match="No image"):
        controller.run(UISession(), "<OD>")
    session = session_with(controller)
    with pytest.raises(InputError, match="needs at least one box"):
        controller.run(session, "<REGION_TO_OCR>")
    with pytest.raises(InputError, match="needs a text prompt"):
        controller.run(session, "<OPEN_VOCABULARY_DETECTION>", "   ")
    with pytest.raises(ValueError, match="Unknown Florence-2 task"):
        controller.run(session, "<NOT_A_TASK>")
    with pytest.raises(InputError, match="between 1 and 1024"):
        controller.settings_for(5000, 1)
    with pytest.raises(InputError, match="no boxes"):
        controller.remove_box(session, 1)
    assert session.review.items == []  # nothing half-done


def test_truncation_is_shown(controller, recorded):
    session = session_with(controller)
    recorded.force_truncated = True
    result = controller.run(session, "<OD>")
    assert result.truncated
    assert "Truncated" in session.status and "max new tokens" in session.status
    assert "cut off" in page_views(controller, session)[6]


def test_box_list_remove_and_clear(controller):
    session = session_with(controller, [[1, 1, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    controller.remove_box(session, 2)
    assert session.boxes == [[1, 1, 10, 10], [40, 40, 50, 50]]
    with pytest.raises(InputError, match="between 1 and 2"):
        controller.remove_box(session, 3)
    controller.clear_boxes(session)
    assert session.boxes == []


def test_review_edits_from_the_table(controller):
    session = session_with(controller)
    controller.run(session, "<OD>")  # car .91, door .62, wheel .48, wheel .83
    table = review_rows(session)
    table[0][4] = "beetle"
    table[1][0] = True
    changed, ticked = controller.apply_table(session, table)
    assert changed and ticked == {2}
    assert session.review.get(1).label == "beetle"
    # ticks alone change nothing on the server
    assert controller.apply_table(session, review_rows(session, ticked={1}))[0] is False
    # accept / reject the ticked rows
    assert controller.set_status(session, review_rows(session, ticked={1, 2}), "accepted") == 2
    assert controller.set_status(session, review_rows(session, ticked={3}), "rejected") == 1
    with pytest.raises(InputError, match="Tick"):
        controller.set_status(session, review_rows(session), "accepted")
    # an empty label is refused and the old one stays
    table = review_rows(session)
    table[3][4] = "  "
    with pytest.raises(InputError, match="cannot be empty"):
        controller.apply_table(session, table)
    assert session.review.get(4).label == "wheel"
    # relabelled, accepted regions keep accumulating across tasks
    controller.run(session, "<CAPTION>")
    assert controller.accept_above(session, 0.85, include_unscored=False) == 1  # the caption (.88)
    assert [i.status for i in session.review.items] == ["accepted", "accepted", "rejected", "pending", "accepted"]
    assert session.labeled_image().regions[0].label == "beetle"
    assert session.labeled_image().texts[0].text == "A green car parked in front of a yellow building."


def test_accept_above_threshold(controller):
    session = session_with(controller)
    with pytest.raises(InputError, match="Nothing to review"):
        controller.accept_above(session, 0.5)
    controller.run(session, "<OD>")
    assert controller.accept_above(session, 0.8) == 2  # .91 and .83
    assert session.review.counts() == {"pending": 2, "accepted": 2, "rejected": 0}


def test_caption_then_ground(controller, recorded):
    session = session_with(controller)
    caption, grounding = controller.caption_then_ground(session, "<DETAILED_CAPTION>")
    assert caption.task == "<DETAILED_CAPTION>"
    assert grounding.text_input == caption.text
    assert recorded.calls[-1]["task"] == "<CAPTION_TO_PHRASE_GROUNDING>"
    assert "Detailed caption → Phrase grounding" in session.status
    assert session.review.runs == 2
    assert status_markdown(grounding).startswith("**Phrase grounding**")


def test_result_picture_modes_and_grid(controller):
    session = session_with(controller)
    plain = np.asarray(controller.result_image(session))
    assert np.array_equal(plain, np.asarray(session.image))  # nothing run yet
    controller.run(session, "<OD>")
    latest = np.asarray(controller.result_image(session))
    assert not np.array_equal(latest, plain)
    session.show = "accepted"
    assert np.array_equal(np.asarray(controller.result_image(session)), plain)
    session.review.set_status([1], "accepted")
    session.show, session.grid = "all", True
    with_grid = np.asarray(controller.result_image(session))
    session.grid = False
    assert not np.array_equal(with_grid, np.asarray(controller.result_image(session)))


def test_sessions_are_independent(controller):
    first, second = session_with(controller, [[1, 1, 50, 50]]), UISession()
    controller.run(first, "<REGION_TO_CATEGORY>")
    assert second.boxes == [] and second.review.items == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert page_views(controller, second)[0]["value"] is None


def test_region_numbers_follow_their_box_in_every_view(controller):
    boxes = [[20, 30, 200, 260], [250, 60, 400, 300], [430, 80, 620, 400]]
    session = session_with(controller, boxes)
    controller.run(session, "<REGION_TO_SEGMENTATION>")
    first, second, third = (i.id for i in session.review.items)
    session.review.set_status([first], "rejected")
    for show in ("latest", "all"):
        session.show = show
        marks = controller.result_marks(session)
        assert [(m.number, m.prompt_box) for m in marks] == [(2, tuple(boxes[1])), (3, tuple(boxes[2]))], show
        alt = page_views(controller, session)[0]["alt_text"]
        assert "#1" not in alt and "#2 " in alt and "#3 " in alt
    session.review.set_status([third], "accepted")
    session.show = "accepted"
    assert [(m.number, m.prompt_box) for m in controller.result_marks(session)] == [(3, tuple(boxes[2]))]
    assert "✓ #3 " in page_views(controller, session)[0]["alt_text"]
    # the review table names each row's box, and a later whole-image run changes none of them
    controller.run(session, "<OD>")
    tasks = {row[1]: row[3] for row in review_rows(session)}
    assert [tasks[i] for i in (first, second, third)] == [f"Region to segmentation · box #{n}" for n in (1, 2, 3)]
    assert [m.number for m in controller.result_marks(session)] == [3]
