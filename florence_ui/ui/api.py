"""Documented API endpoints for ``gradio_client``: every action of the page, with plain inputs.

The page's own events take the image annotator's value and redraw a dozen
components, which is awkward from a script, so each action also gets an
API-only endpoint (``gr.on(triggers=[])``) on hidden components with plain
parameters: an image file, a task, text, boxes as a JSON list of
``[x1, y1, x2, y2]`` pixels. They share the caller's ``gr.State`` like the
page does, so a client can ``/run_task`` and then ``/review_update`` what that
run found. Bad input raises ``gr.Error`` with the same message the page shows,
which ``gradio_client`` re-raises.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from florence_ui.core.images import ImageLoadError, open_image
from florence_ui.core.review import ACCEPTED, STATUSES
from florence_ui.core.tasks import CAPTION_TASK, DEFAULT_TASK, TASKS, get_task
from florence_ui.errors import WorkspaceError
from florence_ui.model.engine import InputError
from florence_ui.render.annotate import render_result, save_png, upscale_factor
from florence_ui.render.teaching import bin_rows, token_kind, token_spans
from florence_ui.ui import workspace_view as wsv
from florence_ui.ui.controller import Controller
from florence_ui.ui.session import UISession
from florence_ui.ui.views import explanation_for


def parse_boxes(boxes: Any) -> list[list[float]]:
    """Boxes as a JSON string or list → ``[[x1, y1, x2, y2], ...]`` (one flat box is accepted too)."""
    if boxes is None or boxes == "":
        return []
    if isinstance(boxes, str):
        try:
            boxes = json.loads(boxes)
        except json.JSONDecodeError as exc:
            raise InputError(f"boxes must be a JSON list of [x1, y1, x2, y2] lists ({exc.msg}).") from exc
    if isinstance(boxes, dict):
        boxes = boxes.get("boxes", [])
    if not isinstance(boxes, list):
        raise InputError("boxes must be a JSON list of [x1, y1, x2, y2] lists.")
    if len(boxes) == 4 and all(isinstance(v, int | float) for v in boxes):
        boxes = [boxes]
    out = []
    for i, box in enumerate(boxes):
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise InputError(f"Box {i + 1} must be 4 numbers [x1, y1, x2, y2], got {box!r}.")
        try:
            out.append([float(v) for v in box])
        except (TypeError, ValueError) as exc:
            raise InputError(f"Box {i + 1} must be 4 numbers [x1, y1, x2, y2], got {box!r}.") from exc
    return out


def review_json(session: UISession) -> dict[str, Any]:
    """The caller's review as JSON: counts and one entry per item."""
    review = session.review
    items = []
    for item in review.items:
        entry: dict[str, Any] = {"id": item.id, "status": str(item.status), "task": item.task, "run": item.run,
                                 "label": item.label, "score": item.score}  # fmt: skip
        if item.region is not None:
            entry["box"] = [round(v, 2) for v in item.region.xyxy]
            entry["kind"] = item.region.kind
            if item.region.box_index is not None:
                entry["box_number"] = item.region.box_index  # the prompt box (1-based) this region answers
        else:
            entry["kind"] = "image_text"
        items.append(entry)
    return {"image_size": [review.width, review.height], "counts": review.counts(), "items": items}


def _open_workspace(session: UISession) -> Any:
    """The caller's open workspace (``/workspace_open``), or None: the API then acts on the session's review."""
    state = session.workspace
    return wsv.require(state) if state is not None and state.name else None


