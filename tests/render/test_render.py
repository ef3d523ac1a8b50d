"""Drawing real Florence-2 answers (the golden generations) with supervision annotators."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import supervision as sv
from PIL import Image
from recorded_engine import _move_polygon

from florence_ui.core.review import REJECTED, ReviewSession
from florence_ui.render import annotate as render
from florence_ui.render.annotate import (
    ACCEPTED,
    PALETTE,
    Mark,
    Style,
    draw,
    font_for,
    label_text,
    marks_from_items,
    marks_from_result,
    render_result,
    upscale_factor,
)


def vector(golden: dict, task: str, image: str | None = None) -> dict:
    return next(v for v in golden["vectors"] if v["task"] == task and (image is None or v["image"] == image))


def canvas(size: tuple[int, int]) -> Image.Image:
    """A smooth grey gradient: every drawn pixel stands out."""
    width, height = size
    x = np.linspace(90, 140, width, dtype=np.float32)[None, :].repeat(height, 0)
    return Image.fromarray(np.stack([x, x, x], -1).astype(np.uint8))


def parsed(engine, golden, task, image=None):
    v = vector(golden, task, image)
    return engine.parse(task, v["generated_text"], tuple(v["image_size"]), v["text_input"]), v


def colour_at(image: Image.Image, xy: tuple[float, float]) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.asarray(image)[int(round(xy[1])), int(round(xy[0]))])


def test_od_boxes_drawn_with_a_stable_colour_per_class(engine, golden):
    result, v = parsed(engine, golden, "<OD>", "beetle")
    out = render_result(canvas(tuple(v["image_size"])), result)
    assert out.size == (640, 480) and out.mode == "RGB"
    det = result.detections
    names = list(det.data["class_name"])
    assert names == ["car", "door", "wheel", "wheel"]
    wheel_ids = {int(det.class_id[i]) for i, n in enumerate(names) if n == "wheel"}
    assert len(wheel_ids) == 1
    # the right edge of each wheel box (away from labels) carries the class colour
    for i in (2, 3):
        x1, y1, x2, y2 = det.xyxy[i]
        expected = PALETTE.by_idx(int(det.class_id[i])).as_rgb()
        assert colour_at(out, (x2 - 1, (y1 + y2) / 2)) == expected


def test_same_label_same_colour_across_tasks(engine, golden):
    od, _ = parsed(engine, golden, "<OD>", "beetle")
    dense, _ = parsed(engine, golden, "<DENSE_REGION_CAPTION>", "beetle")

    def ids(result):
        det = result.detections
        return {n: int(c) for n, c in zip(det.data["class_name"], det.class_id, strict=True)}

    assert ids(od)["wheel"] == ids(dense)["wheel"]


def test_segmentation_is_drawn_as_a_filled_mask(engine, golden):
    result, v = parsed(engine, golden, "<REFERRING_EXPRESSION_SEGMENTATION>")
    base = canvas(tuple(v["image_size"]))
    out = np.asarray(render_result(base, result)).astype(int)
    mask = result.masks()[0]  # made on demand from the polygons
    changed = np.abs(out - np.asarray(base).astype(int)).sum(-1) > 10
    assert changed[mask].mean() > 0.9  # the inside is tinted
    x1, y1, x2, y2 = result.detections.xyxy[0].astype(int)
    outside = np.ones_like(mask)
    outside[max(0, y1 - 40) : y2 + 10, max(0, x1 - 10) : x2 + 10] = False
    assert changed[outside].mean() < 0.01  # and the rest is untouched


def test_region_to_segmentation_shows_the_prompt_box(engine, golden):
    v = vector(golden, "<REGION_TO_SEGMENTATION>")
    size = tuple(v["image_size"])
    box = [449.0, 276.0, 555.0, 371.0]
    result = engine.parse(v["task"], [v["generated_text"]], size, boxes=[box])
    marks = marks_from_result(result)
    assert marks[0].number == 1 and marks[0].prompt_box == tuple(box) and marks[0].polygons
    out = render_result(canvas(size), result)
    # a white corner of the prompt box (bottom-right, away from the label)
    assert colour_at(out, (box[2] - 2, box[3] - 2)) == (255, 255, 255)
    assert label_text(marks[0]).startswith("#1 ")


def test_ocr_quads_are_drawn(engine, golden):
    result, v = parsed(engine, golden, "<OCR_WITH_REGION>")
    base = canvas(tuple(v["image_size"]))
    out = render_result(base, result, min_side=1)
    assert sv.config.ORIENTED_BOX_COORDINATES in result.detections.data
    quad = np.asarray(result.detections.data[sv.config.ORIENTED_BOX_COORDINATES][0])
    bottom_mid = ((quad[2] + quad[3]) / 2).round().astype(int)
    changed = np.abs(np.asarray(out).astype(int) - np.asarray(base).astype(int)).sum(-1) > 10
    x, y = bottom_mid
    assert changed[max(0, y - 2) : y + 3, x - 2 : x + 3].any()


def test_small_images_are_upscaled_and_large_ones_get_thicker_lines(engine, golden):
    result, _ = parsed(engine, golden, "<OD>", "beetle")
    small = engine.parse("<OD>", vector(golden, "<OD>", "beetle")["generated_text"], (64, 48))
    out = render_result(canvas((64, 48)), small)
    assert upscale_factor((64, 48)) == 10 and out.size == (640, 480)
    assert render_result(canvas((640, 480)), result).size == (640, 480)
    assert Style.for_size((6000, 4000)).thickness > Style.for_size((640, 480)).thickness
    assert Style.for_size((6000, 4000)).font_size > Style.for_size((640, 480)).font_size


def test_accepted_regions_are_drawn_distinctly_from_pending(engine, golden):
    result, v = parsed(engine, golden, "<OD>", "beetle")
    review = ReviewSession()
    review.start("k", tuple(v["image_size"]))
    items = review.add_result(result)
    review.set_status([items[0].id], ACCEPTED)
    marks = marks_from_items(review.items, lambda label: int(engine.classes.ids([label])[0]))
    assert [m.state for m in marks] == ["accepted", "pending", "pending", "pending"]
    assert label_text(marks[0]).startswith("✓ car")
    base = canvas(tuple(v["image_size"]))
    accepted = np.asarray(draw(base, marks[:1])).astype(int)
    pending_mark = Mark(marks[0].xyxy, "car", marks[0].class_id, None)
    pending = np.asarray(draw(base, [pending_mark])).astype(int)
    x1, y1, x2, y2 = (int(c) for c in marks[0].xyxy)
    inside = (slice(y2 - 60, y2 - 20), slice(x1 + 200, x2 - 200))
    original = np.asarray(base).astype(int)[inside]
    assert np.abs(accepted[inside] - original).mean() > 5  # tinted
    assert np.abs(pending[inside] - original).mean() < 1  # not tinted


def test_empty_labels_and_no_regions(engine, golden):
    result, v = parsed(engine, golden, "<REGION_PROPOSAL>", "beetle")
    assert render_result(canvas(tuple(v["image_size"])), result).size == (640, 480)
    caption, _ = parsed(engine, golden, "<CAPTION>")
    base = canvas((640, 480))
    assert np.array_equal(np.asarray(render_result(base, caption)), np.asarray(base))


def test_png_round_trip_is_lossless(engine, golden):
    result, v = parsed(engine, golden, "<DENSE_REGION_CAPTION>")
    out = render_result(canvas(tuple(v["image_size"])), result)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), np.asarray(out))


def test_fonts_cover_the_labels():
    path = font_for(["car"])
    if path is None:
        pytest.skip("no TrueType font installed; PIL's default font is used")
    assert path.endswith((".ttf", ".otf", ".ttc"))


# ---- region numbers: a region's "#n" is the box it answers, whatever the view filters out ---------------------------
THREE_BOXES = [[40.0, 60.0, 180.0, 200.0], [250.0, 80.0, 400.0, 260.0], [449.0, 276.0, 555.0, 371.0]]


def three_box_segmentation(engine, golden):
    """The recorded Region → segmentation answer, moved into each of three drawn boxes (as Florence-2 answers
    each box on its own), parsed by the real parser and added to a review."""
    v = vector(golden, "<REGION_TO_SEGMENTATION>")
    size = tuple(v["image_size"])
    asked = [int(b) for b in re.findall(r"<loc_(\d+)>", v["text_input"])]
    answers = [_move_polygon(v["generated_text"], asked, engine.quantize_box(box, size)) for box in THREE_BOXES]
    result = engine.parse(v["task"], answers, size, boxes=THREE_BOXES)
    review = ReviewSession()
    review.start("k", size)
    items = review.add_result(result)
    return review, items, size


def class_ids(engine):
    return lambda label: int(engine.classes.ids([label])[0])


def inside(mark: Mark, box) -> bool:
    """The mark's mask outline sits in ``box`` (give or take a bin): the answer belongs to that box."""
    points = np.concatenate(mark.polygons)
    x1, y1, x2, y2 = box
    return bool((points[:, 0] >= x1 - 3).all() and (points[:, 0] <= x2 + 3).all()
                and (points[:, 1] >= y1 - 3).all() and (points[:, 1] <= y2 + 3).all())  # fmt: skip


