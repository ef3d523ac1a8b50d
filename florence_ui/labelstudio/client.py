"""Label Studio over its SDK: connect, pick or create a project, push predictions, read them back.

Every HTTP call goes through ``label-studio-sdk`` (``LabelStudio`` client; the
image upload uses the SDK's own HTTP client, as the SDK has no public upload
helper). Conversions come from :mod:`florence_ui.labelstudio.convert`.

Guarantees the UI and the CLI rely on:

* **Idempotent.** Each task carries the image hash in its data
  (:data:`~florence_ui.labelstudio.convert.HASH_KEY`); a push first looks the hash up,
  so pushing an image again updates its prediction instead of adding a task,
  even after a restart or when an earlier push died halfway.
* **Nothing lost.** A failing server (unreachable, 401, 5xx, timeout, a
  project deleted meanwhile) becomes a :class:`LabelStudioError` with a message
  a person can act on, or a failed entry in the :class:`PushReport`; the
  caller's items are never modified, so a retry pushes the same regions again.
* **No duplicates on retry.** Requests that create something (project, task,
  prediction, upload) are never re-sent by the SDK's automatic retries: a 5xx
  or a dropped connection can come *after* the server stored the object, and a
  blind re-send would store it twice. Reads and updates keep the retries; the
  next push finds what was stored by its hash and updates it.
* **The API key stays secret.** It is never part of a message, a ``repr`` or a
  log line (:meth:`LSSettings.redact` scrubs every message we build).
* **The key stays with its server.** Redirects are never followed (the SDK
  would follow them, to a loopback address or with the key in a re-sent
  body); a redirect is an error naming the fix. With ``public_only`` (set by
  :func:`florence_ui.labelstudio.access.decide` for a typed URL on an app reachable from
  other machines) every address connected to is checked to be public.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from florence_ui.core.labels import LabeledImage
from florence_ui.labelstudio.convert import (
    HASH_KEY,
    LabelCheck,
    ProjectSchema,
    extend_config,
    fill_url,
    generate_label_config,
    image_name,
    task_data,
    to_prediction,
)
from florence_ui.labelstudio.errors import LabelStudioError, LabelStudioErrorKind, calls

log = logging.getLogger(__name__)

DEFAULT_URL = "http://localhost:8080"
DEFAULT_PROJECT_TITLE = "Florence-2 pre-annotations"
#: seconds to wait for an answer (LSSettings.from_env reads this variable; the SDK's own default is 60)
TIMEOUT_ENV = "FLORENCE_UI_LS_TIMEOUT"
#: request options for calls that create something: no automatic re-send (see "No duplicates on retry")
CREATE_ONCE: dict[str, Any] = {"max_retries": 0}
#: how the caller settles labels the project lacks (see :func:`push_images`)
MISSING_CHOICES = ("ask", "add", "map", "leave_out")


@dataclass
class LSSettings:
    """Where Label Studio is and the key to use. ``api_key`` may be a personal access token or a legacy token."""

    url: str = ""
    api_key: str = field(default="", repr=False)
    timeout: float = 30.0
    max_retries: int = 1
    #: connect only to public addresses, re-checked at each connection (set by ls_access.decide for typed URLs)
    public_only: bool = False

    @classmethod
    def from_env(cls, **overrides: Any) -> LSSettings:
        """The SDK's conventions: ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``; ``FLORENCE_UI_LS_TIMEOUT``.

        The timeout is configurable because a slow server (a big project, a busy
        machine) should not have to be waited on for 30 s, nor cut off at 30 s.
        """
        values: dict[str, Any] = {"url": os.environ.get("LABEL_STUDIO_URL", DEFAULT_URL),
                                  "api_key": os.environ.get("LABEL_STUDIO_API_KEY", "")}  # fmt: skip
        try:
            timeout = float(os.environ.get(TIMEOUT_ENV) or 0)
        except ValueError:
            timeout = 0.0
        if timeout > 0:
            values["timeout"] = timeout
        values.update({k: v for k, v in overrides.items() if v not in (None, "")})
        return cls(**values)

    @property
    def base_url(self) -> str:
        return (self.url or DEFAULT_URL).strip().rstrip("/")

    def redact(self, text: str) -> str:
        key = (self.api_key or "").strip()
        return text.replace(key, "[API key]") if len(key) >= 4 else text

    def client(self):
        """An SDK client (JWT personal access tokens are refreshed by the SDK; legacy tokens sent as-is)."""
        from label_studio_sdk import LabelStudio

        if not (self.api_key or "").strip():
            raise LabelStudioError("No Label Studio API key: paste one from Account & Settings in Label Studio "
                                   "(or set LABEL_STUDIO_API_KEY).", kind=LabelStudioErrorKind.AUTH)  # fmt: skip
        if not self.base_url.startswith(("http://", "https://")):
            raise LabelStudioError(self.redact(f"The Label Studio URL must start with http:// or https:// "
                                              f"(got {self.base_url!r})."))  # fmt: skip
        with calls(self, "connect"):
            return LabelStudio(base_url=self.base_url, api_key=self.api_key.strip(), timeout=self.timeout,
                               max_retries=self.max_retries, httpx_client=self.http_client())  # fmt: skip

    def http_client(self) -> httpx.Client:
        """The SDK's HTTP client: never follows a redirect, and with ``public_only`` checks each address.

        The SDK follows redirects by default: a URL that redirects to 127.0.0.1 would reach the app's own
        machine, and a 307/308 re-sends the body (a token refresh carries the key in it) to wherever it points.
        A redirect is an error that names the fix instead.
        """
        base = self.base_url

        def refuse_redirect(response: httpx.Response) -> None:
            if response.is_redirect:
                raise LabelStudioError(f"Label Studio at {base} answered with a redirect ({response.status_code}); "
                                       "redirects are not followed, so the API key stays with this server. Use the "
                                       "address it redirects to (often https://, or a trailing path) as the URL "
                                       "(or LABEL_STUDIO_URL).", kind=LabelStudioErrorKind.REQUEST,
                                       status=response.status_code)  # fmt: skip

        from florence_ui.labelstudio.access import guarded_transport

        return httpx.Client(timeout=self.timeout, follow_redirects=False, event_hooks={"response": [refuse_redirect]},
                            transport=guarded_transport() if self.public_only else None)  # fmt: skip


@dataclass
class Connection:
    """An SDK client with the settings it came from (for links and redaction)."""

    client: Any
    settings: LSSettings

    @classmethod
    def of(cls, client_or_settings: Any) -> Connection:
        """Accept an :class:`LSSettings`, a ``Connection`` or a ready ``LabelStudio`` client."""
        if isinstance(client_or_settings, Connection):
            return client_or_settings
        if isinstance(client_or_settings, LSSettings):
            return cls(client_or_settings.client(), client_or_settings)
        # the SDK keeps a client's url and key only on its wrapper: quarantined here, for callers passing a client
        wrapper = client_or_settings._client_wrapper  # noqa: SLF001
        settings = LSSettings(url=wrapper.get_base_url(), api_key=wrapper._tokens_client._api_key)  # noqa: SLF001 - as above
        return cls(client_or_settings, settings)

    @contextmanager
    def calls(self, what: str) -> Iterator[None]:
        with calls(self.settings, what):
            yield

    def project_url(self, project_id: int) -> str:
        return f"{self.settings.base_url}/projects/{project_id}/data"

    def task_url(self, project_id: int, task_id: int) -> str:
        return f"{self.project_url(project_id)}?task={task_id}"


# ---- connection and projects ------------------------------------------------------------
def whoami(client_or_settings: Any) -> str:
    """``"admin@example.com (user #1) at http://…"``: what "Test connection" shows."""
    conn = Connection.of(client_or_settings)
    with conn.calls("Test connection"):
        me = conn.client.users.whoami()
    name = me.email or me.username or f"user #{me.id}"
    org = (me.active_organization_meta or {}).get("title") if isinstance(me.active_organization_meta, dict) else None
    return f"{name} (user #{me.id}{f', organization {org!r}' if org else ''}) at {conn.settings.base_url}"


def list_projects(client_or_settings: Any) -> list[tuple[int, str]]:
    conn = Connection.of(client_or_settings)
    with conn.calls("List projects"):
        return [(p.id, p.title or f"Project {p.id}") for p in conn.client.projects.list()]


def create_project(client_or_settings: Any, title: str, items: list[LabeledImage],
                   min_confidence: float | None = None) -> int:  # fmt: skip
    """A new project whose labeling config is generated from what is being pushed (sent once, never re-sent)."""
    conn = Connection.of(client_or_settings)
    title = project_title(title)
    with conn.calls("Create project"):
        project = conn.client.projects.create(title=title, label_config=generate_label_config(items, min_confidence),
                                              description="Pre-annotations from florence-ui",
                                              request_options=CREATE_ONCE)  # fmt: skip
    return int(project.id)


def project_title(title: str | None) -> str:
    """The title :func:`create_project` gives a project (callers look a lost creation up by it)."""
    return (title or "").strip() or DEFAULT_PROJECT_TITLE


def project_gone(conn: Connection, project_id: int) -> LabelStudioError:
    return LabelStudioError(f"Project {project_id} no longer exists in Label Studio at {conn.settings.base_url} "
                            "(deleted?). Pick another project or create a new one; your accepted regions are kept.",
                            kind=LabelStudioErrorKind.PROJECT_GONE, status=404)  # fmt: skip


def project_schema(client_or_settings: Any, project_id: int) -> tuple[ProjectSchema, str]:
    conn = Connection.of(client_or_settings)
    try:
        with conn.calls(f"Read project {project_id}"):
            config = conn.client.projects.get(id=int(project_id)).label_config
    except LabelStudioError as exc:
        if exc.kind == LabelStudioErrorKind.NOT_FOUND:
            raise project_gone(conn, project_id) from None
        raise
    try:
        return ProjectSchema.from_config(config), config
    except ValueError as exc:
        raise LabelStudioError(f"Project {project_id}: {exc}", kind=LabelStudioErrorKind.REQUEST) from None


def check_project(client_or_settings: Any, project_id: int, items: list[LabeledImage],
                  min_confidence: float | None = None) -> LabelCheck:  # fmt: skip
    """Which of our labels / fields the project lacks (shown to the user before a push)."""
    schema, _ = project_schema(client_or_settings, project_id)
    return LabelCheck.of(items, schema, min_confidence)


def add_missing_to_project(client_or_settings: Any, project_id: int, items: list[LabeledImage],
                           min_confidence: float | None = None) -> ProjectSchema:  # fmt: skip
    """The "add them to the config" choice: extend the project's config, return its new schema."""
    conn = Connection.of(client_or_settings)
    schema, config = project_schema(conn, project_id)
    check = LabelCheck.of(items, schema, min_confidence)
    if check.ok:
        return schema
    new_config = extend_config(config, check, schema)
    with conn.calls(f"Update the labeling config of project {project_id}"):
        conn.client.projects.update(id=int(project_id), label_config=new_config)
    return ProjectSchema.from_config(new_config)


