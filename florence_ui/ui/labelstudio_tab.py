"""The "Label Studio & export" tab: connect, pick or create a project, push, verify, download.

``build(session_state)`` lays the tab out inside the caller's Blocks (inside a
``gr.Tab``). The handlers are module functions of plain values, so tests call
them without a browser. What they promise:

* The API key typed into the page is kept in the session (a :class:`Secret`,
  whose ``repr`` hides it), the key box is cleared once stored, and no output,
  message or log line contains it. The tab's events are kept out of Gradio's
  run history, which saves every public event's inputs (so the typed key) in
  the browser's localStorage. Left empty, the key comes from the environment
  (``LABEL_STUDIO_API_KEY``, also set by the embedded local Label Studio) and
  never reaches the page at all.
* Whose key goes where is decided by :func:`florence_ui.labelstudio.access.decide`
  (read there for the whole rule): the server's key is only sent to
  ``LABEL_STUDIO_URL`` (same scheme, host and port); another URL needs the
  visitor's own key, and a key typed for one server is kept for that server
  only (typing another URL asks for its key again). A refusal is a message
  and no request at all. When the app is reachable from other machines (a
  non-loopback host, a share link, a Space), typed URLs on loopback / private
  / link-local addresses are refused (``FLORENCE_UI_LS_ALLOW_PRIVATE=1``
  allows them); ``FLORENCE_UI_LS_LOCKED`` (on by default on a configured
  Space) pins the tab, page and API routes alike, to the configured server.
* A failing Label Studio or bad input gives a message, never a crash; the
  accepted regions stay in the review, so a second push retries them (pushes
  are idempotent: the same image updates its task).
* A new project is created once per session; later pushes go to it. A
  creation whose answer was lost (timeout, 5xx, dropped connection) is found
  again by title on the next push instead of being created twice, and a
  project deleted in Label Studio meanwhile is forgotten, so the next push
  makes a new one (an existing project that was deleted drops out of the list).
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import get_blocks_context

from florence_ui.core.labels import LabeledImage
from florence_ui.errors import LabelStudioErrorKind
from florence_ui.export.datasets import export_coco, export_labelstudio_json, export_yolo, zip_dir
from florence_ui.labelstudio.access import Exposure, StoredKey, decide_from_env, key_origin, locked
from florence_ui.labelstudio.client import (
    DEFAULT_URL,
    LabelStudioError,
    LSSettings,
    check_project,
    create_project,
    list_projects,
    project_title,
    push_images,
    whoami,
)
from florence_ui.labelstudio.convert import BOXES, POLYGONS, LabelCheck, MissingInProject, Requirements
from florence_ui.labelstudio.server import embedded_status

log = logging.getLogger(__name__)

NEW, EXISTING = "New project", "Existing project"
MISSING_CHOICES = [("Add them to the project's labeling config", "add"),
                   ("Map them onto the project's labels (table below)", "map"),
                   ("Leave those regions out", "leave_out")]  # fmt: skip
SOURCE_CHOICES = [("Upload the image to Label Studio (no shared storage needed)", "upload"),
                  ("Reference an existing URL / local-files path", "url")]  # fmt: skip
MAP_HEADERS = ["our label", "regions", "map to (a label of the project)"]


class Secret:
    """A string that never shows itself: ``str``/``repr`` print dots, :attr:`value` holds it.

    :attr:`origin` is the Label Studio origin the key was typed for: it is only ever sent there.
    """

    __slots__ = ("value", "origin")

    def __init__(self, value: str, origin: Any = None) -> None:
        self.value = value
        self.origin = origin

    def __repr__(self) -> str:
        return "Secret('••••')"

    __str__ = __repr__


# ---- handlers (plain functions: tested without a browser) ------------------------------------
def settings_of(session: Any, exposure: Exposure | None = None) -> LSSettings:
    """The session's URL and key as :func:`~florence_ui.labelstudio.access.decide` allows them (it raises when it doesn't).

    ``exposure``: where the app is reachable from (``build`` passes what gradio was launched with); None
    reads ``GRADIO_SERVER_NAME`` / ``SPACE_ID``.
    """
    ls = session.labelstudio
    key = ls.get("api_key")
    stored = StoredKey(key.value, key.origin) if isinstance(key, Secret) else None
    target = decide_from_env(ls.get("url"), None, stored, exposure=exposure)
    return LSSettings(url=target.url, api_key=target.api_key, timeout=LSSettings.from_env().timeout,
                      public_only=target.public_only)  # fmt: skip


def _fail(exc: BaseException) -> str:
    if isinstance(exc, (LabelStudioError, MissingInProject, ValueError)):
        return f"> ⚠️ {exc}"
    log.error("Unexpected error in the Label Studio tab: %s", type(exc).__name__)
    return f"> ⚠️ Something went wrong ({type(exc).__name__}). Your accepted regions are kept; try again."


def remember_connection(session: Any, url: str | None, key: str | None) -> None:
    """Keep what was typed; a typed key is bound to the URL typed with it (empty URL: LABEL_STUDIO_URL's).

    An empty key box keeps the key stored before, which :func:`settings_of` only sends to its own origin.
    """
    session.labelstudio["url"] = (url or "").strip() or None
    if key and key.strip():
        session.labelstudio["api_key"] = Secret(key.strip(), key_origin(url))


def _choices(projects: list[tuple[int, str]]) -> list[tuple[str, int]]:
    return [(f"#{pid} {title}", pid) for pid, title in projects]


def _cleared_key() -> Any:
    return gr.update(value="", placeholder="stored for this browser session (type to replace)")


def on_test(session: Any, url: str | None, key: str | None, exposure: Exposure | None = None) -> tuple:
    """Test connection → (session, message, key box update, project dropdown update)."""
    remember_connection(session, url, key)
    cleared = _cleared_key()
    try:
        settings = settings_of(session, exposure)
        me = whoami(settings)
        projects = list_projects(settings)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        note = embedded_status() if not session.labelstudio.get("url") else None
        return session, _fail(exc) + (f"\n\n{note}" if note else ""), cleared, gr.skip()
    message = f"✅ Connected as **{me}** — {len(projects)} project(s)."
    if settings.base_url == os.environ.get("LABEL_STUDIO_URL", "").rstrip("/") and embedded_status():
        message += f"\n\n{embedded_status()}"
    return session, message, cleared, gr.update(choices=_choices(projects), value=session.labelstudio.get("project"))


def on_refresh(session: Any, url: str | None, key: str | None, exposure: Exposure | None = None) -> tuple:
    """↻ → (session, message, key box update, project dropdown update)."""
    remember_connection(session, url, key)
    try:
        projects = list_projects(settings_of(session, exposure))
    except Exception as exc:  # noqa: BLE001
        return session, _fail(exc), _cleared_key(), gr.skip()
    return session, f"{len(projects)} project(s).", _cleared_key(), gr.update(choices=_choices(projects))


#: what the tab sends: the current image's review, or every reviewed image of the open workspace
SCOPE_CHOICES = [("The current image (Prompt & review)", "image"),
                 ("Every reviewed image of the open workspace", "workspace")]  # fmt: skip


def scope_workspace(session: Any) -> Any:
    """The open workspace when the tab's scope is "workspace", else None."""
    if session.labelstudio.get("scope") != "workspace":
        return None
    from florence_ui.ui.workspace_view import require

    if session.workspace is None or not session.workspace.name:
        raise ValueError("No workspace is open: open one in the Workspace tab, or send the current image instead.")
    return require(session.workspace)


def current_items(session: Any) -> list[LabeledImage]:
    """The accepted labels of the current image (or of every reviewed workspace image), or a ValueError."""
    ws = scope_workspace(session)
    if ws is not None:
        items = ws.labeled_images()
        if not items:
            raise ValueError(f"Workspace {ws.name!r} has no reviewed image yet: accept regions in the Workspace tab.")
        return items
    if session.image is None:
        raise ValueError("Load an image and run a task first.")
    item = session.labeled_image()
    if not item.regions and not item.texts:
        raise ValueError("Nothing accepted yet: accept regions or texts in the review first.")
    return [item]


def _mapping_rows(check: LabelCheck) -> list[list[Any]]:
    return [[label, n, ""] for labels in check.missing_labels.values() for label, n in labels.items()]


def on_check(session: Any, url: str | None, key: str | None, mode: str, project: Any,
             exposure: Exposure | None = None) -> tuple:  # fmt: skip
    """Check labels → (session, key box update, message, mapping table rows)."""
    remember_connection(session, url, key)
    try:
        items = current_items(session)
        if mode == NEW or project in (None, ""):
            req = Requirements.of(items)
            boxes, polys = sorted(req.labels[BOXES]), sorted(req.labels[POLYGONS])
            message = ("A new project gets a labeling config made from these labels: "
                       f"RectangleLabels {boxes or '—'}, PolygonLabels {polys or '—'}, "
                       f"{req.region_texts} region text(s), {sum(req.image_texts.values())} image text(s).")  # fmt: skip
            return session, _cleared_key(), message, []
        check = check_project(settings_of(session, exposure), int(project), items)
    except Exception as exc:  # noqa: BLE001
        return session, _cleared_key(), _fail(exc), gr.skip()
    message = ("✅ " if check.ok else "⚠️ ") + check.describe().replace("\n", "\n\n")
    return session, _cleared_key(), message, _mapping_rows(check)


def new_project(session: Any, settings: LSSettings, title: str | None, items: list[LabeledImage]) -> int | None:
    """The session's "New project": created once; returns its id when this call created or found it.

    Before creating, the ids of the projects already bearing the title are
    noted. A creation can fail on our side yet happen on the server (its answer
    lost, too slow, or a 5xx sent after the work): the next call then finds the
    project that appeared under that title and adopts it instead of creating a
    second one.
    """
    ls = session.labelstudio
    if ls.get("created_project") is not None:
        return None
    title = project_title(title)
    pending = ls.get("creating")
    titled = {pid for pid, t in list_projects(settings) if t.strip() == title}
    # only the same server and title, and only a project that appeared since our failed attempt, is adopted
    if pending and pending[:2] == (settings.base_url, title) and titled - pending[2]:
        project = max(titled - pending[2])  # the creation that seemed to fail did happen
    else:
        ls["creating"] = (settings.base_url, title, titled)
        project = create_project(settings, title, items)
    ls["created_project"] = project
    ls.pop("creating", None)
    return project


def _project_gone(session: Any, settings: LSSettings, project: Any) -> Any:
    """A project deleted in Label Studio: forget it if the session made it; the dropdown without it."""
    if session.labelstudio.get("created_project") == project:
        session.labelstudio.pop("created_project")
    if session.labelstudio.get("project") == project:
        session.labelstudio.pop("project")
    try:
        return gr.update(choices=_choices(list_projects(settings)), value=None)
    except LabelStudioError:
        return gr.skip()


def _label_map(rows: Any) -> dict[str, str]:
    if rows is None:
        return {}
    values = rows.values.tolist() if hasattr(rows, "values") else rows
    return {str(r[0]).strip(): str(r[2]).strip() for r in values if len(r) >= 3 and r[0] and str(r[2] or "").strip()}


def on_push(session: Any, url: str | None, key: str | None, mode: str, project: Any, title: str, missing: str,
            mapping: Any, source: str, image_url: str | None, progress: Any = None,
            exposure: Exposure | None = None) -> tuple:  # fmt: skip
    """Push → (session, key box update, summary markdown, project dropdown update)."""
    remember_connection(session, url, key)
    dropdown = gr.skip()
    settings = None
    try:
        items = current_items(session)
        settings = settings_of(session, exposure)
        if source == "url" and not (image_url or "").strip():
            raise ValueError("Give the image's URL or local-files path, or choose to upload the image.")
        if mode == NEW:  # once per session: a second push goes to the same project
            created = new_project(session, settings, title, items)
            project = session.labelstudio["created_project"]
            if created is not None:
                dropdown = gr.update(choices=_choices(list_projects(settings)), value=project)
        elif project in (None, ""):
            raise ValueError("Pick a project (Test connection lists them) or choose “New project”.")
        session.labelstudio["project"] = int(project)
        if source == "url" and len(items) > 1:
            raise ValueError("One image URL cannot serve a whole workspace: choose to upload the images.")

        def tick(done: int, total: int, name: str) -> None:
            if callable(progress):
                progress(done / max(total, 1), desc=f"Pushed {done} / {total} ({name})")

        report = push_images(settings, int(project), items, missing=missing or "ask", label_map=_label_map(mapping),
                             image_url=image_url.strip() if source == "url" else None, progress=tick)  # fmt: skip
    except MissingInProject as exc:
        return session, _cleared_key(), f"> ⚠️ {exc.check.describe()}".replace("\n", "\n>\n> "), dropdown
    except LabelStudioError as exc:
        if exc.kind == LabelStudioErrorKind.PROJECT_GONE and settings is not None:
            dropdown = _project_gone(session, settings, int(project))
            return session, _cleared_key(), _fail(exc) + _GONE_NEXT[mode == NEW], dropdown
        return session, _cleared_key(), _fail(exc), dropdown
    except Exception as exc:  # noqa: BLE001
        return session, _cleared_key(), _fail(exc), dropdown
    if report.error_kind == LabelStudioErrorKind.PROJECT_GONE:
        dropdown = _project_gone(session, settings, int(project))
    head = "✅ Pushed and verified" if report.ok else "⚠️ Push incomplete"
    summary = f"{head} — [project {project}]({report.project_url})\n\n{report.summary()}"
    if report.error_kind == LabelStudioErrorKind.PROJECT_GONE:
        summary += _GONE_NEXT[mode == NEW]
    return session, _cleared_key(), summary, dropdown


#: what to do after "project deleted", for an existing project (False) and the session's new project (True)
_GONE_NEXT = {False: "\n\nThe project list is refreshed: pick another project, or choose “New project”.",
              True: "\n\nPush again to create a new project for these labels."}  # fmt: skip


def on_download(session: Any, fmt: str) -> tuple:
    """Download → (file paths, message). Written to a fresh temp dir per click."""
    try:
        items = current_items(session)
        ws = scope_workspace(session)
        classes = ws.export_classes() if ws is not None else None  # the label set numbers the classes
        out = Path(tempfile.mkdtemp(prefix=f"florence-ui-{fmt}-"))
        if fmt == "labelstudio":
            tasks = export_labelstudio_json(items, out / "labelstudio")
            files = [str(tasks), str(tasks.with_name("label_config.xml"))]
        elif fmt == "coco":
            export_coco(items, out / "coco", classes=classes)
            files = [str(zip_dir(out / "coco"))]
        else:
            export_yolo(items, out / "yolo", classes=classes)
            files = [str(zip_dir(out / "yolo"))]
    except Exception as exc:  # noqa: BLE001
        return gr.skip(), _fail(exc)
    regions = sum(len(i.regions) for i in items)
    return files, f"{fmt.upper() if fmt != 'labelstudio' else 'Label Studio JSON'}: {regions} region(s) exported."


def on_report(session: Any, url: str | None, key: str | None, project: Any,
              exposure: Exposure | None = None) -> tuple:  # fmt: skip
    """Model-assisted labelling report → (session, key box update, table markdown, chart PNG path).

    The project is the "Existing project" picked above; the connection is the tab's (same access rule as
    every other button). The report and chart are written to a fresh temp dir per click.
    """
    from florence_ui.labelstudio.pull import project_report

    remember_connection(session, url, key)
    try:
        if project in (None, ""):
            raise ValueError("Pick the project to report on (Test connection lists them).")
        report = project_report(settings_of(session, exposure), int(project))
        _, chart = report.write(Path(tempfile.mkdtemp(prefix="florence-ui-report-")))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        return session, _cleared_key(), _fail(exc), None
    head = f"**Project {project}** — Florence-2 regions after human review (per-image time saved is not estimated)"
    return session, _cleared_key(), f"{head}\n\n{report.markdown()}", str(chart)


# ---- layout ---------------------------------------------------------------------------------------
def build(session_state: gr.State) -> None:
    """Lay the tab out inside the caller's Blocks context and wire it to ``session_state``."""
    gr.Markdown("Send the **accepted** regions of the current image, or of every reviewed image of the open "
                "workspace, to Label Studio as pre-annotations (one task per image, one prediction), or download "
                "them. Pushing the same image again updates its task.")  # fmt: skip
    scope = gr.Radio(SCOPE_CHOICES, value="image", label="What to send", elem_id="ls-scope")
    pinned = locked()  # the handlers check the lock again at each call; this only shows it
    with gr.Accordion("1 · Connection", open=True):
        with gr.Row():
            url = gr.Textbox(label="Label Studio URL (locked to the server's LABEL_STUDIO_URL)" if pinned
                             else "Label Studio URL", interactive=not pinned, elem_id="ls-url", scale=2,
                             placeholder="the server's LABEL_STUDIO_URL" if pinned
                             else f"LABEL_STUDIO_URL or {DEFAULT_URL}")  # fmt: skip
            key = gr.Textbox(label="API key (personal access token or legacy token)", type="password",
                             placeholder="empty: LABEL_STUDIO_API_KEY from the server's environment",
                             elem_id="ls-key", scale=2)  # fmt: skip
            test_btn = gr.Button("Test connection", elem_id="ls-test", scale=1)
        conn_md = gr.Markdown(elem_id="ls-connection")
    with gr.Accordion("2 · Project and labels", open=True):
        with gr.Row():
            mode = gr.Radio([NEW, EXISTING], value=NEW, label="Project", elem_id="ls-mode")
            title = gr.Textbox(value="Florence-2 pre-annotations", label="New project title", elem_id="ls-title")
            project = gr.Dropdown(choices=[], label="Existing project", elem_id="ls-project", allow_custom_value=False)
            refresh_btn = gr.Button("↻", elem_id="ls-refresh", scale=0, min_width=40)
        check_btn = gr.Button("Check labels against the project", elem_id="ls-check")
        check_md = gr.Markdown(elem_id="ls-check-result")
        missing = gr.Radio(
            MISSING_CHOICES, value="add", label="Labels or fields the project lacks", elem_id="ls-missing"
        )
        mapping = gr.Dataframe(headers=MAP_HEADERS, value=[], column_count=3, column_limits=(3, 3), interactive=True, static_columns=[0, 1],
                               label="Label mapping (used with “Map them”)", elem_id="ls-mapping")  # fmt: skip
    with gr.Accordion("3 · Push", open=True):
        with gr.Row():
            source = gr.Radio(SOURCE_CHOICES, value="upload", label="Image", elem_id="ls-source", scale=2)
            image_url = gr.Textbox(label="Image URL or local-files path", elem_id="ls-image-url", scale=2,
                                   placeholder="https://… or /data/local-files/?d=folder/image.jpg")  # fmt: skip
        push_btn = gr.Button("Push accepted labels to Label Studio", variant="primary", elem_id="ls-push")
        push_md = gr.Markdown(elem_id="ls-push-result")
    with gr.Accordion("Download without Label Studio", open=True):
        with gr.Row():
            buttons = {fmt: gr.Button(label, size="sm", elem_id=f"dl-{fmt}") for fmt, label in
                       (("labelstudio", "Label Studio JSON"), ("coco", "COCO (zip)"), ("yolo", "YOLO (zip)"))}  # fmt: skip
        files = gr.File(label="Files", file_count="multiple", interactive=False, elem_id="ls-files")
        dl_md = gr.Markdown(elem_id="ls-download-result")
    with gr.Accordion("Model-assisted labelling report", open=False):
        gr.Markdown("For the **existing project** picked above: how many Florence-2 regions reviewers kept, edited "
                    "(moved or relabelled), deleted, and how many they added; precision and recall of the "
                    "predictions against the final labels at IoU 0.5.")  # fmt: skip
        report_btn = gr.Button("Compute the report", elem_id="ls-report")
        report_md = gr.Markdown(elem_id="ls-report-result")
        report_chart = gr.Image(label="Per class", type="filepath", interactive=False, elem_id="ls-report-chart")

    # "undocumented", not Gradio's default "public": the browser saves the inputs of every public event in its
    # run history (localStorage, optionally synced to a Hugging Face bucket), and the key box is one of our
    # inputs. Undocumented events are left out of that history and of the API page, yet stay callable by name.
    hidden = {"api_visibility": "undocumented"}
    conn = [session_state, url, key]
    root = get_blocks_context().root_block  # the Blocks being built: gradio records its launch host on it

    def exposed(handler: Callable[..., tuple]) -> Callable[..., tuple]:
        """``handler`` told where the app listens (launch's server_name and share link), read at call time."""

        def run(*args: Any) -> tuple:
            listen = Exposure.of(getattr(root, "server_name", None), bool(getattr(root, "share", False)))
            return handler(*args, exposure=listen)

        # gradio reads the signature to count the inputs: the handler's, without ``exposure``
        signature = inspect.signature(handler)
        run.__signature__ = signature.replace(
            parameters=[p for n, p in signature.parameters.items() if n != "exposure"]
        )
        run.__name__, run.__doc__ = handler.__name__, handler.__doc__
        return run

    on_test_, on_refresh_, on_check_, on_push_, on_report_ = map(exposed, (on_test, on_refresh, on_check, on_push,
                                                                       on_report))  # fmt: skip
    # gradio injects its live progress tracker where a parameter defaults to gr.Progress (one bar per image pushed)
    push_signature = inspect.signature(on_push_)
    on_push_.__signature__ = push_signature.replace(parameters=[
        p.replace(default=gr.Progress()) if n == "progress" else p for n, p in push_signature.parameters.items()
    ])  # fmt: skip
    test_btn.click(on_test_, conn, [session_state, conn_md, key, project], api_name="labelstudio_test", **hidden)
    refresh_btn.click(on_refresh_, conn, [session_state, conn_md, key, project], api_name="labelstudio_refresh",
                      **hidden)  # fmt: skip
    check_btn.click(on_check_, [*conn, mode, project], [session_state, key, check_md, mapping],
                    api_name="labelstudio_check", **hidden)  # fmt: skip
    push_btn.click(on_push_, [*conn, mode, project, title, missing, mapping, source, image_url],
                   [session_state, key, push_md, project], api_name="labelstudio_push", **hidden)  # fmt: skip

    report_btn.click(on_report_, [*conn, project], [session_state, key, report_md, report_chart],
                     api_name="labelstudio_report", **hidden)  # fmt: skip

    def on_scope(session: Any, value: str) -> Any:
        session.labelstudio["scope"] = "workspace" if value == "workspace" else "image"
        return session

    scope.input(on_scope, [session_state, scope], [session_state], api_name="ls_scope", **hidden)
    for fmt, button in buttons.items():
        button.click(lambda s, f=fmt: on_download(s, f), [session_state], [files, dl_md], api_name=f"download_{fmt}",
                     **hidden)  # fmt: skip
