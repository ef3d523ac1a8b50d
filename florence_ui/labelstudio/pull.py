"""Pull a project's human-final annotations out of Label Studio (the SDK side of ``florence-ui pull``).

The project is read with the SDK's export API (``client.projects.exports.as_json``:
the synchronous export on Label Studio Community, the export-snapshot job on
Enterprise), which carries every task with its annotations and predictions.
From it come the final regions of each task (:mod:`florence_ui.labelstudio.report`
picks the annotation) and the report.

Why not the SDK's own COCO / YOLO converter: it downloads task images itself
and falls back on ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` from the
environment for them, outside the rules of :mod:`florence_ui.labelstudio.access`
(whose key may go where), and its files differ from ``florence-ui export``'s.
Instead the final regions become :class:`~florence_ui.core.labels.LabeledImage` s
(:func:`labeled_images`) that the caller writes with the same COCO / YOLO
exporters as every other export. Their images are read from **this** Label
Studio only (uploads, local files; the SDK's own HTTP client, so the key goes
nowhere else); an image on another host or unreadable is left out and listed,
never fetched from there.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from florence_ui.core.labels import LabeledImage, Region
from florence_ui.core.tasks import DEFAULT_TASK
from florence_ui.labelstudio.access import same_origin
from florence_ui.labelstudio.client import Connection, list_projects, project_schema
from florence_ui.labelstudio.convert import BOXES, HASH_KEY, POLYGONS
from florence_ui.labelstudio.errors import LabelStudioError, LabelStudioErrorKind
from florence_ui.labelstudio.report import LSRegion, Report, build_report, final_annotation, result_regions

#: the ``source_task`` pulled regions carry: a category task, so exporters treat their labels as classes
PULLED_TASK = DEFAULT_TASK.token


@dataclass
class FinalTask:
    """One task's final annotation as pixels, with where its image is."""

    task_id: int
    annotation_id: int | None
    image_ref: str
    name: str
    width: int | None
    height: int | None
    regions: list[LSRegion] = field(default_factory=list)
    image_hash: str | None = None

    def as_json(self) -> dict[str, Any]:
        """One line of ``annotations.jsonl``."""
        regions = []
        for r in self.regions:
            row: dict[str, Any] = {"id": r.id, "label": r.label, "xyxy": [round(v, 3) for v in r.xyxy]}
            if r.points is not None:
                row["points"] = [[round(x, 3), round(y, 3)] for x, y in r.points]
            regions.append(row)
        return {"task_id": self.task_id, "annotation_id": self.annotation_id, "image": self.image_ref,
                "name": self.name, "width": self.width, "height": self.height, HASH_KEY: self.image_hash,
                "regions": regions}  # fmt: skip


def resolve_project(client_or_settings: Any, project: str | int) -> int:
    """A numeric id as is; a title finds the existing project (oldest when several share it), never creates one."""
    text = str(project).strip()
    if text.isdigit():
        return int(text)
    conn = Connection.of(client_or_settings)
    projects = list_projects(conn)
    matches = sorted(pid for pid, title in projects if title.strip() == text)
    if not matches:
        known = ", ".join(f"#{pid} {title!r}" for pid, title in projects[:10]) or "none"
        raise LabelStudioError(f"No project titled {text!r} in Label Studio at {conn.settings.base_url} (projects: "
                               f"{known}). Give its id or exact title.", kind=LabelStudioErrorKind.NOT_FOUND)  # fmt: skip
    return matches[0]


def export_tasks(client_or_settings: Any, project_id: int) -> list[dict[str, Any]]:
    """Every task of the project with its annotations and predictions (the SDK's JSON export).

    The export's predictions are filled in from the task list where the export gives only their ids.
    """
    conn = Connection.of(client_or_settings)
    project_schema(conn, project_id)  # a clear "project gone" first, rather than the export's 404
    with conn.calls(f"Export project {project_id}"):
        tasks = list(conn.client.projects.exports.as_json(int(project_id)) or [])
    if any(not isinstance(p, dict) for t in tasks for p in t.get("predictions") or []):
        # Label Studio Community's export lists predictions by id only: their results come from the task list
        with conn.calls(f"Read the predictions of project {project_id}"):
            listed = {int(t.id): [p if isinstance(p, dict) else p.model_dump() for p in (t.predictions or [])]
                      for t in conn.client.tasks.list(project=int(project_id), fields="all", page_size=100)}  # fmt: skip
        for task in tasks:
            task["predictions"] = listed.get(int(task["id"]), [])
    return tasks