# ---- push ------------------------------------------------------------------------------------
@dataclass
class ImagePush:
    """How one image fared: task, prediction, counts sent and read back."""

    image_hash: str
    name: str
    status: str = "not pushed"  # created | updated | failed | not pushed
    task_id: int | None = None
    prediction_id: int | None = None
    url: str | None = None
    regions_accepted: int = 0
    regions_sent: int = 0
    ls_regions: int = 0
    texts_sent: int = 0
    left_out: list[str] = field(default_factory=list)
    regions_read_back: int | None = None
    texts_read_back: int | None = None
    predictions_from_model: int | None = None
    verified: bool | None = None
    error: str | None = None


@dataclass
class PushReport:
    project_id: int
    project_url: str
    images: list[ImagePush] = field(default_factory=list)
    error: str | None = None  # what stopped the push early
    #: its LabelStudioError.kind (PROJECT_GONE: retrying here cannot work)
    error_kind: LabelStudioErrorKind | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(i.status in ("created", "updated") and i.verified is not False
                                          for i in self.images)  # fmt: skip

    def summary(self) -> str:
        """Markdown for the UI: one line per image with its link, then what went wrong."""
        lines = []
        for i in self.images:
            if i.status in ("created", "updated"):
                check = ""
                if i.regions_read_back is not None:
                    same = "✓" if i.verified else "✗ MISMATCH"
                    check = (f" — read back: {i.regions_read_back} region(s), {i.texts_read_back} text(s), "
                             f"{i.predictions_from_model} prediction(s) from this model {same}")  # fmt: skip
                lines.append(f"- **{i.name}**: task [{i.task_id}]({i.url}) {i.status}; regions pushed "
                             f"{i.regions_sent} of {i.regions_accepted} accepted ({i.ls_regions} Label Studio "
                             f"region(s)), {i.texts_sent} text(s){check}")  # fmt: skip
            else:
                lines.append(f"- **{i.name}**: {i.status}{f' — {i.error}' if i.error else ''}")
            lines += [f"  - left out: {why}" for why in i.left_out]
        if self.error:
            pending = sum(1 for i in self.images if i.status != "created" and i.status != "updated")
            gone = self.error_kind == LabelStudioErrorKind.PROJECT_GONE
            again = ("Push them to another project." if gone
                     else "Push again to retry: images already in Label Studio are updated, not duplicated.")  # fmt: skip
            lines.append(f"\n**Push stopped:** {self.error}\n\nYour accepted regions are kept; {pending} image(s) "
                         f"not pushed yet. {again}")  # fmt: skip
        return "\n".join(lines)


