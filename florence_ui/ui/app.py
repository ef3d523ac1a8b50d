"""The Gradio Blocks page: image and boxes in, every task, drawn answers, review, teaching view.

``build_app(engine)`` lays the page out and wires each control to a
:class:`Controller` method; all state lives in one ``gr.State`` holding a
:class:`UISession` per browser, the engine (the model) is shared. Every handler
is wrapped so that bad input becomes a yellow warning and a line in the status
box, never a crash, and the session survives. ``launch`` is what ``app.py``
calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator
from PIL import Image

from florence_ui.core import limits
from florence_ui.core.images import ImageLoadError
from florence_ui.core.review import ACCEPTED, PENDING, REJECTED
from florence_ui.core.tasks import CAPTION_TASK, DEFAULT_TASK, GROUNDING_TASK, get_task
from florence_ui.errors import SamLoadError, WorkspaceError
from florence_ui.model.engine import MAX_NEW_TOKENS_LIMIT as MAX_TOKENS
from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError, StreamEvent
from florence_ui.model.zerogpu import wrap_engine
from florence_ui.render.annotate import save_png
from florence_ui.render.teaching import outline_vs_mask
from florence_ui.ui.api import register_api
from florence_ui.ui.controller import (
    DRAW_AT,
    GENERATE_FROM,
    SHOW_MODES,
    Controller,
    annotator_value,
    box_hint,
    box_rows,
    can_refine,
    task_choices,
    task_help,
)
from florence_ui.ui.mcp_tools import register_mcp_tools
from florence_ui.ui.model_picker import current_choice, model_choices, picker_enabled, swap_engine
from florence_ui.ui.notify import warn
from florence_ui.ui.session import UISession
from florence_ui.ui.teaching_panel import build as build_teaching
from florence_ui.ui.views import (
    BOX_HEADERS,
    EMPTY_STATUS,
    REVIEW_HEADERS,
    REVIEW_TYPES,
    page_views,
    result_view,
    teaching_run,
)
from florence_ui.ui.workspace_tab import CSS as WORKSPACE_CSS
from florence_ui.ui.workspace_tab import build as build_workspace
from florence_ui.ui.workspace_view import keep_in_workspace

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
#: bundled photos, see examples/LICENSES.md: a vehicle scene, an animal, objects, a page of text, a person
EXAMPLES = ["rocket.jpg", "chelsea_cat.jpg", "coffee.jpg", "page.png", "astronaut.jpg"]
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber", neutral_hue="slate")
CSS = """
#header h1 { margin: 0 0 .2rem 0; }
#header p { margin: 0; }
/* theme variables only, so warnings follow dark mode (a fixed light background left its light text unreadable):
   the amber accent, and a faint amber tint over the page's own background */
#status blockquote { border-left: 4px solid var(--secondary-500); color: var(--body-text-color);
                     background: color-mix(in srgb, var(--secondary-500) 12%, var(--background-fill-primary));
                     padding: .4rem .8rem; margin: .4rem 0; }
#status { min-height: 2.5rem; }
#review-table td { vertical-align: top; }
#header { margin-bottom: 0; }
#model-info { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
#model-info p { margin: 0; }
#examples .gallery-item img, #examples .gallery img { max-height: 64px; }
/* toasts at the bottom of the window, never over the Run button at the top of the page (issue 18);
   gradio 6 has no option for their position */