def test_region_items_carry_the_box_they_answer(engine, golden):
    review, items, _ = three_box_segmentation(engine, golden)
    assert [i.region.box_index for i in items] == [1, 2, 3]
    review.relabel(items[1].id, "a hubcap")
    assert review.get(items[1].id).region.box_index == 2  # a relabel keeps it
    od, _ = parsed(engine, golden, "<OD>", "beetle")
    assert {i.region.box_index for i in ReviewSession().add_result(od)} == {None}  # whole-image tasks have none


def test_rejecting_box_1_keeps_the_others_numbers_and_brackets(engine, golden):
    review, items, size = three_box_segmentation(engine, golden)
    review.set_status([items[0].id], REJECTED)
    shown = [i for i in review.items if i.status != REJECTED]
    marks = marks_from_items(shown, class_ids(engine), {1: THREE_BOXES})
    assert [m.number for m in marks] == [2, 3]
    assert [label_text(m).split()[0] for m in marks] == ["#2", "#3"]
    assert [m.prompt_box for m in marks] == [tuple(THREE_BOXES[1]), tuple(THREE_BOXES[2])]
    assert all(inside(m, THREE_BOXES[n]) for m, n in zip(marks, (1, 2), strict=True))
    # drawn: the brackets of boxes #2 and #3 (white corners), none for the rejected box #1
    out = draw(canvas(size), marks)
    for box in THREE_BOXES[1:]:
        assert colour_at(out, (box[2] - 2, box[3] - 2)) == (255, 255, 255)
    assert colour_at(out, (THREE_BOXES[0][2] - 2, THREE_BOXES[0][3] - 2)) != (255, 255, 255)
    # the alt text of the picture lists exactly those labels
    assert render.describe(marks).endswith(": " + "; ".join(label_text(m) for m in marks))
    assert "#1" not in render.describe(marks)