ImageUrl = str | Callable[[LabeledImage], str] | None
#: ``progress(done, total, image name)``, called after each image of a push (pushed or failed)
PushProgress = Callable[[int, int, str], None]


def push_images(
    client_or_settings: Any,
    project: int,
    items: list[LabeledImage],
    *,
    label_map: dict[str, str] | None = None,
    missing: str = "ask",
    image_url: ImageUrl = None,
    min_confidence: float | None = None,
    verify: bool = True,
    progress: PushProgress | None = None,
) -> PushReport:
    """Push accepted labels as predictions: one task per image, one prediction per task.

    ``client_or_settings``: :class:`LSSettings`, a ``LabelStudio`` client or a
    :class:`Connection`. ``project``: the project id.

    ``missing`` settles labels / fields the project lacks: ``"ask"`` raises
    :class:`~florence_ui.labelstudio.convert.MissingInProject` (with the check to show)
    before anything is written; ``"add"`` adds them to the project's config;
    ``"map"`` uses ``label_map`` (our label → theirs; every missing label must be
    mapped); ``"leave_out"`` pushes the rest and lists what was left out.

    ``image_url`` is ``None`` to upload each image to Label Studio (works with
    no shared storage), or a URL / local-files reference: a string (``{name}``
    and ``{hash}`` are filled in) or a function of the item.

    Images already in the project (same image hash) get their prediction from
    this model updated. With ``verify``, each task is read back and compared.
    A fatal error (unreachable, 401, timeout, the project deleted meanwhile)
    stops the push and is returned in ``PushReport.error``; per-image errors are
    on the image. Raises :class:`LabelStudioError` only when nothing could start
    (bad key, no project).

    ``progress(done, total, name)`` is called after each image, pushed or
    failed, so a page can move a progress bar and the CLI can print a line
    while a whole workspace goes up (not for the images a fatal error left
    unpushed). An exception it raises propagates and stops the push there.
    """
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {MISSING_CHOICES}")
    conn = Connection.of(client_or_settings)
    project = int(project)
    if missing == "add":
        schema = add_missing_to_project(conn, project, items, min_confidence)
    else:
        schema, _ = project_schema(conn, project)
    options = {"label_map": label_map if missing == "map" else None, "leave_out_missing": missing == "leave_out",
               "min_confidence": min_confidence}  # fmt: skip
    conversions = [to_prediction(item, schema, **options) for item in items]  # raises MissingInProject first
    report = PushReport(project, conn.project_url(project))
    report.images = [ImagePush(item.image_hash, image_name(item)) for item in items]
    total = len(items)
    for done, (item, conversion, entry) in enumerate(zip(items, conversions, report.images, strict=True), start=1):
        entry.regions_accepted, entry.regions_sent = conversion.regions_accepted, conversion.regions_sent
        entry.ls_regions, entry.texts_sent = conversion.ls_regions, conversion.texts_sent
        entry.left_out = conversion.left_out
        try:
            _push_one(conn, project, schema, item, conversion.prediction, entry, image_url)
            if verify:
                _verify(conn, entry, conversion.prediction)
        except LabelStudioError as exc:
            if not exc.fatal and _project_is_gone(conn, project):  # deleted mid-push: 404s / 400s from here on
                exc = project_gone(conn, project)
            entry.status, entry.error = "failed", str(exc)
            log.warning("push of %s failed: %s", entry.name, exc)
            if exc.fatal:
                report.error, report.error_kind = str(exc), exc.kind
        if progress is not None:
            progress(done, total, entry.name)
        if report.error is not None:
            break
    return report