.toast-wrap { top: auto !important; bottom: var(--size-4) !important; max-height: 45vh; overflow: hidden; }
#review-table .add-row-button { display: none; }
#task-help { margin-top: -.4rem; }
"""
#: whether Shift is held, for the click mode's negative clicks (gradio's select event carries no key state)
HEAD = """<script>
window.__florenceShift = false;
addEventListener("keydown", (e) => { if (e.key === "Shift") window.__florenceShift = true; });
addEventListener("keyup", (e) => { if (e.key === "Shift") window.__florenceShift = false; });
addEventListener("blur", () => { window.__florenceShift = false; });
</script>"""
#: order of the outputs every action redraws (see views.page_views)
VIEW_NAMES = ("result_image", "status", "answer", "results_json", "review_table", "review_summary",
              "teach_md", "teach_tokens", "teach_bins", "teach_picker")  # fmt: skip
EXPECTED = (InputError, ImageLoadError, WorkspaceError, SamLoadError, ValueError, KeyError)
#: the input and result pictures' height: with the examples, task and Run above them, both fit a 1366×900 window
IMAGE_HEIGHT = 400
BEAMS_INFO = "1 = greedy (fastest, the page's default on CPU); 3 is what Florence-2's authors use."


def _warn(exc: BaseException) -> str:
    return warn(exc, EXPECTED)


@cache
def _serve_examples() -> None:
    """Serve the bundled examples from the package folder, wherever the app was started.

    Gradio only serves files under the working directory, its temp dir and
    ``allowed_paths``; started from another folder (``cd /tmp && python
    /path/app.py``) every example click answered 500 (``InvalidPathError``).
    ``gr.set_static_paths`` is gradio's way for ``gr.Examples`` files: served in
    place (not copied to the cache), for every app of this process. The folder
    holds only the example photos and their licences.
    """
    gr.set_static_paths([EXAMPLES_DIR])


#: the one-line guide a first-time visitor reads (issue 18: two clicks to a result, no scrolling)
GUIDE = "**Pick an example → Run.** Or upload your own image; draw boxes on it for the region tasks."


def header_markdown(engine: FlorenceEngine, settings: GenerationSettings) -> str:
    """The page's title and its one-line guide (the model's details are in :func:`info_markdown`)."""
    return f"# Florence-2 UI\n{GUIDE}"


def info_markdown(engine: FlorenceEngine, settings: GenerationSettings, page: GenerationSettings | None = None) -> str:
    """The small info line: model, device, dtype and the defaults (the page's, and the API's when they differ)."""
    page = page or settings
    rev = "@" + engine.revision if getattr(engine, "revision", None) else ""
    line = (f"Model **{engine.model_id}**{rev} · device **{engine.device}** · dtype **{engine.dtype_name}** · "
            f"defaults: max new tokens {page.max_new_tokens}, beams {page.num_beams}")  # fmt: skip
    if page != settings:
        line += (f" (CPU: greedy and shorter answers, change them under *Generation settings*; API calls default "
                 f"to {settings.max_new_tokens} tokens, {settings.num_beams} beams)")  # fmt: skip
    return line


def build_app(engine: FlorenceEngine, *, settings: GenerationSettings | None = None) -> gr.Blocks:
    """The whole page over one shared engine. Launch it with ``demo.launch(...)`` or :func:`launch`."""
    controller = Controller(engine, settings)
    settings, page_defaults = controller.settings, controller.page_settings
    choices = model_choices()
    _serve_examples()
    with warnings.catch_warnings():
        # Gradio 6 prefers theme/css at launch(); passing them here keeps them for every
        # launch (tests, app.py, Spaces) and gradio still honours them.
        warnings.simplefilter("ignore", UserWarning)
        demo = gr.Blocks(
            title="Florence-2 UI", theme=THEME, css=CSS + WORKSPACE_CSS, head=HEAD, analytics_enabled=False
        )
    with demo:
        state = gr.State(UISession())  # gradio deep-copies it: one UISession per browser session
        gr.Markdown(header_markdown(engine, settings), elem_id="header")
        info = gr.Markdown(info_markdown(engine, settings, page_defaults), elem_id="model-info")
        with gr.Tabs(elem_id="modes") as modes:
            with gr.Tab("Prompt & review one image", id="prompt", elem_id="mode-prompt"):
                annot = image_annotator(
                    label="Image: upload, paste or pick an example; draw prompt boxes with Create box (C)",
                    show_label=False,
                    image_type="filepath",
                    sources=["upload", "clipboard"],
                    disable_edit_boxes=True,
                    show_remove_button=True,
                    boxes_alpha=0.15,
                    box_min_size=4,
                    height=IMAGE_HEIGHT,
                    elem_id="input-image",
                    render=False,  # drawn below; the examples come first, above the fold
                )
                gr.Examples(
                    examples=[[{"image": str(EXAMPLES_DIR / name), "boxes": []}] for name in EXAMPLES],
                    inputs=[annot],
                    label="① Pick an example (public-domain / CC0 photos from scikit-image)",
                    examples_per_page=len(EXAMPLES),
                    elem_id="examples",
                )
                with gr.Row(equal_height=True, elem_id="task-row"):
                    task = gr.Dropdown(task_choices(), value=DEFAULT_TASK.token, label="② Task", elem_id="task",
                                       scale=3, min_width=200)  # fmt: skip
                    text = gr.Textbox(label="Text prompt", visible=False, elem_id="text-prompt", max_lines=2, scale=4,
                                      min_width=200)  # fmt: skip
                    with gr.Column(scale=2, min_width=200):
                        run_btn = gr.Button("③ Run", variant="primary", elem_id="run")
                        ground_btn = gr.Button("Caption → ground the phrases", size="sm", elem_id="caption-ground")
                with gr.Row(equal_height=True, elem_id="task-help-row"):
                    task_md = gr.Markdown(task_help(DEFAULT_TASK), elem_id="task-help")
                    with gr.Row(elem_id="run-options"):
                        tiled = gr.Checkbox(False, label="Tiled (dense scenes)", visible=DEFAULT_TASK.tileable,
                                            elem_id="tiled", min_width=120, container=False,
                                            info=None)  # fmt: skip
                        refine = gr.Checkbox(False, label="Refine masks with SAM", visible=can_refine(engine),
                                             elem_id="refine-sam", min_width=120, container=False)  # fmt: skip
                        click_mode = gr.Checkbox(False, label="Click to segment (SAM)", visible=can_refine(engine),
                                                 elem_id="click-mode", min_width=120, container=False)  # fmt: skip
                with gr.Row(equal_height=False, elem_id="work-row"):
                    with gr.Column(scale=1, min_width=300):
                        annot.render()
                        box_hint_md = gr.Markdown(box_hint(UISession()), elem_id="box-hint")
                        with gr.Row(equal_height=False):
                            box_table = gr.Dataframe(headers=BOX_HEADERS, value=[], label="Prompt boxes (drawing order)",
                                                     interactive=False, max_height=190, elem_id="box-table", scale=4)  # fmt: skip
                            with gr.Column(scale=1, min_width=130):
                                box_number = gr.Number(
                                    value=1, label="Box #", precision=0, minimum=1, elem_id="box-number"
                                )
                                remove_btn = gr.Button("Remove box", size="sm", elem_id="remove-box")
                                clear_btn = gr.Button("Clear boxes", size="sm", elem_id="clear-boxes")
                    with gr.Column(scale=1, min_width=300):
                        # no label badge: it covered the top 48 px of a short picture (the alt text names it)
                        result_image = gr.Image(label="Result (lossless PNG)", show_label=False, type="pil",
                                                format="png", interactive=False, height=IMAGE_HEIGHT,
                                                elem_id="result-image", buttons=["download", "fullscreen"])  # fmt: skip
                        show = gr.Radio([(v, k) for k, v in SHOW_MODES.items()], value="latest", show_label=False,
                                        container=False, elem_id="show-mode")  # fmt: skip
                        with gr.Row(visible=False, elem_id="click-row") as click_row:
                            click_md = gr.Markdown(Controller.click_hint(UISession()), elem_id="click-hint")
                            negative = gr.Checkbox(False, label="negative (or hold Shift)", elem_id="click-negative",
                                                   min_width=100, container=False)  # fmt: skip
                            segment_btn = gr.Button("Segment the clicks", variant="primary", size="sm",
                                                    elem_id="segment-clicks", min_width=100)  # fmt: skip
                            clear_clicks_btn = gr.Button(
                                "Clear clicks", size="sm", elem_id="clear-clicks", min_width=80
                            )
                        status = gr.Markdown(EMPTY_STATUS, elem_id="status")
                        # the teaching view sits beside the picture it explains, one tab away from the answer
                        with gr.Tabs(elem_id="result-tabs"):
                            with gr.Tab("Answer", id="answer", elem_id="tab-answer"):
                                answer = gr.Textbox(label="Answer", lines=2, max_lines=8, interactive=False,
                                                    elem_id="answer")  # fmt: skip
                                with gr.Accordion("Generation settings", open=False, elem_id="settings"):
                                    model_pick = None
                                    if picker_enabled(choices):
                                        model_pick = gr.Dropdown(
                                            choices, value=current_choice(engine, choices), label="Model",
                                            elem_id="model-picker",
                                            info="Loaded when picked (the first time downloads it); one model in "
                                                 "memory at a time, shared by every visitor.",
                                        )  # fmt: skip
                                    max_new = gr.Slider(1, MAX_TOKENS, value=page_defaults.max_new_tokens, step=1,
                                                        label="Max new tokens", elem_id="max-new-tokens",
                                                        info="Answers longer than this are cut off (a warning says so).")  # fmt: skip
                                    beams = gr.Slider(1, 8, value=page_defaults.num_beams, step=1, label="Beams",
                                                      elem_id="beams", info=BEAMS_INFO)  # fmt: skip
                            with gr.Tab("Teaching view", id="teaching", elem_id="tab-teaching"):
                                # the model's tokens, its eye, where it looked, the alternatives, bins → pixels
                                with gr.Column(elem_id="teach-beside"):
                                    grid = gr.Checkbox(value=False, label="Overlay the 1000-bin grid on the result image",
                                                       elem_id="grid-toggle")  # fmt: skip
                                    teaching = build_teaching(state, controller, picture=result_image)
                                    teach_picker, teach_md = teaching.picker, teaching.md
                                    teach_tokens, teach_bins = teaching.raw, teaching.bins
                                    outline = gr.Image(label="Florence-2's outline beside SAM's mask (runs refined "
                                                       "with SAM)", type="pil", format="png", interactive=False,
                                                       visible=False, elem_id="teach-outline",
                                                       buttons=["fullscreen"])  # fmt: skip
                            with gr.Tab("Results JSON", id="json", elem_id="tab-json"):
                                results_json = gr.JSON(label="Latest result", elem_id="results-json")
                with gr.Tabs(elem_id="tabs"):
                    with gr.Tab("Review", id="review", elem_id="tab-review"):
                        review_summary = gr.Markdown(elem_id="review-summary")
                        with gr.Row(equal_height=False):
                            accept_btn = gr.Button("✓ Accept ticked", size="sm", elem_id="accept-ticked")
                            reject_btn = gr.Button("✗ Reject ticked", size="sm", elem_id="reject-ticked")
                            pending_btn = gr.Button("Back to pending", size="sm", elem_id="pending-ticked")
                            threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="Confidence ≥", scale=2,
                                                  elem_id="threshold")  # fmt: skip
                            unscored = gr.Checkbox(value=False, label="incl. unscored", elem_id="include-unscored")
                            above_btn = gr.Button("Accept all pending above", size="sm", elem_id="accept-above")
                        with gr.Row(equal_height=True):
                            gr.Markdown("This review lives in this browser tab only (a refresh loses it). To keep it, "
                                        "open a workspace in the **Workspace** tab, then:", elem_id="keep-hint")  # fmt: skip
                            keep_btn = gr.Button("Keep this image and its review in the open workspace", size="sm",
                                                 elem_id="keep-in-workspace", scale=0, min_width=200)  # fmt: skip
                        review_table = gr.Dataframe(
                            headers=REVIEW_HEADERS, datatype=REVIEW_TYPES, value=[], type="array", interactive=True,
                            static_columns=[1, 2, 3, 5, 6], wrap=True, max_height=420,
                            column_widths=["5%", "5%", "11%", "15%", "33%", "11%", "20%"], elem_id="review-table",
                            label="Every region and text of every run on this image: tick rows, double-click a label to edit",
                        )  # fmt: skip
                    with gr.Tab("Label Studio & export", id="labelstudio", elem_id="tab-labelstudio"):
                        try:
                            from florence_ui.ui.labelstudio_tab import build as build_labelstudio
                        except ImportError:
                            gr.Markdown("Label Studio and COCO / YOLO export are not installed in this build yet.")
                        else:
                            build_labelstudio(state)
            with gr.Tab("Workspace: review a dataset", id="workspace", elem_id="mode-workspace"):
                build_workspace(state, lambda: controller.engine, settings, modes)
        register_api(controller, state)

        page = SimpleNamespace(
            state=state, annot=annot, task=task, task_md=task_md, text=text, run_btn=run_btn, ground_btn=ground_btn,
            tiled=tiled, refine=refine, outline=outline, click_mode=click_mode, click_row=click_row, click_md=click_md,
            negative=negative, segment_btn=segment_btn, clear_clicks_btn=clear_clicks_btn,
            max_new=max_new, beams=beams, box_table=box_table, box_hint_md=box_hint_md, box_number=box_number,
            remove_btn=remove_btn, clear_btn=clear_btn, result_image=result_image, show=show, review_table=review_table,
            accept_btn=accept_btn, reject_btn=reject_btn, pending_btn=pending_btn, threshold=threshold,
            unscored=unscored, above_btn=above_btn, keep_btn=keep_btn, grid=grid, teach_picker=teach_picker, teach_md=teach_md,
            teach_tokens=teach_tokens, teach_bins=teach_bins, info=info, model_pick=model_pick, choices=choices,
            views=[result_image, status, answer, results_json, review_table, review_summary, teach_md, teach_tokens,
                   teach_bins, teach_picker],
        )  # fmt: skip
        _wire(page, controller)
        report_failures(demo, status)
    # a bounded queue: past queue_size waiting requests, new ones get "queue is full" instead of hours of waiting
    demo.queue(max_size=limits.current().queue_size, default_concurrency_limit=1)
    return demo


def launch_options(lim: limits.Limits | None = None) -> dict[str, Any]:
    """Server-side options for ``demo.launch``: the upload size cap (gradio refuses larger files with 413), and
    no run history (it would keep every event's inputs, uploads and typed keys included, in the browser's
    localStorage, and can sync them to a Hugging Face bucket)."""
    lim = lim or limits.current()
    return {"max_file_size": lim.max_file_size, "run_history": False}


def _wire(c: SimpleNamespace, controller: Controller) -> None:
    """Connect the page's controls (``c``, built by :func:`build_app`) to the controller."""
    state, annot, views = c.state, c.annot, c.views
    status_at = VIEW_NAMES.index("status")
    image_at = VIEW_NAMES.index("result_image")
    folder = c.result_image.GRADIO_CACHE

    def served(out: tuple) -> tuple:
        """The result picture as a file gradio serves as is (encoded fast, lossless), not a PIL image to encode."""
        return served_views(out, folder, image_at)

    def page(session: UISession, ticked=()) -> tuple:
        return served(page_views(controller, session, ticked))

    box_outputs = [c.box_table, c.box_hint_md]
    skip_views = tuple(gr.skip() for _ in views)

    def failed(exc: BaseException, leading: int) -> tuple:
        message = _warn(exc)
        out = [gr.skip()] * (leading + len(views))
        out[leading + status_at] = message
        return tuple(out)

    def boxes_out(session: UISession) -> tuple:
        return box_rows(session.boxes), box_hint(session)

    def on_input(session: UISession, value: dict | None):
        try:
            changed = controller.set_input(session, value)
        except EXPECTED as exc:
            # keep the previous picture, its boxes and its review: put the annotator back to them
            return (session, annotator_value(session), *boxes_out(session), *failed(exc, 0))
        views_out = page(session) if changed else skip_views
        return (session, gr.skip(), *boxes_out(session), *views_out)

    def on_task(token: str):
        spec = get_task(token)
        return (
            task_help(spec),
            gr.update(visible=spec.needs_text, placeholder=spec.text_hint or "", label=f"Text prompt for {spec.name}"),
            gr.update(visible=spec.tileable),
        )

    progress_tracker = gr.Progress()  # gradio sees this default and injects the live tracker

    answer_at = VIEW_NAMES.index("answer")
    streamed_every_s = 0.25  # at most four page updates a second while tokens arrive (each is a websocket message)

    def streaming(session: UISession, token: str, event: StreamEvent, drawn: int) -> tuple[tuple, int]:
        """One partial page while the answer is generated: the text so far, the boxes completed so far."""
        out = [gr.skip()] * (3 + len(views))  # state and the box outputs stay as they are
        out[3 + answer_at] = "\n".join(event.texts)
        out[3 + status_at] = f"Generating… {event.step}/{event.max_steps} tokens ({event.elapsed_s:.1f} s)"
        boxes = 0 if event.detections is None else len(event.detections)
        if boxes > drawn and (picture := controller.partial_image(session, token, event)) is not None:
            out[3 + image_at] = save_png(picture, folder)
        return tuple(out), max(boxes, drawn)

    def on_run(session, value, token, text, max_new_tokens, num_beams, tiled=False, refine=False,
               progress=progress_tracker):  # fmt: skip
        """Run the task; the answer box fills and boxes appear as the tokens arrive (a generator: gradio streams)."""
        try:
            controller.set_input(session, value)
            settings = controller.settings_for(max_new_tokens, num_beams)
            spec = get_task(token)
            steps = controller.run_steps(session, token, text, settings, lambda f, d: progress(f, desc=d),
                                         tile=bool(tiled) and spec.tileable, refine=bool(refine))  # fmt: skip
            drawn, shown = 0, 0.0
            while True:
                try:
                    event = next(steps)
                except StopIteration as done:
                    result = done.value
                    break
                if event.elapsed_s - shown >= streamed_every_s:
                    shown = event.elapsed_s
                    partial, drawn = streaming(session, token, event, drawn)
                    yield partial
            if result.truncated:
                gr.Warning(f"{get_task(result.task).name}: the answer was cut off at max new tokens.")
            progress(DRAW_AT, desc="Drawing the answer…")
            out = page(session)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a warning, the session stays
            yield (session, *boxes_out(session), *failed(exc, 0))
            return
        yield (session, *boxes_out(session), *out)

    def on_click_mode(on: bool):
        return gr.update(visible=bool(on))

    def on_click(session: UISession, on: bool, negative: bool, event: gr.SelectData):
        """A click on the result picture in click mode: one more SAM point (Shift or *negative*: a part away)."""
        if not on:
            return session, gr.skip(), gr.skip(), gr.skip()
        try:
            x, y = (float(v) for v in event.index[:2])
            controller.add_click(session, x, y, negative=bool(negative))
        except Exception as exc:  # noqa: BLE001 - a bad click is a warning; the clicks so far stay
            return session, gr.skip(), gr.skip(), _warn(exc)
        picture = controller.result_image(session)
        return session, save_png(picture, folder), controller.click_hint(session), gr.skip()

    def on_clear_clicks(session: UISession):
        session.clicks = []
        picture = controller.result_image(session)
        return session, save_png(picture, folder) if picture is not None else None, controller.click_hint(session)

    def on_segment(session, value, max_new_tokens, num_beams, progress=progress_tracker):
        """All click objects in one batch: SAM masks → boxes → Florence-2 names them → the review."""
        try:
            controller.set_input(session, value)
            settings = controller.settings_for(max_new_tokens, num_beams)
            progress(GENERATE_FROM, desc="SAM + Florence-2: segmenting and naming the clicked objects…")
            controller.segment_clicks(session, settings)
            out = page(session)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a warning, the clicks stay
            return (session, *boxes_out(session), controller.click_hint(session), *failed(exc, 0))
        return (session, *boxes_out(session), controller.click_hint(session), *out)

    def on_ground(session, value, token, max_new_tokens, num_beams, progress=progress_tracker):
        try:
            controller.set_input(session, value)
            settings = controller.settings_for(max_new_tokens, num_beams)
            caption_task = token if get_task(token).is_caption else CAPTION_TASK.token
            cap, grounding = controller.caption_then_ground(session, caption_task, settings,
                                                            lambda f, d: progress(f, desc=d))  # fmt: skip
            if cap.truncated or grounding.truncated:
                gr.Warning("An answer was cut off at max new tokens.")
        except Exception as exc:  # noqa: BLE001
            return (session, gr.skip(), gr.skip(), *boxes_out(session), *failed(exc, 0))
        task_update = gr.update(value=GROUNDING_TASK.token)
        text_update = gr.update(value=cap.text, visible=True)
        return (session, task_update, text_update, *boxes_out(session), *page(session))

    def box_action(action: Callable[[UISession], None]):
        def handler(session, *args):
            try:
                action(session, *args)
            except EXPECTED as exc:
                _warn(exc)
                return (session, gr.skip(), *boxes_out(session))
            return (session, annotator_value(session), *boxes_out(session))

        return handler

    table_at = VIEW_NAMES.index("review_table")

    def on_table(session, table):
        try:
            changed, ticked = controller.apply_table(session, table)
            refused = False
        except EXPECTED as exc:
            _warn(exc)
            changed, ticked, refused = True, getattr(exc, "ticked", set()), True
        if not changed:
            return (session, *skip_views)
        out = list(page(session, ticked))
        if not refused:
            # the browser already shows the accepted edit; redrawing the table here could wipe a
            # tick the user made while this event was in flight
            out[table_at] = gr.skip()
        return (session, *out)

    def status_action(status_value: str):
        def handler(session, table):
            try:
                controller.set_status(session, table, status_value)
            except Exception as exc:  # noqa: BLE001
                return (session, *failed(exc, 0))
            return (session, *page(session))

        return handler

    def on_above(session, threshold, include_unscored):
        try:
            n = controller.accept_above(session, threshold, include_unscored)
            gr.Info(f"Accepted {n} pending item{'s' if n != 1 else ''} with confidence ≥ {threshold:.2f}.", duration=4)
        except Exception as exc:  # noqa: BLE001
            return (session, *failed(exc, 0))
        return (session, *page(session))

    def view_option(name: str):
        def handler(session, value):
            setattr(session, name, value)
            return session, served_view(result_view(controller, session), folder)

        return handler

    ui = {"api_visibility": "undocumented"}
    light = {**ui, "concurrency_limit": 8, "show_progress": "hidden"}
    # one model, one generate at a time: every model event (page and API) shares this queue slot
    model = {**ui, "concurrency_id": "model", "concurrency_limit": 1, "show_progress_on": [c.result_image]}
    raw = {"preprocess": False}  # the annotator's payload goes to images.open_image as is (controller.image_source)
    annot.change(on_input, [state, annot], [state, annot, *box_outputs, *views], trigger_mode="always_last",
                 **light, **raw)  # fmt: skip
    c.task.change(on_task, [c.task], [c.task_md, c.text, c.tiled], **light)
    run_inputs = [state, annot, c.task, c.text, c.max_new, c.beams, c.tiled, c.refine]
    gr.on([c.run_btn.click, c.text.submit], on_run, run_inputs, [state, *box_outputs, *views], **model, **raw)
    ground_outputs = [state, c.task, c.text, *box_outputs, *views]
    c.ground_btn.click(on_ground, [state, annot, c.task, c.max_new, c.beams], ground_outputs, **model, **raw)
    remove = box_action(controller.remove_box)
    c.remove_btn.click(remove, [state, c.box_number], [state, annot, *box_outputs], **light)
    c.clear_btn.click(box_action(controller.clear_boxes), [state], [state, annot, *box_outputs], **light)
    c.review_table.input(on_table, [state, c.review_table], [state, *views], **light)
    for button, value in ((c.accept_btn, ACCEPTED), (c.reject_btn, REJECTED), (c.pending_btn, PENDING)):
        button.click(status_action(value), [state, c.review_table], [state, *views], **light)
    c.above_btn.click(on_above, [state, c.threshold, c.unscored], [state, *views], **light)

    def on_keep(session: UISession):
        try:
            message = keep_in_workspace(session)
        except Exception as exc:  # noqa: BLE001 - a refusal is a warning; the Prompt page's review stays
            return session, _warn(exc)
        gr.Info(message.replace("**", ""), duration=6)
        return session, message

    c.keep_btn.click(on_keep, [state], [state, c.views[status_at]], **light)

    def on_outline(session: UISession):
        """The teaching view's Florence-2 polygon | SAM mask picture, for the run it explains when it was refined."""
        result = teaching_run(session)
        picture = outline_vs_mask(session.image, result) if result is not None and session.image is not None else None
        return gr.update(value=picture, visible=picture is not None)

    c.result_image.change(on_outline, [state], [c.outline], **light)
    c.click_mode.change(on_click_mode, [c.click_mode], [c.click_row], **light)
    # Shift held while clicking = a negative click (a global key listener sets window.__florenceShift, see HEAD)
    shift_js = "(s, on, negative) => [s, on, negative || !!window.__florenceShift]"
    c.result_image.select(on_click, [state, c.click_mode, c.negative], [state, c.result_image, c.click_md,
                          c.views[status_at]], js=shift_js, **light)  # fmt: skip
    c.clear_clicks_btn.click(on_clear_clicks, [state], [state, c.result_image, c.click_md], **light)
    c.segment_btn.click(on_segment, [state, annot, c.max_new, c.beams], [state, *box_outputs, c.click_md, *views],
                        **model, **raw)  # fmt: skip
    c.show.change(view_option("show"), [state, c.show], [state, c.result_image], **light)
    c.grid.change(view_option("grid"), [state, c.grid], [state, c.result_image], **light)

    if c.model_pick is not None:

        def on_model(choice, progress=progress_tracker):
            try:
                swap_engine(controller, choice, c.choices, lambda f, d: progress(f, desc=d), wrap=wrap_engine)
            except Exception as exc:  # noqa: BLE001 - a failed load is a warning; the previous model is back
                return gr.update(value=current_choice(controller.engine, c.choices)), gr.skip(), _warn(exc)
            gr.Info(f"Loaded {controller.engine.describe()}.", duration=4)
            text = info_markdown(controller.engine, controller.settings, controller.page_settings)
            return gr.skip(), text, f"Model switched to **{controller.engine.model_id}**. Run a task."

        c.model_pick.input(on_model, [c.model_pick], [c.model_pick, c.info, views[status_at]], **model)