def test_accepted_only_shows_the_accepted_boxes_own_number(engine, golden):
    od, _ = parsed(engine, golden, "<OD>", "beetle")
    review, _, _ = three_box_segmentation(engine, golden)
    review.add_result(od)  # run 2: whole-image regions after the region run
    region_items = [i for i in review.items if i.run == 1]
    review.set_status([region_items[2].id, review.items[-1].id], ACCEPTED)  # box #3 and the last OD box
    marks = marks_from_items(review.by_status(ACCEPTED), class_ids(engine), {1: THREE_BOXES, 2: []})
    assert [m.number for m in marks] == [3, None]
    assert label_text(marks[0]).startswith("✓ #3 ")
    assert marks[0].prompt_box == tuple(THREE_BOXES[2]) and inside(marks[0], THREE_BOXES[2])
    assert marks[1].prompt_box is None and not label_text(marks[1]).startswith("✓ #")


def _label_rects(marks: list[Mark], size: tuple[int, int]) -> np.ndarray:
    """The label rectangles :func:`draw` uses for ``marks`` on a picture of ``size`` (no upscaling)."""
    style = Style.for_size(size)
    texts = [label_text(m) for m in marks]
    sizes = render.label_sizes(texts, font_for(texts), style.font_size, style.padding)
    return render.place_labels(np.array([m.xyxy for m in marks], dtype=np.float32), sizes, size)


def _assert_placed_well(rects: np.ndarray, size: tuple[int, int]) -> None:
    width, height = size
    assert (rects[:, :2] >= 0).all() and (rects[:, 2] <= width).all() and (rects[:, 3] <= height).all()
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            a, b = rects[i], rects[j]
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            assert apart, f"labels {i} and {j} overlap: {a} {b}"


