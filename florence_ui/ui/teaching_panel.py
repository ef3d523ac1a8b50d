"""The teaching panel: prompt → tokens → boxes → "where it looked", on one screen beside the picture.

:func:`build` lays the panel out inside whatever container the caller has
opened (a column beside the result picture, for a class on a projector) and
wires its own events; the page only has to tell it when a run happened (pass
the result picture as ``picture``: the panel refreshes whenever it changes, or
chain :attr:`TeachingPanel.refresh` after the run events).

What it shows, top to bottom: the run picker; the exact prompt and token
counts; the input tokens (the sentence the task token became, after the image
tokens); the model's own generated tokens, each coloured by its probability
(click one, or move the token slider); for that token, the decoder's
cross-attention over the image patches as a heatmap on the picture, beside the
model's eye (the 768 × 768 input with its patch grid); the alternatives at
that step; the decoded text; the bins → pixels table.

The explanation (:func:`florence_ui.model.explain.explain`, one teacher-forced
pass) is computed only when the panel asks (the Explain button, picking a run,
or "Explain every run" ticked), in the model's queue slot, and cached per run
(:data:`florence_ui.ui.views.EXPLANATIONS`), so ordinary runs are never slowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image

from florence_ui.errors import FlorenceUIError
from florence_ui.render.teaching import (
    ALTERNATIVE_HEADERS,
    TOKEN_COLORS,
    alternatives_rows,
    attention_heatmap,
    input_tokens_html,
    location_axes,
    location_line,
    patch_grid,
    token_kind,
    tokens_html,
)
from florence_ui.ui.controller import Controller
from florence_ui.ui.notify import warn
from florence_ui.ui.session import UISession
from florence_ui.ui.views import BIN_HEADERS, EXPLANATIONS, explanation_for, teaching_outputs, teaching_run

EXPECTED = (FlorenceUIError, ValueError, KeyError)
#: the longest side of the heatmap picture sent to the browser (a projector shows no more)
HEATMAP_SIDE = 768
NOT_EXPLAINED = (
    "Press **Explain this run** to see the model's own tokens, how sure it was of each, and where on the picture it "
    "looked (one extra pass of the model, a second or so on a CPU). Tick *Explain every run* to have it for each run."
)
#: a click (or Enter) on a token chip sends its index to the server
TOKENS_JS = """
const pick = (el) => { if (el) trigger('click', {token: +el.dataset.index}); };
element.addEventListener('click', (e) => pick(e.target.closest('[data-index]')));
element.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') { const el = e.target.closest('[data-index]'); if (el) { e.preventDefault(); pick(el); } }
});
"""


@dataclass
class TeachingPanel:
    """The panel's components, and what the page calls after a run (see :func:`build`)."""

    picker: gr.Dropdown
    explain_btn: gr.Button
    auto: gr.Checkbox
    md: gr.Markdown
    input_html: gr.HTML
    tokens_html: gr.HTML
    token: gr.Slider
    heatmap: gr.Image
    eye: gr.Image
    where: gr.Markdown
    alternatives: gr.Dataframe
    raw: gr.HighlightedText
    bins: gr.Dataframe
    #: the components :func:`refresh` fills, in order (add them to a run handler's outputs, or chain ``refresh``)
    refresh_outputs: list[Any]
    #: ``refresh(session, token, auto) -> tuple`` for :attr:`refresh_outputs`: call it after each run
    refresh: Any
    #: the inputs ``refresh`` takes
    refresh_inputs: list[Any]


# ---- the panel's values, from the session alone (no gradio events here: testable as plain calls) ----------------
def default_token(explanation: Any) -> int:
    """The token shown first: the first that is not ``<s>`` / ``</s>`` (a word or a ``<loc_N>``)."""
    for i, t in enumerate(explanation.tokens):
        if token_kind(t.piece) not in ("special",):
            return i
    return 0


def _fit(picture: Image.Image, side: int = HEATMAP_SIDE) -> Image.Image:
    scale = side / max(picture.size)
    if scale >= 1:
        return picture
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))


