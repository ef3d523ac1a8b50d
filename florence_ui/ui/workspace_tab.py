"""The Workspace tab: a whole dataset's review, stored on disk, with a box editor, a queue and shortcuts.

Layout (side by side from ~1000 px, stacked on a phone): the box editor (move, resize, delete and draw boxes,
labels from the label set) and the review cards of the current image; the queue with its filters and progress
below; then the model, the label set, adding images and the dataset export. Every action goes to the
workspace file at once (:mod:`florence_ui.ui.workspace_view` holds the logic); the page only redraws.

The cards and the queue are ``gr.HTML`` blocks whose script sends ``trigger('click', {act: ...})`` for a
button, a card, a label picked, a click on the image or a keyboard shortcut: one server handler,
:func:`florence_ui.ui.workspace_view.act`, does them all.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator

from florence_ui.core import limits
from florence_ui.core.tasks import DEFAULT_TASK, NAME_REGION_TASK, TASKS, InputKind, get_task
from florence_ui.errors import ConflictError, FlorenceUIError, InputError, WorkspaceError
from florence_ui.export.datasets import export_coco, export_labelstudio_json, export_yolo, zip_dir
from florence_ui.ui import workspace_view as view
from florence_ui.ui.notify import warn
from florence_ui.ui.session import UISession
from florence_ui.workspace import workspace_names

#: the BrowserState's key: the last workspace this browser opened (a name, nothing secret: a fixed key and
#: secret so that it survives a server restart, which a random one would not)
BROWSER_KEY = "florence-ui-workspace"
EXPECTED = (FlorenceUIError, ValueError, KeyError, OSError)
#: the tasks the workspace runs on a whole image (region tasks need boxes: “Name it” covers them)
RUN_TASKS = [(f"{t.name}", t.token) for t in TASKS if t.input != InputKind.BOXES]
NAME_TASK = NAME_REGION_TASK.token

CSS = """
#ws-cards .ws-cards { display: flex; flex-direction: column; gap: .4rem; max-height: 560px; overflow-y: auto; }
.ws-card { border: 1px solid var(--border-color-primary); border-left: 6px solid #f59e0b; border-radius: 6px;
           padding: .35rem .5rem; cursor: pointer; background: var(--background-fill-primary); }
.ws-card.ws-accepted { border-left-color: #22c55e; } .ws-card.ws-rejected { border-left-color: #ef4444; opacity: .7; }
.ws-card.ws-selected { outline: 3px solid var(--color-accent); }
.ws-card-meta { font-size: .8em; opacity: .8; }
.ws-card-actions { display: flex; flex-wrap: wrap; gap: .3rem; margin-top: .25rem; }
.ws-card-actions button, .ws-card-actions select { padding: .15rem .45rem; border-radius: 4px;
    border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); min-height: 32px; }