def _project_is_gone(conn: Connection, project_id: int) -> bool:
    """True only when Label Studio says the project does not exist (any other failure: don't know, False)."""
    try:
        project_schema(conn, project_id)
    except LabelStudioError as exc:
        return exc.kind == LabelStudioErrorKind.PROJECT_GONE
    return False


def find_task(client_or_settings: Any, project_id: int, image_hash: str) -> Any | None:
    """The project's task for this image (by the hash stored in its data), with its predictions."""
    conn = Connection.of(client_or_settings)
    query = {
        "filters": {
            "conjunction": "and",
            "items": [
                {"filter": f"filter:tasks:data.{HASH_KEY}", "operator": "equal", "type": "String", "value": image_hash}
            ],
        }
    }
    with conn.calls("Look the image up in Label Studio"):
        for task in conn.client.tasks.list(project=int(project_id), query=json.dumps(query), page_size=10):
            if (task.data or {}).get(HASH_KEY) == image_hash:
                return task
    return None


def upload_image(conn: Connection, project_id: int, item: LabeledImage) -> tuple[int, str]:
    """Upload the image file to the project (no task yet); returns the file-upload id and its URL."""
    from label_studio_sdk.core.api_error import ApiError

    name = image_name(item)
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    with conn.calls(f"Upload {name}"):
        # The SDK has no public upload helper; its HTTP client adds auth (and token refresh) and retries.
        response = conn.client._client_wrapper.httpx_client.request(  # noqa: SLF001 - see the comment above
            f"api/projects/{int(project_id)}/import", method="POST", params={"commit_to_project": "false"},
            files={"file": (name, item.image_bytes(), mime)}, request_options=CREATE_ONCE)  # fmt: skip
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text[:300]
            raise ApiError(status_code=response.status_code, body=body)
        upload_id = int(response.json()["file_upload_ids"][0])
        upload = conn.client.files.get(id=upload_id)
    return upload_id, f"/data/{upload.file.lstrip('/')}"


