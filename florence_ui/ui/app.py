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

from florence_ui.core import limits
from florence_ui.core.images import ImageLoadError
from florence_ui.core.review import ACCEPTED, PENDING, REJECTED
from florence_ui.core.tasks import CAPTION_TASK, DEFAULT_TASK, GROUNDING_TASK, get_task
from florence_ui.errors import WorkspaceError
from florence_ui.model.engine import MAX_NEW_TOKENS_LIMIT as MAX_TOKENS
from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError
from florence_ui.render.teaching import TOKEN_COLORS
from florence_ui.ui.api import register_api
from florence_ui.ui.controller import (
    SHOW_MODES,
    Controller,
    annotator_value,
    box_hint,
    box_rows,
    task_choices,
    task_help,
)
from florence_ui.ui.notify import warn
from florence_ui.ui.session import UISession
from florence_ui.ui.views import (
    BIN_HEADERS,
    BOX_HEADERS,
    EMPTY_STATUS,
    REVIEW_HEADERS,
    REVIEW_TYPES,
    page_views,
    result_view,
    teaching_outputs,
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
#review-table .add-row-button { display: none; }
#task-help { margin-top: -.4rem; }
"""
#: order of the outputs every action redraws (see views.page_views)
VIEW_NAMES = ("result_image", "status", "answer", "results_json", "review_table", "review_summary",
              "teach_md", "teach_tokens", "teach_bins", "teach_picker")  # fmt: skip
EXPECTED = (InputError, ImageLoadError, WorkspaceError, ValueError, KeyError)


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


def header_markdown(engine: FlorenceEngine, settings: GenerationSettings) -> str:
    return (
        "# Florence-2 UI\n"
        f"Model **{engine.model_id}**{'@' + engine.revision if engine.revision else ''} · device **{engine.device}**"
        f" · dtype **{engine.dtype_name}** · defaults: max new tokens {settings.max_new_tokens}, "
        f"beams {settings.num_beams}. Draw boxes on the image for the region tasks; review every answer below."
    )


def build_app(engine: FlorenceEngine, *, settings: GenerationSettings | None = None) -> gr.Blocks:
    """The whole page over one shared engine. Launch it with ``demo.launch(...)`` or :func:`launch`."""
    controller = Controller(engine, settings)
    settings = controller.settings
    _serve_examples()
    with warnings.catch_warnings():
        # Gradio 6 prefers theme/css at launch(); passing them here keeps them for every
        # launch (tests, app.py, Spaces) and gradio still honours them.
        warnings.simplefilter("ignore", UserWarning)
        demo = gr.Blocks(title="Florence-2 UI", theme=THEME, css=CSS + WORKSPACE_CSS, analytics_enabled=False)
    with demo:
        state = gr.State(UISession())  # gradio deep-copies it: one UISession per browser session
        gr.Markdown(header_markdown(engine, settings), elem_id="header")
        with gr.Tabs(elem_id="modes") as modes:
            with gr.Tab("Prompt & review one image", id="prompt", elem_id="mode-prompt"):
                with gr.Row(equal_height=True):
                    task = gr.Dropdown(task_choices(), value=DEFAULT_TASK.token, label="Task", elem_id="task", scale=3)
                    text = gr.Textbox(label="Text prompt", visible=False, elem_id="text-prompt", max_lines=2, scale=4)
                    with gr.Column(scale=2, min_width=220):
                        run_btn = gr.Button("Run", variant="primary", elem_id="run")
                        ground_btn = gr.Button("Caption → ground the phrases", size="sm", elem_id="caption-ground")
                task_md = gr.Markdown(task_help(DEFAULT_TASK), elem_id="task-help")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1):
                        annot = image_annotator(
                            label="Image: upload, paste or pick an example; draw prompt boxes with Create box (C)",
                            image_type="filepath",
                            sources=["upload", "clipboard"],
                            disable_edit_boxes=True,
                            show_remove_button=True,
                            boxes_alpha=0.15,
                            box_min_size=4,
                            height=460,
                            elem_id="input-image",
                        )
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
                        gr.Examples(
                            examples=[[{"image": str(EXAMPLES_DIR / name), "boxes": []}] for name in EXAMPLES],
                            inputs=[annot],
                            label="Examples: click one (public-domain / CC0 photos from scikit-image)",
                            examples_per_page=len(EXAMPLES),
                            elem_id="examples",
                        )
                    with gr.Column(scale=1):
                        result_image = gr.Image(label="Result (lossless PNG)", type="pil", format="png", interactive=False,
                                                height=460, elem_id="result-image", buttons=["download", "fullscreen"])  # fmt: skip
                        show = gr.Radio([(v, k) for k, v in SHOW_MODES.items()], value="latest", show_label=False,
                                        container=False, elem_id="show-mode")  # fmt: skip
                        status = gr.Markdown(EMPTY_STATUS, elem_id="status")
                        answer = gr.Textbox(label="Answer", lines=2, max_lines=8, interactive=False, elem_id="answer")
                        with gr.Accordion("Generation settings", open=False, elem_id="settings"):
                            max_new = gr.Slider(1, MAX_TOKENS, value=settings.max_new_tokens, step=1, label="Max new tokens",
                                                info="Answers longer than this are cut off (a warning says so).")  # fmt: skip
                            beams = gr.Slider(1, 8, value=settings.num_beams, step=1, label="Beams",
                                              info="1 = greedy (fastest); 3 is what Florence-2's authors use.")  # fmt: skip
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
                    with gr.Tab("Teaching view", id="teaching", elem_id="tab-teaching"):
                        with gr.Row():
                            teach_picker = gr.Dropdown([], label="Explain run", elem_id="teach-run", scale=3)
                            grid = gr.Checkbox(value=False, label="Overlay the 1000-bin grid on the result image",
                                               elem_id="grid-toggle", scale=2)  # fmt: skip
                        teach_md = gr.Markdown(elem_id="teach-md")
                        teach_tokens = gr.HighlightedText(label="Raw generated text (location tokens highlighted)",
                                                          color_map=TOKEN_COLORS, combine_adjacent=False, show_legend=True,
                                                          elem_id="teach-tokens")  # fmt: skip
                        teach_bins = gr.Dataframe(headers=BIN_HEADERS, value=[], label="Each region's bins → pixels",
                                                  interactive=False, max_height=360, elem_id="teach-bins")  # fmt: skip
                    with gr.Tab("Results JSON", id="json", elem_id="tab-json"):
                        results_json = gr.JSON(label="Latest result", elem_id="results-json")
                    with gr.Tab("Label Studio & export", id="labelstudio", elem_id="tab-labelstudio"):
                        try:
                            from florence_ui.ui.labelstudio_tab import build as build_labelstudio
                        except ImportError:
                            gr.Markdown("Label Studio and COCO / YOLO export are not installed in this build yet.")
                        else:
                            build_labelstudio(state)
            with gr.Tab("Workspace: review a dataset", id="workspace", elem_id="mode-workspace"):
                build_workspace(state, engine, settings, modes)
        register_api(controller, state)

        page = SimpleNamespace(
            state=state, annot=annot, task=task, task_md=task_md, text=text, run_btn=run_btn, ground_btn=ground_btn,
            max_new=max_new, beams=beams, box_table=box_table, box_hint_md=box_hint_md, box_number=box_number,
            remove_btn=remove_btn, clear_btn=clear_btn, result_image=result_image, show=show, review_table=review_table,
            accept_btn=accept_btn, reject_btn=reject_btn, pending_btn=pending_btn, threshold=threshold,
            unscored=unscored, above_btn=above_btn, keep_btn=keep_btn, grid=grid, teach_picker=teach_picker, teach_md=teach_md,
            teach_tokens=teach_tokens, teach_bins=teach_bins,
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
        views_out = page_views(controller, session) if changed else skip_views
        return (session, gr.skip(), *boxes_out(session), *views_out)

    def on_task(token: str):
        spec = get_task(token)
        return (
            task_help(spec),
            gr.update(visible=spec.needs_text, placeholder=spec.text_hint or "", label=f"Text prompt for {spec.name}"),
        )

    progress_tracker = gr.Progress()  # gradio sees this default and injects the live tracker

    def on_run(session, value, token, text, max_new_tokens, num_beams, progress=progress_tracker):
        try:
            controller.set_input(session, value)
            settings = controller.settings_for(max_new_tokens, num_beams)
            result = controller.run(session, token, text, settings, lambda f, d: progress(f, desc=d))
            if result.truncated:
                gr.Warning(f"{get_task(result.task).name}: the answer was cut off at max new tokens.")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a warning, the session stays
            return (session, *boxes_out(session), *failed(exc, 0))
        return (session, *boxes_out(session), *page_views(controller, session))

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
        return (session, task_update, text_update, *boxes_out(session), *page_views(controller, session))

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
        out = list(page_views(controller, session, ticked))
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
            return (session, *page_views(controller, session))

        return handler

    def on_above(session, threshold, include_unscored):
        try:
            n = controller.accept_above(session, threshold, include_unscored)
            gr.Info(f"Accepted {n} pending item{'s' if n != 1 else ''} with confidence ≥ {threshold:.2f}.", duration=4)
        except Exception as exc:  # noqa: BLE001
            return (session, *failed(exc, 0))
        return (session, *page_views(controller, session))

    def view_option(name: str):
        def handler(session, value):
            setattr(session, name, value)
            return session, result_view(controller, session)

        return handler

    def on_teach(session, run):
        session.teach_run = int(run) if run else None
        return (session, *teaching_outputs(controller, session)[:3])

    ui = {"api_visibility": "undocumented"}
    light = {**ui, "concurrency_limit": 8, "show_progress": "hidden"}
    # one model, one generate at a time: every model event (page and API) shares this queue slot
    model = {**ui, "concurrency_id": "model", "concurrency_limit": 1, "show_progress_on": [c.result_image]}
    raw = {"preprocess": False}  # the annotator's payload goes to images.open_image as is (controller.image_source)
    annot.change(on_input, [state, annot], [state, annot, *box_outputs, *views], trigger_mode="always_last",
                 **light, **raw)  # fmt: skip
    c.task.change(on_task, [c.task], [c.task_md, c.text], **light)
    run_inputs = [state, annot, c.task, c.text, c.max_new, c.beams]
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
    c.show.change(view_option("show"), [state, c.show], [state, c.result_image], **light)
    c.grid.change(view_option("grid"), [state, c.grid], [state, c.result_image], **light)
    teach_outputs = [state, c.teach_md, c.teach_tokens, c.teach_bins]
    c.teach_picker.input(on_teach, [state, c.teach_picker], teach_outputs, **light)


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
    **kwargs: Any,
) -> gr.Blocks:
    """Build the page and serve it (blocks until the server stops unless ``prevent_thread_lock``)."""
    demo = build_app(engine, settings=settings)
    options = launch_options() | kwargs
    demo.launch(server_name=host, server_port=port, share=share, footer_links=["api", "gradio", "settings"], **options)
    return demo
