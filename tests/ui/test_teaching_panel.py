"""The teaching panel's values and layout, as plain calls on the tiny model (no browser here).

The explanation is lazy: a run alone computes none; the panel shows a prompt to
explain, then, once asked, the tokens, the model's eye, the heatmap of one
token and its alternatives, all cached per run.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from florence_ui.core.tasks import CAPTION_TASK, NAME_REGION_TASK
from florence_ui.errors import InputError
from florence_ui.model.engine import GenerationSettings
from florence_ui.ui import teaching_panel
from florence_ui.ui.controller import Controller
from florence_ui.ui.session import UISession
from florence_ui.ui.views import EXPLANATIONS, explanation_for

SETTINGS = GenerationSettings(max_new_tokens=8, num_beams=1)
NAMES = ["picker", "md", "raw", "bins", "input", "tokens", "slider", "heatmap", "eye", "where", "alternatives"]


@pytest.fixture
def controller(engine):
    return Controller(engine, SETTINGS)


@pytest.fixture
def session():
    s = UISession()
    rng = np.random.default_rng(1)
    s.set_image(Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), "RGB"))
    return s


def values(controller, session, index=None, **kw):
    return dict(zip(NAMES, teaching_panel.panel_values(controller, session, index, **kw), strict=True))


def test_a_run_alone_explains_nothing_until_asked(controller, session):
    empty = values(controller, session, compute=True)
    assert empty["heatmap"] is None and empty["tokens"] == ""
    result = controller.run(session, CAPTION_TASK.token)
    assert EXPLANATIONS.peek(result) is None  # the run did not pay for an explanation
    lazy = values(controller, session, compute=False)
    assert lazy["tokens"] == teaching_panel.NOT_EXPLAINED and lazy["heatmap"] is None
    assert EXPLANATIONS.peek(result) is None
    shown = values(controller, session, compute=True)
    ex = EXPLANATIONS.peek(result)
    assert ex is not None and explanation_for(controller, session, result) is ex  # cached per run
    assert shown["tokens"].count('class="tk ') == len(ex.tokens)
    assert isinstance(shown["heatmap"], Image.Image) and shown["heatmap"].size == session.image.size
    assert isinstance(shown["eye"], Image.Image) and shown["eye"].width >= ex.eye.width
    assert "image tokens" in shown["input"] and result.model_prompts[0] in shown["input"]
    assert shown["slider"]["value"] == teaching_panel.default_token(ex)
    assert "cross-attention" in shown["where"] and "Averaged" in shown["where"]
    assert len(shown["alternatives"]) == 5
    # the same run again (a redraw of the picture): the chosen token stays; out of range → the first word
    assert values(controller, session, 2, compute=False)["slider"]["value"] == 2
    assert values(controller, session, 10_000, compute=False)["slider"]["value"] == teaching_panel.default_token(ex)


def test_token_views_follow_the_chosen_token_and_rows(controller, session):
    session.boxes = [[5, 5, 60, 60], [50, 20, 119, 89]]
    result = controller.run(session, NAME_REGION_TASK.token)
    ex = explanation_for(controller, session, result)
    last = len(ex.tokens) - 1
    html, heat, where, alternatives = teaching_panel.token_views(session, ex, last)
    assert f'data-index="{last}" role="button" tabindex="0" title=' in html and "Box #2" in html
    assert "box #2" in where and heat.size == session.image.size
    assert alternatives and alternatives[0][0] == 1
    # out-of-range indices are clamped, not errors
    assert teaching_panel.token_views(session, ex, 10_000)[2] == where


def test_big_pictures_are_fitted_for_the_browser(controller):
    s = UISession()
    s.set_image(Image.new("RGB", (3000, 1500), "white"))
    controller.run(s, CAPTION_TASK.token)
    shown = values(controller, s, compute=True)
    assert max(shown["heatmap"].size) == teaching_panel.HEATMAP_SIDE


def test_a_parsed_run_says_why_it_cannot_be_explained(controller, session, engine):
    session.results.append(engine.parse(CAPTION_TASK.token, "a photo", session.image.size))
    with pytest.raises(InputError, match="no generated tokens"):
        values(controller, session, compute=True)


def test_build_lays_the_panel_out_in_the_callers_container(controller):
    with gr.Blocks() as demo:
        state = gr.State(UISession())
        picture = gr.Image()
        with gr.Column():
            panel = teaching_panel.build(state, controller, picture=picture)
    assert len(panel.refresh_outputs) == len(NAMES)
    ids = {getattr(c, "elem_id", None) for c in demo.blocks.values()}
    assert {"teach-panel", "teach-run", "teach-explain", "teach-token-chips", "teach-heatmap", "teach-eye",
            "teach-alternatives", "teach-bins", "teach-tokens"} <= ids  # fmt: skip
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert states == [state]  # the panel keeps no state of its own
    out = panel.refresh(UISession(), None, False)
    assert len(out) == len(NAMES)