def workspace_review_json(ws: Any, state: wsv.WorkspaceState) -> dict[str, Any]:
    """The stored review of the caller's current workspace image (the same after a restart)."""
    if state.image_id is None:
        return {"workspace": ws.name, "image": None, "counts": {s: 0 for s in STATUSES}, "items": []}
    info = ws.image(state.image_id)
    items = []
    for r in ws.regions(state.image_id):
        entry: dict[str, Any] = {"id": r.id, "status": r.status.value, "task": r.source_task, "label": r.label,
                                 "score": r.score, "box": [round(v, 2) for v in r.xyxy], "version": r.version,
                                 "hand_drawn": r.hand_drawn, "run": r.run_id}  # fmt: skip
        if r.box_index is not None:
            entry["box_number"] = r.box_index
        items.append(entry)
    return {"workspace": ws.name, "image": {"id": info.id, "name": info.name, "identity": info.identity,
                                            "status": str(info.status)},
            "image_size": [info.width, info.height], "counts": info.counts, "items": items}  # fmt: skip


def _error(exc: Exception) -> gr.Error:
    return gr.Error(str(exc), title="Florence-2 UI")


def register_api(controller: Controller, state: gr.State) -> None:
    """Add the API-only endpoints to the Blocks being built (call inside ``with gr.Blocks()``).

    The engine is read from the controller at each call (``controller.engine``): the page's model picker swaps it.
    """

    def _load(session: UISession, image_path: str | None) -> None:
        if not image_path:
            raise InputError("No image: pass an image file (gradio_client.handle_file(path_or_url)).")
        image = open_image(image_path)
        session.set_image(image, name=str(image_path).replace("\\", "/").rsplit("/", 1)[-1], file=image_path)
        session.image_path, session.image_turns = None, 0

    def run_task(session, image, task, text, boxes, max_new_tokens, num_beams, tile=False, refine=False):
        """Run one Florence-2 task. image: file; task: token like "<OD>" or a name; text: for text tasks;
        boxes: JSON list of [x1, y1, x2, y2] pixels for region tasks; tile: the dense-scene mode (tiles + the
        whole image, merged) for the tasks that tile; refine: SAM masks for every box (a server started with
        --sam). Returns the annotated PNG and the result JSON. The result is also added (pending) to this
        client's review."""
        try:
            ws = _open_workspace(session)
            _load(session, image)
            spec = get_task(task or "")
            parsed = parse_boxes(boxes)
            session.boxes = parsed
            settings = controller.settings_for(max_new_tokens, num_beams)
            result = controller.run(session, spec.token, text, settings, boxes=parsed, tile=bool(tile),
                                    refine=bool(refine))  # fmt: skip
            stored = None
            if ws is not None:  # the answer goes to the open workspace too: reviewable there, after a restart
                data = session.image_data
                image_id = ws.add_image(data if data is not None else image, name=session.image_name)
                stored = ws.add_result(image_id, result, settings=settings)
                wsv.go_to(session.workspace, image_id)
        except (InputError, ImageLoadError, ValueError, WorkspaceError) as exc:
            raise _error(exc) from exc
        out = result.to_dict()
        out["render_scale"] = upscale_factor(session.image.size)
        out["review_ids"] = (
            stored if stored is not None else [i.id for i in session.review.items if i.run == session.review.runs]
        )
        return session, save_png(render_result(session.image, result), out_image.GRADIO_CACHE), out

    def caption_and_ground(session, image, caption_task):
        """Caption the image, then ground every phrase of the caption (the one-click cascade)."""
        try:
            _load(session, image)
            caption, grounding = controller.caption_then_ground(session, caption_task or CAPTION_TASK.token)
        except (InputError, ImageLoadError, ValueError) as exc:
            raise _error(exc) from exc
        out = {"caption": caption.text, "caption_result": caption.to_dict(), "grounding": grounding.to_dict()}
        return session, save_png(render_result(session.image, grounding), out_image.GRADIO_CACHE), out

    def review(session):
        """This client's review: every region and text from every task run on its current image (with a
        workspace open: the stored review of its current image)."""
        try:
            ws = _open_workspace(session)
        except WorkspaceError as exc:
            raise _error(exc) from exc
        return workspace_review_json(ws, session.workspace) if ws is not None else review_json(session)

    def workspace_open(session, name):
        """Open (or create) workspace `name` for this client; /run_task, /review, /review_update and
        /review_relabel then act on it. Returns its summary: images, counts by status, label set."""
        try:
            if session.workspace is None:
                session.workspace = wsv.WorkspaceState()
            ws = wsv.open_workspace(session.workspace, str(name or ""))
        except WorkspaceError as exc:
            raise _error(exc) from exc
        return session, wsv.summary(ws)

    def review_update(session, ids, status):
        """Set the status (pending / accepted / rejected) of review items, by id (JSON list or "1,2,3")."""
        try:
            if isinstance(ids, str):
                ids = json.loads(ids) if ids.strip().startswith("[") else [v for v in ids.split(",") if v.strip()]
            ids = [int(v) for v in (ids if isinstance(ids, list) else [ids])]
            if (status or "").strip().lower() not in STATUSES:
                raise InputError(f"status must be one of {', '.join(STATUSES)}.")
            ws = _open_workspace(session)
            if ws is not None:
                ws.set_status(ids, status.strip().lower())
                return session, workspace_review_json(ws, session.workspace)
            session.review.set_status(ids, status.strip().lower())
        except (KeyError, InputError, ValueError, TypeError, WorkspaceError) as exc:
            raise _error(exc) from exc
        return session, review_json(session)

    def review_relabel(session, item_id, label):
        """Change the label of a region (or the text of a caption) under review."""
        try:
            ws = _open_workspace(session)
            if ws is not None:
                ws.relabel(int(item_id), label)
                return session, workspace_review_json(ws, session.workspace)
            session.review.relabel(int(item_id), label)
        except (KeyError, ValueError, TypeError, WorkspaceError) as exc:
            raise _error(exc) from exc
        return session, review_json(session)

    def review_accept_above(session, threshold, include_unscored):
        """Accept every pending item whose confidence is at least threshold."""
        try:
            controller.accept_above(session, float(threshold), bool(include_unscored))
        except (InputError, ValueError, TypeError) as exc:
            raise _error(exc) from exc
        return session, review_json(session)

    def teaching(session, run):
        """The teaching view of a run (1-based; 0 = latest): prompts, token counts, raw text, bins → pixels, and
        the model's tokens ({piece, probability, text, id, row, step, kind}) with, per token, `attention`: a
        side×side grid of the decoder's cross-attention over the image patches (mean over layers and heads,
        summing to 1), `alternatives` (top-k at that step), `input_tokens` and the grid side."""
        if not session.results:
            raise _error(InputError("No run yet: call /run_task first."))
        try:
            n = int(run or 0) or len(session.results)
        except (TypeError, ValueError) as exc:
            raise _error(InputError("run must be a whole number (1-based; 0 = latest).")) from exc
        if not 1 <= n <= len(session.results):
            raise _error(InputError(f"run must be between 1 and {len(session.results)} (0 = latest)."))
        result = session.results[n - 1]
        explained: dict[str, Any]
        try:
            ex = explanation_for(controller, session, result)
        except InputError as exc:  # a parsed (not generated) run has no tokens: say so, keep the rest
            explained = {"tokens": [], "attention": [], "alternatives": [], "explain_note": str(exc)}
        else:
            tokens = ex.token_dicts()
            for entry in tokens:
                entry["kind"] = token_kind(entry["piece"]) or "word"
            explained = {
                "tokens": tokens,
                "attention": ex.attention_lists(),
                "attention_grid": [ex.grid_side, ex.grid_side],
                "attention_averaged": ex.averaged,
                "image_share": [round(float(v), 6) for v in ex.image_share],
                "pooled_share": [round(float(v), 6) for v in ex.pooled_share],
                "alternatives": ex.alternative_dicts(),
                "input_tokens": ex.input_tokens,
                "model_input_size": list(ex.eye.size),
                "explain_notes": ex.notes,
            }
        return {
            "run": n,
            "task": result.task,
            "prompts": result.prompts,
            "model_prompts": result.model_prompts,
            "prompt_tokens": result.prompt_tokens,
            "num_image_tokens": controller.engine.num_image_tokens,
            "generated_tokens": result.generated_tokens,
            "raw": result.raw,
            "spans": [[piece, kind] for piece, kind in token_spans(result.raw)],  # the decoded text, highlighted
            "bins": [
                dict(zip(["region", "label", "token", "axis", "bin", "formula", "pixel"], r, strict=True))
                for r in bin_rows(result)
            ],  # fmt: skip
            "truncated": result.truncated,
            **explained,
        }

    def tasks():
        """The task catalogue: token, name, input kind, output kind, explanation."""
        return [{"token": t.token, "name": t.name, "input": t.input.value, "output": t.output.value,
                 "explanation": t.explanation, "text_hint": t.text_hint} for t in TASKS]  # fmt: skip

    with gr.Column(visible=False, elem_id="api-components"):
        # a plain file, not gr.Image: gradio's image preprocessing fails on a bad upload with a bare "Error",
        # whereas images.open_image explains every bad file (and applies EXIF orientation)
        image = gr.File(type="filepath", label="image")
        task = gr.Textbox(value=DEFAULT_TASK.token, label="task")
        text = gr.Textbox(value="", label="text")
        boxes = gr.JSON(value=[], label="boxes")
        max_new = gr.Number(value=controller.settings.max_new_tokens, label="max_new_tokens", precision=0)
        beams = gr.Number(value=controller.settings.num_beams, label="num_beams", precision=0)
        tile = gr.Checkbox(value=False, label="tile")
        refine = gr.Checkbox(value=False, label="refine")
        caption_task = gr.Textbox(value=CAPTION_TASK.token, label="caption_task")
        ids = gr.JSON(value=[], label="ids")
        status = gr.Textbox(value=ACCEPTED.value, label="status")
        item_id = gr.Number(value=1, label="item_id", precision=0)
        label = gr.Textbox(value="", label="label")
        threshold = gr.Number(value=0.5, label="threshold")
        unscored = gr.Checkbox(value=False, label="include_unscored")
        run = gr.Number(value=0, label="run", precision=0)
        ws_name = gr.Textbox(value="", label="name")
        out_image = gr.Image(type="pil", format="png", label="annotated image")
        out_json = gr.JSON(label="results")

    common = {"triggers": [], "concurrency_limit": 4}
    model = {"triggers": [], "concurrency_id": "model", "concurrency_limit": 1}
    gr.on(fn=run_task, inputs=[state, image, task, text, boxes, max_new, beams, tile, refine],
          outputs=[state, out_image, out_json],
          api_name="run_task", **model)  # fmt: skip
    gr.on(fn=caption_and_ground, inputs=[state, image, caption_task], outputs=[state, out_image, out_json],
          api_name="caption_and_ground", **model)  # fmt: skip
    gr.on(fn=review, inputs=[state], outputs=[out_json], api_name="review", **common)
    gr.on(fn=workspace_open, inputs=[state, ws_name], outputs=[state, out_json], api_name="workspace_open", **common)
    gr.on(fn=review_update, inputs=[state, ids, status], outputs=[state, out_json], api_name="review_update", **common)
    gr.on(fn=review_relabel, inputs=[state, item_id, label], outputs=[state, out_json], api_name="review_relabel",
          **common)  # fmt: skip
    gr.on(fn=review_accept_above, inputs=[state, threshold, unscored], outputs=[state, out_json],
          api_name="review_accept_above", **common)  # fmt: skip
    # the model explains the run (one teacher-forced pass, cached): the model's queue slot
    gr.on(fn=teaching, inputs=[state, run], outputs=[out_json], api_name="teaching", **model)
    gr.on(fn=tasks, inputs=[], outputs=[out_json], api_name="tasks", **common)