def token_views(session: UISession, explanation: Any, index: int) -> tuple[str, Image.Image | None, str, list]:
    """(tokens HTML, heatmap picture, caption, alternatives rows) for token ``index`` of ``explanation``."""
    n = len(explanation.tokens)
    if n == 0:
        return "<p>The answer has no tokens.</p>", None, "", []
    index = min(max(0, int(index)), n - 1)
    t = explanation.tokens[index]
    rows = len(explanation.prompts)
    html = tokens_html(explanation.tokens, selected=index, alternatives=explanation.alternatives, rows=rows)
    picture = _fit(session.image) if session.image is not None else explanation.eye
    heat = attention_heatmap(picture, explanation.attention[index])
    axis = location_axes(explanation.tokens)[index]
    if axis is not None:
        heat = location_line(heat, t.piece, axis)
    prob = "—" if t.probability is None else f"{t.probability:.3f}"
    box = f" of box #{t.row + 1}" if rows > 1 else ""
    where = (
        f"**Token #{index}{box}: `{t.piece}`** (id {t.id}, probability {prob}). While producing it, "
        f"{explanation.image_share[index]:.0%} of the decoder's cross-attention went to the image "
        f"({explanation.pooled_share[index]:.0%} of that to the pooled token); the map shows the rest over the "
        f"{explanation.grid_side}×{explanation.grid_side} patches, brightest = most. "
        + (f"The dashed line is where `{t.piece}` puts the box's {axis}. " if axis else "")
        + f"Averaged: {explanation.averaged}."
    )
    alternatives = alternatives_rows(explanation.alternatives[index], t.piece, explanation.forced_probability[index])
    return html, heat, where, alternatives


def panel_values(controller: Controller, session: UISession, index: Any = None, *, compute: bool) -> tuple:
    """Values for :attr:`TeachingPanel.refresh_outputs`.

    ``compute``: make the explanation when there is none yet (else only a cached one is shown).
    ``index``: the token to show (the slider's value; out of range or None: the first word or ``<loc_N>``).
    The panel keeps no state of its own: the page's one ``gr.State`` (the session) and the slider are enough.
    """
    md, spans, bins, picker = teaching_outputs(controller, session)
    result = teaching_run(session)
    if result is None:
        return (picker, md, spans, bins, "", "", gr.update(maximum=1, value=0), None, None, "", [])
    explanation = EXPLANATIONS.peek(result)
    if explanation is None and compute:
        explanation = explanation_for(controller, session, result)
    if explanation is None:
        return (picker, md, spans, bins, "", NOT_EXPLAINED, gr.update(maximum=1, value=0), None, None, "", [])
    try:
        index = int(index)
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < len(explanation.tokens):
        index = default_token(explanation)
    html, heat, where, alternatives = token_views(session, explanation, index)
    row = 0
    inputs = input_tokens_html(explanation.model_prompts[row] if explanation.model_prompts else "",
                               explanation.input_tokens[row], explanation.num_image_tokens, explanation.grid_side,
                               explanation.eye.size)  # fmt: skip
    eye = patch_grid(explanation.eye, explanation.grid_side)
    slider = gr.update(maximum=max(1, len(explanation.tokens) - 1), value=index)
    return (picker, md, spans, bins, inputs, html, slider, heat, eye, where, alternatives)


# ---- layout and events ---------------------------------------------------------------------------------------------
def build(state: gr.State, controller: Controller, *, picture: gr.Image | None = None) -> TeachingPanel:
    """Lay the teaching panel out in the current container and wire it; returns its components.

    ``state`` is the page's ``gr.State`` holding the :class:`UISession`;
    ``picture``: the page's result image; when given, the panel refreshes
    itself whenever it changes (after every run), so the page needs no other
    wiring.
    """
    with gr.Column(elem_id="teach-panel"):
        with gr.Row(equal_height=True):
            picker = gr.Dropdown([], label="Explain run", elem_id="teach-run", scale=3)
            explain_btn = gr.Button("Explain this run", variant="primary", elem_id="teach-explain", scale=1)
            auto = gr.Checkbox(False, label="Explain every run", elem_id="teach-auto", scale=1)
        md = gr.Markdown(elem_id="teach-md")
        input_html = gr.HTML("", js_on_load=None, elem_id="teach-input", padding=False)
        tokens = gr.HTML("", js_on_load=TOKENS_JS, elem_id="teach-token-chips", padding=False,
                         label="The model's tokens, coloured by probability")  # fmt: skip
        token = gr.Slider(0, 1, value=0, step=1, label="Token #", elem_id="teach-token")
        with gr.Row(equal_height=False):
            heatmap = gr.Image(label="Where it looked for this token", type="pil", format="png", interactive=False,
                               height=380, elem_id="teach-heatmap", buttons=["fullscreen"])  # fmt: skip
            eye = gr.Image(label="The model's eye: what the vision tower sees, with its patch grid", type="pil",
                           format="png", interactive=False, height=380, elem_id="teach-eye", buttons=["fullscreen"])  # fmt: skip
        where = gr.Markdown(elem_id="teach-where")
        alternatives = gr.Dataframe(headers=ALTERNATIVE_HEADERS, value=[], interactive=False, max_height=240,
                                    label="What it nearly said: the top tokens at this step (raw softmax)",
                                    elem_id="teach-alternatives")  # fmt: skip
        raw = gr.HighlightedText(label="The decoded text (location tokens highlighted)", color_map=TOKEN_COLORS,
                                 combine_adjacent=False, show_legend=True, elem_id="teach-tokens")  # fmt: skip
        bins = gr.Dataframe(headers=BIN_HEADERS, value=[], label="Each region's bins → pixels", interactive=False,
                            max_height=300, elem_id="teach-bins")  # fmt: skip
    outputs = [picker, md, raw, bins, input_html, tokens, token, heatmap, eye, where, alternatives]

    def refresh(session: UISession, index: Any, auto_on: bool):
        try:
            return panel_values(controller, session, index, compute=bool(auto_on))
        except Exception as exc:  # noqa: BLE001 - a failed explanation is a warning; the page stays
            return _failed(exc, len(outputs))

    panel = TeachingPanel(picker, explain_btn, auto, md, input_html, tokens, token, heatmap, eye, where, alternatives,
                          raw, bins, outputs, refresh, [state, token, auto])  # fmt: skip
    _wire(panel, state, controller, picture)
    return panel