.ws-badge { font-size: .75em; padding: 0 .35rem; border-radius: 8px; color: #fff; background: #f59e0b; }
.ws-badge.ws-accepted, .ws-badge.ws-reviewed { background: #16a34a; } .ws-badge.ws-rejected { background: #dc2626; }
.ws-badge.ws-new { background: #64748b; }
.ws-unmatched { color: #dc2626; font-weight: bold; }
#ws-queue .ws-queue { display: flex; flex-wrap: wrap; gap: .4rem; }
.ws-thumb { display: flex; flex-direction: column; align-items: center; width: 104px; padding: .2rem;
            border: 2px solid transparent; border-radius: 6px; background: var(--background-fill-secondary); }
.ws-thumb.ws-current { border-color: var(--color-accent); }
.ws-thumb img, .ws-missing { width: 96px; height: 72px; object-fit: cover; }
.ws-thumb-name { font-size: .7em; max-width: 96px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ws-queue-more { font-size: .8em; opacity: .8; }
#ws-shortcuts { font-size: .85em; }
"""

#: the cards' script: card buttons and label pickers, clicks on the image, and the keyboard shortcuts
CARDS_JS = """
const send = (data) => { window.__wsInFlight = (window.__wsInFlight || 0) + 1; trigger('click', data); };
element.addEventListener('click', (e) => {
  const el = e.target.closest('[data-act]');
  if (!el || el.tagName === 'SELECT') return;
  send({act: el.dataset.act, region: el.dataset.region, version: el.dataset.version});
});
element.addEventListener('change', (e) => {
  const el = e.target.closest('select[data-act]');
  if (el) send({act: 'relabel', region: el.dataset.region, version: el.dataset.version, label: el.value});
});
watch('value', () => { window.__wsInFlight = 0; });
if (!window.__wsKeys) {
  window.__wsKeys = true;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) return;
    if (!document.querySelector('#ws-editor')?.offsetParent) return;  // the Workspace tab is not on screen
    const k = e.key.toLowerCase();
    let act = null;
    if ((e.ctrlKey || e.metaKey) && k === 'z') act = e.shiftKey ? 'redo' : 'undo';
    else if ((e.ctrlKey || e.metaKey) && k === 'y') act = 'redo';
    else if (e.ctrlKey || e.metaKey || e.altKey) return;
    else if (k === 'a') act = e.shiftKey ? 'accept_all' : 'accept';
    else if (k === 'x') act = 'reject';
    else if (k === 'j') act = 'select_next';
    else if (k === 'k') act = 'select_prev';
    else if (k === 'n') act = 'next';
    else if (k === 'p') act = 'prev';
    else if (k === 'u') act = 'undo';
    if (!act) return;
    e.preventDefault();
    window.__wsSend(act);
  });
  window.addEventListener('beforeunload', (e) => {
    if ((window.__wsInFlight || 0) > 0 || window.__wsDirty) { e.preventDefault(); e.returnValue = ''; }
  });
  // a click on the image selects the region under it (at the fitted view; Space re-fits a zoomed image)
  document.addEventListener('pointerup', (e) => {
    const canvas = e.target.closest && e.target.closest('#ws-editor canvas');
    const cards = document.querySelector('#ws-cards .ws-cards');
    if (!canvas || !cards || e.button !== 0) return;
    const w = +cards.dataset.width, h = +cards.dataset.height, r = canvas.getBoundingClientRect();
    if (!w || !h) return;
    const s = Math.min(r.width / w, r.height / h), ox = (r.width - w * s) / 2, oy = (r.height - h * s) / 2;
    window.__wsSend('pick', {x: (e.clientX - r.left - ox) / s, y: (e.clientY - r.top - oy) / s});
  }, true);
}
window.__wsSend = (act, extra) => send(Object.assign({act: act}, extra || {}));
"""

QUEUE_JS = """
element.addEventListener('click', (e) => {
  const el = e.target.closest('[data-act="open"]');
  if (el) trigger('click', {act: 'open', image: el.dataset.image});
});
"""

#: a label-set text area with edits not saved yet makes leaving the page ask first
DIRTY_JS = "(v) => { window.__wsDirty = true; return v; }"


def _message(exc: BaseException) -> str:
    return warn(exc, EXPECTED, kept="Nothing saved was lost", duration=8 if isinstance(exc, ConflictError) else 6)


def _ws_state(session: UISession) -> view.WorkspaceState:
    if session.workspace is None:
        session.workspace = view.WorkspaceState()
    return session.workspace


def label_set_text(ws: Any) -> str:
    return "\n".join(c.name + (": " + ", ".join(c.synonyms) if c.synonyms else "") for c in ws.label_set())


def parse_label_set(text: str) -> list[tuple[str, list[str]]]:
    """``car: automobile, vehicle`` per line (or commas on one line without colons) → (name, synonyms)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) == 1 and ":" not in lines[0] and "," in lines[0]:
        lines = [part.strip() for part in lines[0].split(",") if part.strip()]
    out: list[tuple[str, list[str]]] = []
    for line in lines:
        name, _, synonyms = line.partition(":")
        if name.strip():
            out.append((" ".join(name.split()), [s.strip() for s in synonyms.split(",") if s.strip()]))
    return out


def build(state: gr.State, engine: Any, settings: Any, modes: gr.Tabs | None = None) -> SimpleNamespace:
    """Lay the tab out (inside the caller's ``gr.Tab``) and wire it; returns its components.

    ``engine``: the engine, or a function returning the current one (the page's model picker swaps it).
    """
    browser = gr.BrowserState(None, storage_key=BROWSER_KEY, secret=BROWSER_KEY)
    with gr.Row(equal_height=False):
        name = gr.Dropdown(workspace_names(), value=None, allow_custom_value=True, label="Workspace",
                           info="Pick one or type a new name (letters, digits, - and _)", elem_id="ws-name", scale=3, min_width=200)  # fmt: skip
        open_btn = gr.Button("Open", variant="primary", elem_id="ws-open", scale=0, min_width=90)
    progress_md = gr.Markdown(elem_id="ws-progress")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=320):
            editor = image_annotator(
                label="Drag a box to move it, its corners to resize; Create box (C) to add one, Delete removes it",
                image_type="filepath", sources=None, disable_edit_boxes=False, use_default_label=False,
                show_clear_button=False, show_remove_button=False, boxes_alpha=0.12, box_min_size=4, height=520,
                elem_id="ws-editor",
            )  # fmt: skip
            with gr.Row():
                prev_btn = gr.Button("◀ Previous (P)", size="sm", elem_id="ws-prev")
                next_btn = gr.Button("Next (N) ▶", size="sm", elem_id="ws-next")
                undo_btn = gr.Button("↶ Undo (U)", size="sm", elem_id="ws-undo")
                redo_btn = gr.Button("↷ Redo", size="sm", elem_id="ws-redo")
            gr.Markdown("**Keys** — " + " · ".join(f"**{k}** {what}" for k, what in view.SHORTCUTS),
                        elem_id="ws-shortcuts")  # fmt: skip
        with gr.Column(scale=2, min_width=300):
            status_md = gr.Markdown(elem_id="ws-status")
            cards = gr.HTML("", js_on_load=CARDS_JS, elem_id="ws-cards", padding=False)
            with gr.Row():
                accept_all = gr.Button("✓ Accept all pending (Shift+A)", size="sm", elem_id="ws-accept-all")
                show_rejected = gr.Checkbox(False, label="Show rejected boxes", elem_id="ws-show-rejected")
            with gr.Row():
                threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="Confidence ≥", elem_id="ws-threshold")
                above_btn = gr.Button("Accept pending above", size="sm", elem_id="ws-accept-above")
            merge_btn = gr.Button("Merge duplicate boxes across runs", size="sm", elem_id="ws-merge")
    with gr.Accordion("Queue", open=True, elem_id="ws-queue-box"):
        with gr.Row():
            queue_filter = gr.Dropdown([(v, k) for k, v in view.QUEUE_FILTERS.items()], value="all", label="Show",
                                       elem_id="ws-filter")  # fmt: skip
            class_filter = gr.Dropdown([], value=None, label="With class", allow_custom_value=False,
                                       elem_id="ws-class-filter")  # fmt: skip
            low_first = gr.Checkbox(False, label="Low confidence first", elem_id="ws-low-first")
        queue_html = gr.HTML("", js_on_load=QUEUE_JS, elem_id="ws-queue", padding=False)
    with gr.Accordion("Run Florence-2 on this image", open=False, elem_id="ws-run-box"):
        with gr.Row():
            task = gr.Dropdown(RUN_TASKS, value=DEFAULT_TASK.token, label="Task", elem_id="ws-task", scale=2)
            text = gr.Textbox(label="Text prompt (text tasks)", elem_id="ws-text", scale=2)
            run_btn = gr.Button("Run", variant="primary", elem_id="ws-run", scale=0, min_width=90)
        with gr.Row():
            detect_one = gr.Button("Detect the label set on this image", size="sm", elem_id="ws-detect")
            detect_all = gr.Button("… on every image of the queue", size="sm", elem_id="ws-detect-all")
            name_btn = gr.Button("Name the selected region (region → category)", size="sm", elem_id="ws-name-it")
    with gr.Accordion("Label set", open=False, elem_id="ws-labels-box"):
        label_text = gr.Textbox(lines=5, label="Classes in class-id order, one per line: name: synonym, synonym",
                                placeholder="car: automobile, vehicle\nperson: man, woman", elem_id="ws-label-set")  # fmt: skip
        save_labels = gr.Button("Save the label set", size="sm", elem_id="ws-save-labels")
        with gr.Row():
            unmatched = gr.Dropdown([], label="Unmatched phrase", elem_id="ws-unmatched")
            map_to = gr.Dropdown([], label="→ class", elem_id="ws-map-to")
            map_btn = gr.Button("Relabel all (and keep as synonym)", size="sm", elem_id="ws-map")
    with gr.Accordion("Add images", open=False, elem_id="ws-add-box"):
        with gr.Row():
            uploads = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Photos",
                              elem_id="ws-upload")  # fmt: skip
            results = gr.File(file_count="single", file_types=[".jsonl"], type="filepath",
                              label="results.jsonl from florence-ui predict", elem_id="ws-results")  # fmt: skip
        with gr.Row():
            folder = gr.Textbox(label="Folder on this server", elem_id="ws-folder", scale=3,
                                placeholder=f"a folder under {view.FOLDER_ROOT_ENV} (default: your home folder)")  # fmt: skip
            folder_btn = gr.Button("Add the folder", size="sm", elem_id="ws-folder-add", scale=0, min_width=120)
    with gr.Accordion("Export the dataset", open=False, elem_id="ws-export-box"):
        gr.Markdown("Every reviewed image with its accepted and edited regions; class ids follow the label set. "
                    "To push the workspace to Label Studio, choose *the open workspace* in the Label Studio tab.")  # fmt: skip
        with gr.Row():
            export_btns = {fmt: gr.Button(label, size="sm", elem_id=f"ws-export-{fmt}") for fmt, label in
                           (("coco", "COCO (zip)"), ("yolo", "YOLO (zip)"), ("labelstudio", "Label Studio JSON"))}  # fmt: skip
        export_files = gr.File(label="Files", file_count="multiple", interactive=False, elem_id="ws-files")

    page = SimpleNamespace(**{k: v for k, v in locals().items() if isinstance(v, gr.components.Component | gr.Blocks)})
    page.export_btns = export_btns
    page.modes = modes
    _wire(page, state, browser, engine, settings)
    return page


