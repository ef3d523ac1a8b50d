"""Review state and the label contract, fed with real golden answers."""

from __future__ import annotations

import pytest

from florence_ui.core.review import ACCEPTED, PENDING, REJECTED, ReviewSession


@pytest.fixture
def session(engine, golden):
    review = ReviewSession()
    review.start("beetle", (640, 480))
    for task in ("<OD>", "<CAPTION>", "<REGION_TO_SEGMENTATION>"):
        vec = next(v for v in golden["vectors"] if v["task"] == task and v["image"] == "beetle")
        result = engine.parse(task, vec["generated_text"], vec["image_size"], text=vec["text_input"])
        result.detections.confidence[:] = [0.9, 0.4, 0.8, 0.2][: len(result.detections)]
        review.add_result(result)
    return review


def test_results_accumulate_as_pending(session):
    assert session.counts() == {PENDING: 6, ACCEPTED: 0, REJECTED: 0}
    assert [row[2] for row in session.rows()][:5] == ["Object detection"] * 4 + ["Caption"]
    assert session.rows()[4][5] == "(whole image)"


def test_accept_reject_relabel_and_export(session):
    assert session.accept_above(0.75) == 3  # two OD boxes and the segmentation
    session.set_status(2, REJECTED)
    session.relabel(1, "beetle")
    session.set_status(5, ACCEPTED)  # the caption
    with pytest.raises(ValueError):
        session.relabel(1, "  ")
    with pytest.raises(KeyError):
        session.set_status(99, ACCEPTED)
    labeled = session.labeled_image()
    assert [r.label for r in labeled.regions] == ["beetle", "wheel", "segment"]
    assert [r.kind for r in labeled.regions] == ["box", "box", "polygon"]
    assert labeled.texts[0].text == "A green car parked in front of a yellow building."
    det = labeled.detections(with_masks=True)
    assert det.mask.shape == (3, 480, 640) and det.mask[2].sum() > 1000
    assert "<OD>" in labeled.model_version and "<CAPTION>" in labeled.model_version


def test_new_image_resets_but_same_image_keeps(session):
    assert session.start("beetle", (640, 480)) is False and len(session.items) == 6
    assert session.start("other", (10, 10)) is True and session.items == []
