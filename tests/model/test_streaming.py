"""Streaming on the tiny offline Florence-2: events while generating, the run() result last, bad input up front.

The page fills its answer box from these events, so they must be honest: the
last event's result is exactly what ``run`` returns (same tokens, same
detections), steps only move forward, greedy text only grows, and a request
that cannot run fails at the call, before any token or thread.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from florence_ui import InputError
from florence_ui.model.engine import StreamEvent

CASES = [
    ("<OD>", {}),
    ("<CAPTION>", {}),
    ("<OPEN_VOCABULARY_DETECTION>", {"text": "a red cat"}),
    ("<REGION_TO_CATEGORY>", {"boxes": [[5, 5, 60, 50], [70, 20, 150, 110]]}),
]


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8))


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize(("task", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_the_last_event_is_the_run_result_and_steps_only_move_forward(engine, photo, task, kwargs, beams):
    events = list(engine.stream(photo, task, max_new_tokens=12, num_beams=beams, **kwargs))
    expected = engine.run(photo, task, max_new_tokens=12, num_beams=beams, **kwargs)
    assert all(isinstance(e, StreamEvent) for e in events)
    assert [e.done for e in events] == [False] * (len(events) - 1) + [True]
    final = events[-1].result
    assert final.raw == expected.raw and final.output_tokens == expected.output_tokens
    assert final.detections.xyxy.tolist() == expected.detections.xyxy.tolist()
    steps = [e.step for e in events]
    assert steps == sorted(steps) and len(set(steps[:-1])) == len(steps) - 1
    assert all(e.max_steps == 12 and len(e.texts) == len(final.raw_list) for e in events)
    if beams == 1:  # greedy: each event's tokens extend the previous ones, and end as the answer's
        for before, after in zip(events, events[1:], strict=False):
            assert all(a[: len(b)] == b for a, b in zip(after.token_ids, before.token_ids, strict=True))


def test_bad_input_raises_at_the_call_before_any_token(engine, photo):
    threads = threading.active_count()
    with pytest.raises(InputError, match="needs at least one box"):
        engine.stream(photo, "<REGION_TO_CATEGORY>")
    with pytest.raises(InputError, match="needs a text prompt"):
        engine.stream(photo, "<OPEN_VOCABULARY_DETECTION>", "  ")
    with pytest.raises(InputError):
        engine.stream("not an image", "<CAPTION>")
    assert threading.active_count() == threads


def test_closing_the_stream_early_frees_the_model(engine, photo):
    stream = engine.stream(photo, "<CAPTION>", max_new_tokens=30, num_beams=1)
    first = next(stream)
    assert first.step == 0 and not first.done
    stream.close()  # the person left: the generation stops at its next step
    result = engine.run(photo, "<CAPTION>", max_new_tokens=5, num_beams=1)  # the model lock was released
    assert result.generated_tokens


def test_on_token_reports_every_step_and_ends_full(engine, photo):
    seen: list[tuple[int, int]] = []
    result = engine.run(
        photo, "<OD>", max_new_tokens=9, num_beams=3, on_token=lambda done, most: seen.append((done, most))
    )
    assert [d for d, _ in seen[:-1]] == list(range(len(seen) - 1)) and {m for _, m in seen} == {9}
    assert seen[-1][0] == len(result.output_tokens[0])
    assert result.raw == engine.run(photo, "<OD>", max_new_tokens=9, num_beams=3).raw  # watching changes nothing


def test_tiled_stream_gives_the_tiled_result(engine):
    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 500, 3), dtype=np.uint8))
    [event] = list(engine.stream(big, "<OD>", tile=True, slice_wh=256, overlap_wh=32, max_new_tokens=8, num_beams=1))
    assert event.done and event.result.image_size == (500, 300) and "Tiled" in event.result.notes[0]