def served_view(update: Any, folder: str) -> Any:
    """A result-picture update whose PIL image is replaced by :func:`~florence_ui.render.annotate.save_png`'s file.

    Why: gradio encodes a PIL image at zlib level 6 and hashes it again, the larger part of the page's own time
    per request; a file already in the component's cache folder is served as it is (issue 17).
    """
    if isinstance(update, dict) and isinstance(update.get("value"), Image.Image):
        return {**update, "value": save_png(update["value"], folder)}
    if isinstance(update, Image.Image):
        return save_png(update, folder)
    return update


def served_views(out: tuple, folder: str, image_at: int) -> tuple:
    values = list(out)
    values[image_at] = served_view(values[image_at], folder)
    return tuple(values)


#: what the page says when an event fails outside the handlers' own checks (a bug, a server-side refusal)
EVENT_FAILED = ("That action failed on the server (an unexpected error; the terminal running app.py shows the "
                "details). Nothing you did before is lost: try again, or pick another image or task.")  # fmt: skip


def report_failures(demo: gr.Blocks, status: gr.components.Component) -> None:
    """Every event of the page that fails shows a warning toast and a line in the status box.

    The handlers turn bad input into warnings themselves, but an event can still fail outside them (a bug, or
    gradio refusing a request: a file outside its allowed paths answers 500) and gradio then shows nothing.
    Gradio's ``.failure()`` listener reports it; it is added here to every event a browser can trigger (and
    their follow-ups), the Label Studio tab's and the examples' included, so a new event cannot forget it.
    """

    def on_failure() -> str:
        gr.Warning(EVENT_FAILED, duration=8)
        return f"> ⚠️ {EVENT_FAILED}"

    events = list(demo.fns.values())
    reported = {fn.trigger_after for fn in events if fn.trigger_only_on_failure}
    for fn in events:
        in_page = bool(fn.targets) or fn.trigger_after is not None  # API-only endpoints have neither
        # gradio has no public way to add a listener to an event already made; its own .then/.failure chain by id
        if in_page and not fn.trigger_only_on_failure and fn._id not in reported:  # noqa: SLF001
            gr.events.Dependency(None, {}, fn._id, fn.fn).failure(  # noqa: SLF001 - as above
                on_failure, None, [status], show_progress="hidden", api_visibility="private", concurrency_limit=None
            )


def launch(
    engine: FlorenceEngine,
    *,
    settings: GenerationSettings | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    mcp: bool = False,
    **kwargs: Any,
) -> gr.Blocks:
    """Build the page and serve it (blocks until the server stops unless ``prevent_thread_lock``).

    ``mcp``: also serve the Florence-2 tasks as MCP tools (:mod:`florence_ui.ui.mcp_tools`), and only them.
    """
    demo = build_app(engine, settings=settings)
    tools = register_mcp_tools(demo, engine, settings=settings) if mcp else {}
    options = launch_options() | tools | kwargs
    demo.launch(server_name=host, server_port=port, share=share, footer_links=["api", "gradio", "settings"], **options)
    return demo