def _redraw(session: UISession, *, editor: bool = True, message: str | None = None) -> tuple:
    """(session, editor, cards, queue, progress, status, class filter, map-to, unmatched) for ``session``."""
    st = _ws_state(session)
    if not st.name:
        return (session, gr.skip(), "", "", "Open or create a workspace to start.", message or "",
                gr.skip(), gr.skip(), gr.skip())  # fmt: skip
    parts = view.render(view.require(st), st, editor=editor)
    # label_list is given as names: gradio runs an update through the component's constructor
    editor_out = gr.update(value=parts.editor, label_list=parts.classes) if editor else gr.skip()
    unmatched = parts.unmatched
    return (session, editor_out, parts.cards, parts.queue, parts.progress, message or "",
            gr.update(choices=[("any class", "")] + [(c, c) for c in parts.classes]),
            gr.update(choices=parts.classes), gr.update(choices=unmatched, value=unmatched[0] if unmatched else None))  # fmt: skip


def _wire(p: SimpleNamespace, state: gr.State, browser: gr.BrowserState, engine: Any, settings: Any) -> None:
    def current_engine() -> Any:
        """The engine now: read at each call, so a model switched on the page is the one used (and held)."""
        return engine() if callable(engine) and not hasattr(engine, "run") else engine

    root_block = gr.context.get_blocks_context().root_block  # gradio records the launch host on it
    outputs = [state, p.editor, p.cards, p.queue_html, p.progress_md, p.status_md, p.class_filter, p.map_to,
               p.unmatched]  # fmt: skip
    skip_all = tuple(gr.skip() for _ in outputs[1:])

    def guarded(fn: Callable[..., tuple[str, bool] | None]) -> Callable[..., tuple]:
        """Run an action; a refusal (conflict, bad input) becomes a warning and the page is redrawn from disk."""

        @functools.wraps(fn)  # gradio reads the signature: EventData and gr.Progress parameters get injected
        def handler(session: UISession, *args: Any) -> tuple:
            try:
                done = fn(session, *args)
                if done is None:  # nothing happened (an editor event echoing what the page drew): leave it be
                    return (session, *skip_all)
                message, redraw_editor = done
            except Exception as exc:  # noqa: BLE001 - every failure is a message; the session goes on
                message = _message(exc)
                try:
                    return _redraw(session, editor=True, message=message)
                except Exception:  # noqa: BLE001 - the workspace itself cannot be read
                    return (session, *skip_all[:4], message, *skip_all[5:])
            return _redraw(session, editor=redraw_editor, message=message)

        return handler

    def do_open(session: UISession, name: str | None) -> tuple[str, bool]:
        st = _ws_state(session)
        ws = view.open_workspace(st, name or "")
        return f"Opened workspace **{ws.name}** ({ws.path}).", True

    def on_open(session: UISession, name: str | None):
        out = guarded(do_open)(session, name)
        st = _ws_state(session)
        remembered = st.name if st.name else gr.skip()
        names = gr.update(choices=workspace_names(), value=st.name) if st.name else gr.skip()
        return (*out, remembered, names)

    def on_load(session: UISession, remembered: str | None, request: gr.Request):
        """A link's ``?workspace=NAME`` opens that one (on the Workspace tab); else the one this browser had open."""
        linked = request.query_params.get("workspace") if request is not None else None
        wanted = linked or remembered
        if not wanted:
            return (session, *skip_all, gr.skip(), gr.skip(), gr.skip())
        tab = gr.update(selected="workspace") if linked else gr.skip()
        return (*on_open(session, wanted), tab)

    def do_act(session: UISession, evt: gr.EventData) -> tuple[str, bool]:
        st = _ws_state(session)
        data = {k: getattr(evt, k, None) for k in ("act", "region", "version", "label", "image", "x", "y")}
        return view.act(view.require(st), st, data)

    def do_button(action: str) -> Callable[[UISession], tuple[str, bool]]:
        def fn(session: UISession) -> tuple[str, bool]:
            st = _ws_state(session)
            return view.act(view.require(st), st, {"act": action})

        fn.__name__ = f"ws_{action}"
        return fn

    def do_edit(session: UISession, value: dict | None) -> tuple[str, bool] | None:
        """The editor's change event: also fired when the page redraws the editor, which then changes nothing."""
        st = _ws_state(session)
        if value is None or st.image_id is None or not st.name:
            return None
        ws = view.require(st)
        if int(value.get("orientation") or 0) % 4:
            raise InputError("Rotating is not available in the workspace (the boxes are stored in the image's "
                             "own frame); rotate the photo itself and add it again.")  # fmt: skip
        changes = view.diff_boxes(st.layout, view.editor_boxes_of(value))
        if changes.empty:
            return None
        done = view.apply_changes(ws, st, changes)
        # the editor already shows these edits: keep its view, just learn the new versions
        regions = view.live_regions(ws, st)
        view.editor_value(ws, st, regions)
        return "Saved: " + "; ".join(done) + ".", False

    def on_edit(session: UISession, value: dict | None):
        out = list(guarded(do_edit)(session, value))
        return tuple(out)

    def do_filters(session: UISession, kind: str, label: str | None, low: bool) -> tuple[str, bool]:
        st = _ws_state(session)
        st.queue_filter, st.label_filter, st.low_first = kind or "all", label or None, bool(low)
        return "", False

    def do_show_rejected(session: UISession, show: bool) -> tuple[str, bool]:
        _ws_state(session).show_rejected = bool(show)
        return "", True

    def do_above(session: UISession, value: float) -> tuple[str, bool]:
        st = _ws_state(session)
        ws = view.require(st)
        if st.image_id is None:
            raise WorkspaceError("No image is open.")
        rows = ws.accept_above(st.image_id, float(value))
        return f"Accepted {len(rows)} pending region(s) with confidence ≥ {float(value):.2f}.", True

    def do_merge(session: UISession) -> tuple[str, bool]:
        st = _ws_state(session)
        ws = view.require(st)
        if st.image_id is None:
            raise WorkspaceError("No image is open.")
        n = sum(len(group.duplicates) for group in ws.merge_duplicates(st.image_id))
        return (f"Merged duplicates: {n} box(es) folded into the ones kept (Undo brings them back)." if n
                else "No duplicates on this image (same label and IoU ≥ 0.7 across runs)."), True  # fmt: skip

    def do_run(session: UISession, token: str, prompt: str | None, progress=gr.Progress()) -> tuple[str, bool]:  # noqa: B008
        st = _ws_state(session)
        ws = view.require(st)
        if st.image_id is None:
            raise WorkspaceError("No image is open: add images first.")
        spec = get_task(token)
        if spec.needs_text and not (prompt or "").strip():
            raise InputError(f"{spec.name} needs a text prompt, e.g. “{spec.text_hint}”.")
        progress(0.2, desc=f"Florence-2: {spec.name}…")
        result = current_engine().run(ws.image_pil(st.image_id), spec.token, prompt if spec.needs_text else None,
                            settings=settings)  # fmt: skip
        ids = ws.add_result(st.image_id, result, settings=settings)
        extra = f" Answer: {result.text}" if result.text and not ids else ""
        return f"{spec.name}: {len(ids)} region(s) to review.{extra}", True

    def do_detect(every: bool) -> Callable[..., tuple[str, bool]]:
        def fn(session: UISession, progress=gr.Progress()) -> tuple[str, bool]:  # noqa: B008
            from florence_ui.workspace.detect import detect_label_set

            st = _ws_state(session)
            ws = view.require(st)
            if st.image_id is None:
                raise WorkspaceError("No image is open: add images first.")
            ids = [s.id for s in view.queue(ws, st)] if every else [st.image_id]

            def tick(done: int, total: int, what: str) -> None:
                progress(done / max(total, 1), desc=f"Detecting the label set: {done} / {total} ({what})")

            report = detect_label_set(
                ws, current_engine(), ids, settings=settings, progress=tick, cap=limits.current().max_boxes
            )
            return report.summary(), True

        fn.__name__ = "ws_detect_all" if every else "ws_detect"
        return fn

    def do_name(session: UISession, progress=gr.Progress()) -> tuple[str, bool]:  # noqa: B008
        st = _ws_state(session)
        ws = view.require(st)
        if st.selected is None:
            raise WorkspaceError("Select a region first (click its card or box, or press J).")
        region = ws.region(st.selected)
        progress(0.3, desc="Florence-2: naming the region…")
        result = current_engine().run(
            ws.image_pil(region.image_id), NAME_TASK, None, [list(region.xyxy)], settings=settings
        )
        rows = result.regions()
        answer = " ".join(str(rows[0]["label"] if rows else result.text or "").split())
        if not answer:
            raise InputError("Florence-2 gave no name for that region; type the label in its card instead.")
        row = ws.relabel(region.id, answer, expected_version=region.version)
        return f"Florence-2 named #{row.id}: {row.label}.", True

    def do_labels(session: UISession, text_value: str) -> tuple[str, bool]:
        st = _ws_state(session)
        ws = view.require(st)
        classes = parse_label_set(text_value)
        if not classes:
            raise WorkspaceError("Type at least one class, e.g. “car: automobile” on a line of its own.")
        for class_name, synonyms in classes:
            ws.add_label(class_name, synonyms)  # a class a person typed: the label set is theirs from now on
        return f"Label set saved: {', '.join(ws.class_names())}.", True

    def on_labels(session: UISession, text_value: str):
        out = guarded(do_labels)(session, text_value)
        st = _ws_state(session)
        saved = label_set_text(view.require(st)) if st.name else gr.skip()
        return (*out, saved)

    def do_map(session: UISession, phrase: str | None, to: str | None) -> tuple[str, bool]:
        st = _ws_state(session)
        ws = view.require(st)
        if not phrase or not to:
            raise WorkspaceError("Pick an unmatched phrase and the class it means.")
        n = ws.relabel_all(phrase, to)
        return f"Relabelled {n} region(s) “{phrase}” → {to}; “{phrase}” is now a synonym of {to}.", True

    def do_upload(session: UISession, files: list[str] | None, progress=gr.Progress()) -> tuple[str, bool]:  # noqa: B008
        st = _ws_state(session)
        ws = view.require(st)
        paths = [str(f) for f in files or []]
        if not paths:
            return "", False
        # stored as bytes: gradio's upload copies are temporary
        data = [Path(f).read_bytes() for f in paths]
        report = ws.add_images(data, names=[Path(f).name for f in paths],
                               progress=lambda d, t: progress(d / max(t, 1), desc=f"Adding images {d} / {t}"))  # fmt: skip
        if st.image_id is None:
            st.image_id = view.last_worked_on(ws)
        return report.summary(), True

    def do_folder(session: UISession, path: str | None, progress=gr.Progress()) -> tuple[str, bool]:  # noqa: B008
        from florence_ui.labelstudio.access import Exposure
        from florence_ui.workspace.folders import add_folder

        st = _ws_state(session)
        ws = view.require(st)
        exposure = Exposure.of(getattr(root_block, "server_name", None), bool(getattr(root_block, "share", False)))
        allowed = view.folder_root(exposure.public)
        if allowed is None:
            raise WorkspaceError(f"Opening server folders is off on a public app; the operator can allow a folder "
                                 f"with {view.FOLDER_ROOT_ENV}=/path. Upload the photos instead.")  # fmt: skip
        if not (path or "").strip():
            raise WorkspaceError(f"Type a folder under {allowed}.")
        report = add_folder(ws, Path(path.strip()).expanduser(), allowed_root=allowed,
                            progress=lambda d, t: progress(d / max(t, 1), desc=f"Adding images {d} / {t}"))  # fmt: skip
        if st.image_id is None:
            st.image_id = view.last_worked_on(ws)
        return report.summary(), True

    def do_import(session: UISession, file: str | None, progress=gr.Progress()) -> tuple[str, bool]:  # noqa: B008
        st = _ws_state(session)
        ws = view.require(st)
        if not file:
            return "", False
        progress(0.2, desc="Importing the results (re-parsing the answers, no model run)…")
        report = ws.import_results(file, parser=current_engine())
        if st.image_id is None:
            st.image_id = view.last_worked_on(ws)
        skipped = f" Skipped: {'; '.join(report.skipped[:5])}" if report.skipped else ""
        return f"Imported: {report.summary()}.{skipped}", True

    def on_export(session: UISession, fmt: str):
        try:
            st = _ws_state(session)
            ws = view.require(st)
            files = export_workspace(ws, fmt)
        except Exception as exc:  # noqa: BLE001
            return gr.skip(), _message(exc)
        return files, f"Exported workspace **{ws.name}** as {fmt}."

    def on_tick(session: UISession):
        """Another browser's edit: redraw when the workspace's change mark moved (and this page is idle)."""
        st = _ws_state(session)
        if not st.name:
            return (session, *skip_all)
        try:
            ws = view.require(st)
            if ws.change_mark() == st.mark:
                return (session, *skip_all)
            # redraw the editor only when this image's boxes changed: a redraw ends a drag in progress
            shown = [(r.id, r.version) for r in view.editor_boxes(view.live_regions(ws, st), st.show_rejected)]
            moved_here = shown != [(r, v) for r, v, _b, _l in st.layout]
            return _redraw(session, editor=moved_here, message="Updated with changes made in another browser.")
        except Exception:  # noqa: BLE001 - a tick never warns; the next action will
            return (session, *skip_all)

    ui = {"api_visibility": "undocumented"}
    light = {**ui, "concurrency_limit": 8, "show_progress": "hidden"}
    model = {**ui, "concurrency_id": "model", "concurrency_limit": 1}
    p.open_btn.click(on_open, [state, p.name], [*outputs, browser, p.name], **light)
    p.name.select(on_open, [state, p.name], [*outputs, browser, p.name], **light)
    load_outputs = [*outputs, browser, p.name, p.modes] if p.modes is not None else [*outputs, browser, p.name]

    def on_load_(session: UISession, remembered: str | None, request: gr.Request):
        out = on_load(session, remembered, request)
        return out if p.modes is not None else out[:-1]

    root_block.load(on_load_, [state, browser], load_outputs, **light)
    p.cards.click(guarded(do_act), [state], outputs, **light)
    p.queue_html.click(guarded(do_act), [state], outputs, **light)
    p.editor.change(on_edit, [state, p.editor], outputs, trigger_mode="always_last", preprocess=False, **light)
    for button, action in ((p.prev_btn, "prev"), (p.next_btn, "next"), (p.undo_btn, "undo"), (p.redo_btn, "redo"),
                           (p.accept_all, "accept_all")):  # fmt: skip
        button.click(guarded(do_button(action)), [state], outputs, **light)
    filters = [state, p.queue_filter, p.class_filter, p.low_first]
    for control in (p.queue_filter, p.class_filter, p.low_first):
        control.input(guarded(do_filters), filters, outputs, **light)
    p.show_rejected.input(guarded(do_show_rejected), [state, p.show_rejected], outputs, **light)
    p.above_btn.click(guarded(do_above), [state, p.threshold], outputs, **light)
    p.merge_btn.click(guarded(do_merge), [state], outputs, **light)
    gr.on([p.run_btn.click, p.text.submit], guarded(do_run), [state, p.task, p.text], outputs, **model)
    p.detect_one.click(guarded(do_detect(False)), [state], outputs, **model)
    p.detect_all.click(guarded(do_detect(True)), [state], outputs, **model)
    p.name_btn.click(guarded(do_name), [state], outputs, **model)
    p.label_text.input(None, [p.label_text], None, js=DIRTY_JS)
    p.save_labels.click(on_labels, [state, p.label_text], [*outputs, p.label_text], **light).then(
        None, None, None, js="() => { window.__wsDirty = false; }"
    )
    p.map_btn.click(guarded(do_map), [state, p.unmatched, p.map_to], outputs, **light)
    p.uploads.upload(guarded(do_upload), [state, p.uploads], outputs, **light)
    p.results.upload(guarded(do_import), [state, p.results], outputs, **light)
    p.folder_btn.click(guarded(do_folder), [state, p.folder], outputs, **light)
    for fmt, button in p.export_btns.items():
        button.click(lambda s, f=fmt: on_export(s, f), [state], [p.export_files, p.status_md], **light)
    gr.Timer(4.0).tick(on_tick, [state], outputs, **light)


def export_workspace(ws: Any, fmt: str) -> list[str]:
    """The whole workspace as a COCO / YOLO zip or Label Studio JSON, class ids from its label set."""
    items = ws.labeled_images()
    if not items:
        raise WorkspaceError(f"Workspace {ws.name!r} has no reviewed image yet: accept regions first.")
    out = Path(tempfile.mkdtemp(prefix=f"florence-ui-{ws.name}-{fmt}-"))
    classes = ws.export_classes()  # the label set, then accepted phrases outside it (nothing accepted is lost)
    if fmt == "coco":
        export_coco(items, out / f"{ws.name}-coco", classes=classes)
        return [str(zip_dir(out / f"{ws.name}-coco"))]
    if fmt == "yolo":
        export_yolo(items, out / f"{ws.name}-yolo", classes=classes)
        return [str(zip_dir(out / f"{ws.name}-yolo"))]
    tasks = export_labelstudio_json(items, out / "labelstudio")
    return [str(tasks), str(tasks.with_name("label_config.xml"))]


__all__ = ["build", "export_workspace", "parse_label_set"]