def _image_reference(item: LabeledImage, image_url: ImageUrl) -> str:
    if callable(image_url):
        return image_url(item)
    return fill_url(str(image_url), image_name(item), item.image_hash)


def _is_ours(prediction: Any, model_version: str) -> bool:
    """Predictions from the same ``model@revision`` are ours to update (tasks may differ between pushes)."""
    mv = prediction.get("model_version") if isinstance(prediction, dict) else prediction.model_version
    return (mv or "").split(": ")[0] == model_version.split(": ")[0]


def _push_one(conn: Connection, project: int, schema: ProjectSchema, item: LabeledImage, prediction: dict[str, Any],
              entry: ImagePush, image_url: ImageUrl) -> None:  # fmt: skip
    task = find_task(conn, project, item.image_hash)
    if task is None:
        upload_id = None
        if image_url is None:
            upload_id, reference = upload_image(conn, project, item)
        else:
            reference = _image_reference(item, image_url)
        extra = {"file_upload": upload_id} if upload_id is not None else {}
        with conn.calls(f"Create the task for {entry.name}"):
            task = conn.client.tasks.create(project=project, data=task_data(item, reference, schema),
                                            request_options=CREATE_ONCE, **extra)  # fmt: skip
        entry.status, existing = "created", []
    else:
        entry.status = "updated"
        existing = [p for p in (task.predictions or []) if _is_ours(p, item.model_version)]
    entry.task_id, entry.url = int(task.id), conn.task_url(project, int(task.id))
    fields = {"result": prediction["result"], "model_version": prediction["model_version"]}
    if "score" in prediction:
        fields["score"] = prediction["score"]
    with conn.calls(f"Save the prediction for {entry.name}"):
        if existing:
            newest = max(existing, key=lambda p: _pred_id(p))
            saved = conn.client.predictions.update(id=_pred_id(newest), **fields)
        else:
            saved = conn.client.predictions.create(task=int(task.id), project=project, request_options=CREATE_ONCE,
                                                   **fields)  # fmt: skip
    entry.prediction_id = int(saved.id)


def _pred_id(prediction: Any) -> int:
    return int(prediction["id"] if isinstance(prediction, dict) else prediction.id)


def _verify(conn: Connection, entry: ImagePush, prediction: dict[str, Any]) -> None:
    """Read the task back: our prediction must hold exactly what we sent, and be the only one from this model."""
    with conn.calls(f"Read back task {entry.task_id}"):
        task = conn.client.tasks.get(id=str(entry.task_id))
    preds = [p if isinstance(p, dict) else p.model_dump() for p in (task.predictions or [])]
    ours = [p for p in preds if _is_ours(p, prediction["model_version"])]
    mine = next((p for p in ours if _pred_id(p) == entry.prediction_id), None)
    result = (mine or {}).get("result") or []
    entry.predictions_from_model = len(ours)
    entry.regions_read_back = sum(1 for r in result if r.get("type") in ("rectanglelabels", "polygonlabels"))
    entry.texts_read_back = sum(len(r["value"].get("text", [])) for r in result
                                if r.get("type") == "textarea" and "x" not in r["value"] and "points" not in r["value"])  # fmt: skip
    entry.verified = mine is not None and len(ours) == 1 and result == prediction["result"]