def final_tasks(tasks: list[dict[str, Any]], data_key: str | None = None) -> list[FinalTask]:
    """The tasks that have a final annotation, with its regions (tasks nobody annotated are left out)."""
    out = []
    for task in tasks:
        annotation = final_annotation(task)
        if annotation is None:
            continue
        data = task.get("data") or {}
        key = data_key if data_key in data else next((k for k, v in data.items() if isinstance(v, str)
                                                      and not k.startswith("florence_ui_")), None)  # fmt: skip
        ref = str(data.get(key, "")) if key else ""
        result = annotation.get("result") or []
        sizes = [(r.get("original_width"), r.get("original_height")) for r in result if r.get("original_width")]
        width, height = sizes[0] if sizes else (None, None)
        name = data.get("florence_ui_image_name") or ref.rsplit("/", 1)[-1].split("?d=")[-1] or f"task-{task['id']}"
        out.append(FinalTask(int(task["id"]), annotation.get("id"), ref, str(name), width, height,
                             result_regions(result), data.get(HASH_KEY)))  # fmt: skip
    return out


def image_bytes(conn: Connection, ref: str) -> bytes:
    """The image of a task: a ``data:`` URI decoded here, else read from this Label Studio (path or same origin).

    Raises :class:`LabelStudioError` for an image on another host (nothing is fetched from there).
    """
    if ref.startswith("data:"):
        try:
            return base64.b64decode(ref.split(",", 1)[1], validate=False)
        except (IndexError, binascii.Error):
            raise LabelStudioError("the task's data: URI is not base64 image data") from None
    base = conn.settings.base_url
    if ref.startswith("/"):
        path = ref
    elif same_origin(ref, base):
        path = ref.split("://", 1)[1].split("/", 1)[1] if "/" in ref.split("://", 1)[1] else ""
    else:
        raise LabelStudioError("its image is not stored in this Label Studio (another host is never fetched from)")
    with conn.calls(f"Read the image {path}"):
        # the SDK has no public file-download call for task media; its HTTP client adds the auth (as upload_image)
        response = conn.client._client_wrapper.httpx_client.request(path.lstrip("/"), method="GET")  # noqa: SLF001
        if response.status_code >= 400:
            from label_studio_sdk.core.api_error import ApiError

            raise ApiError(status_code=response.status_code, body=response.text[:300])
        return response.content


def labeled_images(client_or_settings: Any, finals: list[FinalTask]) -> tuple[list[LabeledImage], list[str]]:
    """The final regions as LabeledImages with their images read from Label Studio; and what was left out, why."""
    conn = Connection.of(client_or_settings)
    items, left_out = [], []
    for task in finals:
        try:
            data = image_bytes(conn, task.image_ref)
        except LabelStudioError as exc:
            if exc.fatal:
                raise
            left_out.append(f"task {task.task_id} ({task.name}): {exc}")
            continue
        item = LabeledImage(0, 0, image_data=data, name=task.name)
        try:
            with _opened(data) as image:
                width, height = image.size
        except OSError:
            left_out.append(f"task {task.task_id} ({task.name}): its image is not readable")
            continue
        item.width, item.height = width, height
        item.regions = [_region(r) for r in task.regions]
        items.append(item)
    return items, left_out


def _opened(data: bytes) -> Any:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data))


def _region(region: LSRegion) -> Region:
    polygons = [[c for point in region.points for c in point]] if region.points is not None else []
    return Region(label=region.label, xyxy=region.xyxy, source_task=PULLED_TASK, polygons=polygons)


def project_fields(client_or_settings: Any, project_id: int) -> tuple[str, list[str]]:
    """The task data key of the project's image, and its labels in config order (rectangles, then polygons):
    the COCO / YOLO class ids, so they follow the project rather than the labels that happen to be used."""
    schema, _ = project_schema(client_or_settings, project_id)
    labels = [*schema.labels.get(BOXES, []), *schema.labels.get(POLYGONS, [])]
    return schema.data_key, list(dict.fromkeys(labels))


def write_jsonl(finals: list[FinalTask], path: str | Path) -> Path:
    """``annotations.jsonl``: one line per annotated task with its final regions in pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(t.as_json(), ensure_ascii=False) + "\n" for t in finals))
    return path


def project_report(client_or_settings: Any, project: str | int, model_version: str | None = None) -> Report:
    """The model-assisted labelling report of a project (by id or title)."""
    conn = Connection.of(client_or_settings)
    return build_report(export_tasks(conn, resolve_project(conn, project)), model_version)