@pytest.mark.parametrize(("task", "image"), [("<DENSE_REGION_CAPTION>", "beetle"), ("<OD>", "beetle"),
                                             ("<REGION_PROPOSAL>", "australia"), ("<OCR_WITH_REGION>", "book_cover")])  # fmt: skip
def test_labels_stay_inside_the_picture_and_apart_on_golden_answers(engine, golden, task, image):
    """Issue 18: labels collided ("#1 car" over "#1 turquoise…") or were cut at the top edge."""
    result, v = parsed(engine, golden, task, image)
    marks = marks_from_result(result)
    assert len(marks) >= 2
    size = tuple(v["image_size"])
    factor = upscale_factor(size)
    scaled = [Mark(tuple(c * factor for c in m.xyxy), label_text(m)) for m in marks]
    _assert_placed_well(
        _label_rects(scaled, (size[0] * factor, size[1] * factor)), (size[0] * factor, size[1] * factor)
    )


def test_crowded_labels_at_the_top_edge_and_on_the_same_box_do_not_collide():
    size = (640, 200)  # a short picture: the top edge is where labels above their boxes used to be cut
    marks = [Mark((10.0 * i, 0.0, 10.0 * i + 60, 40.0), f"#{i + 1} turquoise Volkswagen Beetle") for i in range(12)]
    marks += [Mark((0.0, 0.0, 640.0, 200.0), "car"), Mark((0.0, 0.0, 640.0, 200.0), "#1 car")]
    _assert_placed_well(_label_rects(marks, size), size)


def test_draw_puts_each_label_where_place_labels_says(monkeypatch):
    """draw() uses the placement (the label's pixels sit inside the rectangle, nothing outside the picture)."""
    image = Image.new("RGB", (640, 200), (128, 128, 128))
    seen = {}
    real = render.place_labels

    def spy(boxes, sizes, frame):
        seen["rects"] = real(boxes, sizes, frame)
        return seen["rects"]

    monkeypatch.setattr(render, "place_labels", spy)
    out = np.asarray(draw(image, [Mark((100.0, 0.0, 300.0, 100.0), "car", class_id=0)])).astype(int)
    x1, y1, x2, y2 = (int(v) for v in seen["rects"][0])
    assert y1 >= 0  # the box touches the top edge: its label moved inside, not cut
    label_colour = PALETTE.by_idx(0).as_rgb()
    assert tuple(out[y1 + 1, x1 + 1]) == label_colour


def test_save_png_is_lossless_and_one_file_per_picture(tmp_path):
    picture = canvas((320, 200))
    first = render.save_png(picture, tmp_path)
    assert render.save_png(picture, tmp_path) == first
    assert np.array_equal(np.asarray(Image.open(first).convert("RGB")), np.asarray(picture))
    assert Image.open(first).format == "PNG"


def test_outline_vs_mask_puts_florence_beside_sam_only_for_refined_runs():
    import supervision as sv

    from florence_ui.core.fields import POLYGONS
    from florence_ui.core.result import FlorenceResult
    from florence_ui.render.teaching import outline_vs_mask

    image = Image.new("RGB", (80, 60), "gray")
    det = sv.Detections(xyxy=np.array([[10, 10, 40, 40], [45, 5, 75, 55]], dtype=np.float32))
    det.data[POLYGONS] = np.array([[np.array([10, 10, 40, 10, 25, 40], dtype=np.float32)], []], dtype=object)
    result = FlorenceResult("<OD>", det, None, "", (80, 60), None, None)
    assert outline_vs_mask(image, result) is None  # not refined: nothing to compare
    mask = np.zeros((2, 60, 80), dtype=bool)
    mask[0, 12:38, 12:38] = True
    mask[1, 6:50, 50:70] = True
    result.detections.mask = mask
    picture = outline_vs_mask(image, result)
    assert picture is not None and picture.size[0] > 2 * 80 and picture.size[1] > 60  # two panels and their titles
    left = np.asarray(picture)[28 + 30, 25]  # inside Florence-2's triangle, left panel
    right = np.asarray(picture)[28 + 25, 80 + 4 + 25]  # inside SAM's mask, right panel
    assert tuple(left) != (128, 128, 128) and tuple(right) != (128, 128, 128)  # both coloured over the gray picture
