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


# ---- issue 18: progress steps, the per-token door, the page's CPU defaults, the model picker --------------------
def test_progress_moves_in_order_and_a_token_callback_feeds_it(controller):
    from florence_ui.ui.controller import GENERATE_FROM, GENERATE_TO, accepts_on_token, token_progress

    session = UISession()
    controller.set_input(session, {"image": str(ROCKET), "boxes": []})
    seen: list[tuple[float, str]] = []
    controller.run(session, "<OD>", progress=lambda f, d: seen.append((f, d)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and len(set(fractions)) >= 3  # prepare → vision + generate → draw
    if accepts_on_token(controller.engine.run):  # the engine reports its tokens: the bar moves with them
        assert any(d.endswith("tokens") and GENERATE_FROM <= f <= GENERATE_TO for f, d in seen), seen

    steps: list[tuple[float, str]] = []
    on_token = token_progress(lambda f, d: steps.append((f, d)), "generating")
    for n in (0, 8, 16):
        on_token(n, 16)
    assert [f for f, _ in steps] == [GENERATE_FROM, (GENERATE_FROM + GENERATE_TO) / 2, GENERATE_TO]
    assert steps[-1][1].endswith("16/16 tokens")
    assert not accepts_on_token(lambda image, task: None)
    assert accepts_on_token(lambda image, task, on_token=None: None)


def test_page_settings_rule():
    from types import SimpleNamespace

    from florence_ui.ui.controller import CPU_PAGE_MAX_NEW_TOKENS, page_settings

    server = GenerationSettings(1024, 3)
    cpu, gpu = SimpleNamespace(device="cpu"), SimpleNamespace(device="cuda")
    on_cpu = page_settings(cpu, server, {})
    assert on_cpu.num_beams == 1 and on_cpu.max_new_tokens == min(1024, CPU_PAGE_MAX_NEW_TOKENS)
    assert page_settings(cpu, GenerationSettings(16, 3), {}).max_new_tokens == 16  # never longer than asked
    assert page_settings(gpu, server, {}) == server
    assert page_settings(cpu, server, {"FLORENCE_UI_CPU_PAGE_DEFAULTS": "0"}) == server


class _Loaded:
    def __init__(self, model_id: str, device: str = "cpu") -> None:
        self.model_id, self.device, self.dtype_name = model_id, device, "float32"

    def describe(self) -> str:
        return f"{self.model_id} · {self.device}"


def test_swap_engine_releases_the_old_model_before_loading_and_restores_it_on_failure():
    import gc
    import weakref

    from florence_ui.ui.model_picker import model_choices, swap_engine

    assert model_choices({"FLORENCE_UI_MODEL_CHOICES": " base, large,base ,"}) == ["base", "large"]
    controller = Controller.__new__(Controller)
    controller.engine = _Loaded("florence-community/Florence-2-base")
    gone = weakref.ref(controller.engine)
    loads: list[tuple[str, bool]] = []

    def load(name, *, device, dtype):
        gc.collect()
        loads.append((name, gone() is None))  # was the previous model already released?
        if name == "broken":
            raise RuntimeError("no such checkpoint")
        return _Loaded(name if "/" in name else f"florence-community/Florence-2-{name}", device)

    swap_engine(controller, "large", ["base", "large", "broken"], load=load)
    assert controller.engine.model_id == "florence-community/Florence-2-large" and loads == [("large", True)]
    with pytest.raises(RuntimeError):
        swap_engine(controller, "broken", ["base", "large", "broken"], load=load)
    assert controller.engine.model_id == "florence-community/Florence-2-large"  # the previous one is back
    with pytest.raises(InputError, match="FLORENCE_UI_MODEL_CHOICES"):
        swap_engine(controller, "huge", ["base", "large"], load=load)


# ---- streaming and tiling through the page's controller (the tiny random model: plumbing, not meaning) -------------
def test_run_steps_streams_the_answer_and_returns_what_run_returns(engine):
    """The page's Run: tokens arrive as events (steps only move forward), the result comes last and is run()'s."""
    controller = Controller(engine, GenerationSettings(12, 1))
    engine.model.generation_config.min_new_tokens = 12  # the random model would otherwise stop at once
    try:
        session = session_with(controller)
        steps = controller.run_steps(session, "<CAPTION>")
        events = []
        while True:
            try:
                events.append(next(steps))
            except StopIteration as done:
                streamed = done.value
                break
        plain = controller.run(session_with(controller), "<CAPTION>")
    finally:
        engine.model.generation_config.min_new_tokens = None
    assert events, "no token reached the page before the result"
    assert [e.step for e in events] == sorted(e.step for e in events) and events[-1].step <= 12
    assert not any(e.done for e in events)
    assert streamed.raw == plain.raw and streamed.text == plain.text
    assert session.results == [streamed] and session.review.runs == 1  # filed in the review like run()


def test_tiled_mode_is_for_the_tasks_that_tile_only(engine):
    from florence_ui.core.tasks import TASKS
    from florence_ui.ui.controller import tileable

    controller = Controller(engine, GenerationSettings(8, 1))
    assert tileable() == [t.name for t in TASKS if t.tileable] and tileable()
    with pytest.raises(InputError, match="does not tile"):
        controller.run(session_with(controller), "<CAPTION>", tile=True)
    tiled = next(t for t in TASKS if t.tileable and not t.needs_text)
    result = controller.run(session_with(controller), tiled.token, tile=True)
    assert isinstance(result.raw, list) and len(result.raw) >= 2  # the whole-image answer and one per tile


def test_refine_without_sam_is_refused_with_the_fix(engine):
    controller = Controller(engine, GenerationSettings(8, 1))
    with pytest.raises(InputError, match="--sam"):
        controller.run(session_with(controller), "<OD>", refine=True)


# ---- SAM in the page: refine and one click = one labelled object (tiny random SAM: plumbing only) ---------------
@pytest.fixture(scope="module")
def sam_controller(tiny_checkpoint, tiny_sam_checkpoint) -> Controller:
    from florence_ui import FlorenceEngine

    engine = FlorenceEngine.from_pretrained(str(tiny_checkpoint), device="cpu", sam=str(tiny_sam_checkpoint))
    return Controller(engine, GenerationSettings(6, 1))


def test_clicks_on_the_result_picture_become_labelled_segmented_regions(sam_controller):
    from florence_ui.render.annotate import upscale_factor

    session = session_with(sam_controller)
    factor = upscale_factor(session.image.size)
    assert "Click an object" in Controller.click_hint(session)
    with pytest.raises(InputError, match="click the object itself first"):
        sam_controller.add_click(session, 10 * factor, 10 * factor, negative=True)
    sam_controller.add_click(session, 100 * factor, 120 * factor)
    sam_controller.add_click(session, 104 * factor, 122 * factor, negative=True)
    sam_controller.add_click(session, 300 * factor, 200 * factor)
    assert session.clicks == [(100.0, 120.0, 1), (104.0, 122.0, 0), (300.0, 200.0, 1)]  # image pixels, not picture's
    assert Controller.click_hint(session).startswith("2 objects and 1 negative click")
    with pytest.raises(InputError, match="outside"):
        sam_controller.add_click(session, 10**6, 10)
    drawn = sam_controller.result_image(session)
    assert drawn is not None  # the clicks are marked on the picture
    result = sam_controller.segment_clicks(session)
    assert session.clicks == [] and session.results[-1] is result
    assert result.detections.mask is not None and len(result.detections) <= 2
    assert len(session.review.items) == len(result.detections)  # one review row per object


def test_refine_in_the_page_adds_masks_and_keeps_the_answer(sam_controller):
    session = session_with(sam_controller, boxes=[(10, 10, 200, 200), (150, 100, 400, 300)])
    result = sam_controller.run(session, "<REGION_TO_CATEGORY>", refine=True)
    assert result.detections.mask is not None and result.detections.mask.shape[0] == len(result.detections)
    assert sam_controller.result_image(session) is not None


def test_segment_clicks_without_sam_or_clicks_is_refused(controller, sam_controller):
    session = session_with(sam_controller)
    with pytest.raises(InputError, match="No clicks"):
        sam_controller.segment_clicks(session)
    session.clicks = [(5.0, 5.0, 1)]
    with pytest.raises(InputError, match="--sam"):
        controller.segment_clicks(session)