#: where the caption (which also carries a failure's message) is in :attr:`TeachingPanel.refresh_outputs`
WHERE_AT = 9


def _failed(exc: BaseException, count: int) -> tuple:
    message = warn(exc, EXPECTED, kept="Your runs are kept")
    out: list[Any] = [gr.skip()] * count
    out[WHERE_AT] = message
    return tuple(out)


def _wire(p: TeachingPanel, state: gr.State, controller: Controller, picture: gr.Image | None) -> None:
    outputs = p.refresh_outputs
    ui = {"api_visibility": "undocumented"}
    light = {**ui, "concurrency_limit": 8, "show_progress": "hidden"}
    # the explanation runs the model: the same queue slot as every model event of the page
    model = {**ui, "concurrency_id": "model", "concurrency_limit": 1, "show_progress_on": [p.tokens_html]}
    token_outputs = [p.tokens_html, p.heatmap, p.where, p.alternatives, p.token]

    def on_explain(session: UISession, index: Any):
        try:
            return panel_values(controller, session, index, compute=True)
        except Exception as exc:  # noqa: BLE001
            return _failed(exc, len(outputs))

    def on_pick_run(session: UISession, run: Any):
        session.teach_run = int(run) if run else None
        return on_explain(session, None)

    def show_token(session: UISession, index: Any):
        result = teaching_run(session)
        explanation = EXPLANATIONS.peek(result) if result is not None else None
        if explanation is None or index is None:
            return tuple(gr.skip() for _ in token_outputs)
        index = min(max(0, int(index)), len(explanation.tokens) - 1)
        html, heat, where, alternatives = token_views(session, explanation, index)
        return html, heat, where, alternatives, gr.update(value=index)

    def on_chip(session: UISession, evt: gr.EventData):
        return show_token(session, getattr(evt, "token", None))

    p.explain_btn.click(on_explain, [state, p.token], outputs, **model)
    p.picker.input(on_pick_run, [state, p.picker], outputs, **model)
    p.tokens_html.click(on_chip, [state], token_outputs, **light)
    gr.on([p.token.release, p.token.input], show_token, [state, p.token], token_outputs,
          trigger_mode="always_last", **light)  # fmt: skip
    p.auto.input(p.refresh, p.refresh_inputs, outputs, **model)
    if picture is not None:
        # after every run (and any redraw of the picture): the cheap parts at once, the explanation only when
        # "Explain every run" is ticked, then in the model's queue slot
        def cheap(session: UISession, index: Any):
            # the picture is redrawn for every review click, grid toggle and streamed step; the panel explains
            # runs, so it refreshes only when the runs it can show changed (and keeps the token a person picked)
            shown = (session.review.image_key, len(session.results), session.teach_run)
            if session.teach_shown == shown:
                return tuple(gr.skip() for _ in outputs)
            session.teach_shown = shown
            return p.refresh(session, index, False)

        def auto_explain(session: UISession, index: Any, auto_on: bool):
            return p.refresh(session, index, True) if auto_on else tuple(gr.skip() for _ in outputs)

        picture.change(cheap, [state, p.token], outputs, trigger_mode="always_last", **light).then(
            auto_explain, p.refresh_inputs, outputs, **model
        )
