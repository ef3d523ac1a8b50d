"""The one door to a workspace: images, model runs, regions under review, their history, the label set.

The page, the CLI and the exporters all go through :class:`Workspace`, so a
decision made in one is what the others see, and the rules live once:

* **identity**: an image is its :func:`~florence_ui.core.images.image_identity`
  (the sha256 of the file's bytes); adding it twice, or importing a second
  results file about it, finds the same row.
* **runs become regions**: every region of a model answer is stored *pending*
  with the run that produced it (:func:`~florence_ui.core.labels.regions_from_result`);
  a results.jsonl line imported twice adds nothing the second time.
* **every review action is an event** (before / after of each region it
  touched), so :meth:`Workspace.undo` / :meth:`Workspace.redo` work across
  restarts and browsers, and the file is its own audit log. A new action after
  an undo drops the redo branch (kept in the log as ``dropped``).
* **optimistic concurrency**: each region has a ``version``; an action given the
  ``expected_version`` the caller saw is refused with a :class:`ConflictError`
  naming what changed when someone else got there first. Each action runs in a
  ``BEGIN IMMEDIATE`` transaction, so the check and the write are one step.
* **one class order**: the label set's position is the class id, for the whole
  workspace: :meth:`Workspace.class_names` is what COCO / YOLO exports are told,
  so ids agree across images and across exports. A category the model names is
  appended to the label set the first time it is seen; free-text regions
  (descriptions, OCR lines) are not categories and stay out of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from florence_ui.core.fields import SOURCE_TASK  # the column is named after the field
from florence_ui.core.geometry import validate_box
from florence_ui.core.images import image_identity
from florence_ui.core.labels import LabeledImage, Region, regions_from_result
from florence_ui.core.review import STATUSES, ReviewStatus
from florence_ui.core.tasks import DEFAULT_TASK, get_task
from florence_ui.errors import ConflictError, ImageLoadError, WorkspaceError
from florence_ui.workspace.store import MIGRATIONS, Migration, check_name, connect, workspace_path

#: the task a hand-drawn box is recorded under: plain detection (a category label, a box)
HAND_DRAWN_TASK = DEFAULT_TASK.token
#: the region fields a review action changes, and so what an event's before / after hold
_STATE = ("label", "xyxy", "polygons", "quad", "status", "deleted")


class ImageStatus(StrEnum):
    """Where an image stands in the queue (str-valued: the page and the CLI show and filter by these)."""

    #: nothing to review yet: no run and no region
    NEW = "new"
    #: at least one region still pending
    PENDING = "pending"
    #: runs or regions, none of them pending
    REVIEWED = "reviewed"


@dataclass(frozen=True)
class RegionRow:
    """One stored region as the page shows it; ``version`` is what an edit passes as ``expected_version``."""

    id: int
    image_id: int
    run_id: int | None
    label: str
    xyxy: tuple[float, float, float, float]
    polygons: list[list[float]]
    quad: list[float] | None
    source_task: str
    score: float | None
    box_index: int | None
    status: ReviewStatus
    deleted: bool
    version: int

    @property
    def hand_drawn(self) -> bool:
        return self.run_id is None

    def region(self) -> Region:
        """The :class:`Region` every exporter reads."""
        return Region(label=self.label, xyxy=self.xyxy, source_task=self.source_task, score=self.score,
                      polygons=[list(p) for p in self.polygons], quad=self.quad, box_index=self.box_index)  # fmt: skip


@dataclass(frozen=True)
class ImageSummary:
    """One image of the queue: its status, its regions counted by status, its weakest pending score."""

    id: int
    identity: str
    name: str
    path: str | None
    width: int
    height: int
    status: ImageStatus
    counts: dict[str, int]
    runs: int
    min_pending_score: float | None


@dataclass(frozen=True)
class Progress:
    """How far the review is: ``str()`` is the line the page and ``workspace status`` show."""

    reviewed: int
    total: int
    images: dict[str, int]
    regions: dict[str, int]

    def __str__(self) -> str:
        return f"{self.reviewed} / {self.total} reviewed"


@dataclass(frozen=True)
class LabelClass:
    """One class of the label set; ``position`` is its class id in every export."""

    name: str
    synonyms: tuple[str, ...]
    position: int


@dataclass(frozen=True)
class Event:
    """A review action as the log holds it (what :meth:`Workspace.undo` / ``redo`` return)."""

    id: int
    action: str
    region_ids: tuple[int, ...]
    state: str


@dataclass
class ImportReport:
    """What :meth:`Workspace.import_results` did with a results file."""

    lines: int = 0
    runs_added: int = 0
    runs_already_there: int = 0
    regions_added: int = 0
    images_added: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.lines} lines: {self.runs_added} runs added ({self.regions_added} regions, "
                f"{self.images_added} new images), {self.runs_already_there} already in the workspace")  # fmt: skip
        return text + (f", {len(self.skipped)} skipped" if self.skipped else "")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _score(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def _size(source: str | Path | bytes) -> tuple[int, int]:
    """Width and height as displayed (EXIF rotation applied), from the header only: no pixel is decoded."""
    what = f"'{Path(source).name}'" if isinstance(source, str | Path) else "the uploaded file"
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except FileNotFoundError as exc:
        raise ImageLoadError(f"The image file {what} does not exist.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{what} is not an image this app can read ({exc}); use JPEG, PNG or WebP.") from exc
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _transform(flat: Sequence[float], old: Sequence[float], new: Sequence[float]) -> list[float]:
    """Map flat x, y coordinates from box ``old`` onto box ``new`` (a moved / resized region's outline follows)."""
    sx = (new[2] - new[0]) / (old[2] - old[0]) if old[2] > old[0] else 1.0
    sy = (new[3] - new[1]) / (old[3] - old[1]) if old[3] > old[1] else 1.0
    out = []
    for i, v in enumerate(flat):
        out.append(round(new[0] + (v - old[0]) * sx, 2) if i % 2 == 0 else round(new[1] + (v - old[1]) * sy, 2))
    return out


class Workspace:
    """A named, durable review (one SQLite file). Thread-safe: one lock serialises this object's calls.

    Open one with :meth:`open` (by name, under the data folder) or with a path;
    use it as a context manager or call :meth:`close`. Several objects (browsers,
    processes) may open one file: SQLite's locks and the regions' versions keep
    them from clobbering each other.
    """

    def __init__(self, path: str | Path, *, name: str | None = None, migrations: Sequence[Migration] = MIGRATIONS):
        self.path = Path(path)
        self.name = name or self.path.stem
        self._conn = connect(self.path, migrations)
        self._lock = threading.RLock()

    @classmethod
    def open(cls, name: str, root: str | Path | None = None) -> Workspace:
        """Open or create workspace ``name`` under the data folder (``root`` replaces ``FLORENCE_UI_DATA``)."""
        return cls(workspace_path(check_name(name), root), name=name)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions ---------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the lock is taken before anything is read, so check + write is atomic."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise WorkspaceError(
                    f"The workspace file {self.path} is locked by another program ({exc}); try again, or close "
                    "the other florence-ui using it."
                ) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ---- images and runs ----------------------------------------------------------------
    def add_image(self, source: str | Path | bytes, *, name: str | None = None) -> int:
        """Add an image (a file, kept where it is, or its bytes, stored); returns its id. Idempotent by identity."""
        with self._write() as conn:
            return self._add_image(conn, source, name)[0]

    def _add_image(self, conn: sqlite3.Connection, source: str | Path | bytes, name: str | None) -> tuple[int, bool]:
        if isinstance(source, bytearray | memoryview):
            source = bytes(source)
        identity = image_identity(source)
        row = conn.execute("SELECT id FROM images WHERE identity = ?", (identity,)).fetchone()
        if row is not None:
            return int(row["id"]), False
        width, height = _size(source)
        if isinstance(source, bytes):
            path, data, name = None, source, name or f"image-{identity[:12]}.png"
        else:
            path, data, name = str(Path(source).resolve()), None, name or Path(source).name
        cur = conn.execute(
            "INSERT INTO images (identity, name, path, data, width, height, added) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (identity, name, path, data, width, height, _now()),
        )
        return int(cur.lastrowid), True

    def add_result(self, image_id: int, result: Any, *, settings: Any = None) -> list[int]:
        """Store a model answer (a :class:`FlorenceResult`) as a run; its regions become pending. Returns their ids."""
        with self._write() as conn:
            return self._add_run(conn, image_id, result, settings=settings)[1]

    def _add_run(self, conn: sqlite3.Connection, image_id: int, result: Any, *, settings: Any = None,
                 source_key: str | None = None, created: str | None = None) -> tuple[int | None, list[int]]:  # fmt: skip
        self._image_row(conn, image_id)
        if settings is not None and not isinstance(settings, Mapping):
            settings = {"max_new_tokens": int(settings.max_new_tokens), "num_beams": int(settings.num_beams)}
        cur = conn.execute(
            "INSERT OR IGNORE INTO runs (image_id, task, text_input, boxes, raw, text, text_score, settings, model, "
            "revision, truncated, created, source_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (image_id, result.task, result.text_input, json.dumps(result.boxes) if result.boxes else None,
             json.dumps(result.raw), result.text, _score(result.text_score), json.dumps(settings) if settings else None,
             result.model, getattr(result, "revision", None), int(bool(result.truncated)), created or _now(),
             source_key),
        )  # fmt: skip
        if cur.rowcount == 0:  # this source_key is already here: the same line imported again
            return None, []
        run_id = int(cur.lastrowid)
        ids = []
        for region in regions_from_result(result):
            label = self._canonical(conn, region.label)
            if not region.is_text:
                self._ensure_label(conn, label)
            cur = conn.execute(
                "INSERT INTO regions (image_id, run_id, label, xyxy, polygons, quad, source_task, score, box_index, "
                "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, run_id, label, json.dumps(list(region.xyxy)), json.dumps(region.polygons),
                 json.dumps(region.quad) if region.quad else None, region.source_task, _score(region.score),
                 region.box_index, ReviewStatus.PENDING.value),
            )  # fmt: skip
            ids.append(int(cur.lastrowid))
        return run_id, ids

    def import_results(self, path: str | Path, *, parser: Any = None, model: str | None = None,
                       revision: str | None = None, warn: Callable[[str], None] | None = None) -> ImportReport:  # fmt: skip
        """Import a ``florence-ui predict`` results.jsonl: each line a run, its regions pending; no model runs.

        The raw answers are re-parsed with ``parser`` (default: the weights-free
        processor of ``model``, else the file's own model, as ``florence-ui
        export`` does). Lines whose image file is missing are skipped and
        reported. Importing the same file again adds nothing: a line is known by
        its image identity, task, inputs, answer and model.
        """
        from florence_ui.batch import results_file

        warn = warn or (lambda message: None)
        lines = list(results_file.iter_lines([path], warn=warn))
        report = ImportReport(lines=len(lines))
        if not lines:
            return report
        parser = parser or results_file.parser_for(lines, model, revision)
        base = Path(path).resolve().parent
        prepared, identities = [], {}
        for line in lines:
            image = results_file.resolve_image(str(line["image"]), base)
            where = f"{line['image']} {line['task']}"
            if not Path(image).is_file():
                report.skipped.append(f"{where}: the image file is not there")
                continue
            try:
                result = results_file.result_from_line(parser, line, base)
                identity = identities.get(image) or identities.setdefault(image, image_identity(image))
            except Exception as exc:  # noqa: BLE001 - one bad line must not stop an import of thousands
                report.skipped.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            result.revision = line.get("revision") or result.revision
            key = json.dumps([identity, get_task(str(line["task"])).token, line.get("text_input") or "",
                              line.get("boxes") or None, line["generated_text"], line.get("model"),
                              line.get("revision")], sort_keys=True)  # fmt: skip
            settings = {k: line[k] for k in ("max_new_tokens", "num_beams") if line.get(k) is not None}
            prepared.append((image, result, settings, hashlib.sha256(key.encode()).hexdigest(), line.get("created")))
        for message in report.skipped:
            warn(f"skipped {message}")
        with self._write() as conn:
            for image, result, settings, key, created in prepared:
                image_id, new = self._add_image(conn, image, None)
                report.images_added += int(new)
                run_id, ids = self._add_run(conn, image_id, result, settings=settings, source_key=key,
                                            created=created)  # fmt: skip
                if run_id is None:
                    report.runs_already_there += 1
                else:
                    report.runs_added += 1
                    report.regions_added += len(ids)
        return report

    def runs(self, image_id: int) -> list[dict[str, Any]]:
        """The image's model runs, oldest first, as stored (JSON fields decoded)."""
        out = []
        for row in self._read("SELECT * FROM runs WHERE image_id = ? ORDER BY id", (image_id,)):
            item = dict(row)
            for key in ("boxes", "raw", "settings"):
                item[key] = json.loads(item[key]) if item[key] else None
            out.append(item)
        return out

    # ---- the label set -------------------------------------------------------------------
    def add_label(self, name: str, synonyms: Sequence[str] = ()) -> LabelClass:
        """Add a class (at the end: its position is its class id) or set an existing one's synonyms."""
        name = " ".join(str(name or "").split())
        if not name:
            raise WorkspaceError("A label set class needs a name: pass a non-empty label, e.g. 'car'.")
        with self._write() as conn:
            self._ensure_label(conn, name)
            conn.execute("UPDATE labels SET synonyms = ? WHERE name = ?",
                         (json.dumps([" ".join(s.split()) for s in synonyms if s.strip()]), name))  # fmt: skip
        return next(c for c in self.label_set() if c.name == name)

    def label_set(self) -> list[LabelClass]:
        rows = self._read("SELECT name, synonyms, position FROM labels ORDER BY position")
        return [LabelClass(r["name"], tuple(json.loads(r["synonyms"])), int(r["position"])) for r in rows]

    def class_names(self) -> list[str]:
        """The label set in class-id order: what every export of this workspace numbers its classes by."""
        return [c.name for c in self.label_set()]

    def canonical_label(self, phrase: str) -> str:
        """A phrase mapped onto the label set: a class's own name, then a synonym (case-insensitive), else as is."""
        with self._lock:
            return self._canonical(self._conn, phrase)

    @staticmethod
    def _canonical(conn: sqlite3.Connection, phrase: str) -> str:
        folded = " ".join(str(phrase).split()).casefold()
        rows = conn.execute("SELECT name, synonyms FROM labels ORDER BY position").fetchall()
        for row in rows:
            if row["name"].casefold() == folded:
                return str(row["name"])
        for row in rows:
            if folded in (s.casefold() for s in json.loads(row["synonyms"])):
                return str(row["name"])
        return str(phrase)

    @staticmethod
    def _ensure_label(conn: sqlite3.Connection, name: str) -> None:
        if not name.strip():
            return
        conn.execute("INSERT OR IGNORE INTO labels (name, position) "
                     "VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM labels))", (name,))  # fmt: skip

    # ---- regions --------------------------------------------------------------------------
    @staticmethod
    def _region_of(row: sqlite3.Row) -> RegionRow:
        return RegionRow(
            id=int(row["id"]), image_id=int(row["image_id"]), run_id=row["run_id"], label=row["label"],
            xyxy=tuple(json.loads(row["xyxy"])), polygons=json.loads(row["polygons"]),
            quad=json.loads(row["quad"]) if row["quad"] else None, source_task=row[SOURCE_TASK], score=row["score"],
            box_index=row["box_index"], status=ReviewStatus(row["status"]), deleted=bool(row["deleted"]),
            version=int(row["version"]),
        )  # fmt: skip

    def region(self, region_id: int) -> RegionRow:
        with self._lock:
            return self._get(self._conn, region_id)

    def regions(self, image_id: int, *, include_deleted: bool = False) -> list[RegionRow]:
        """The image's regions in the order they arrived (deleted ones only when asked)."""
        sql = "SELECT * FROM regions WHERE image_id = ?" + ("" if include_deleted else " AND deleted = 0")
        return [self._region_of(r) for r in self._read(sql + " ORDER BY id", (image_id,))]

    def _get(self, conn: sqlite3.Connection, region_id: int) -> RegionRow:
        row = conn.execute("SELECT * FROM regions WHERE id = ?", (int(region_id),)).fetchone()
        if row is None:
            raise WorkspaceError(f"Region #{region_id} is not in workspace {self.name!r}; reload the image's review.")
        return self._region_of(row)

    def _image_row(self, conn: sqlite3.Connection, image_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise WorkspaceError(f"Image #{image_id} is not in workspace {self.name!r}; add it first (add_image).")
        return row

    # ---- review actions --------------------------------------------------------------------
    def set_status(self, region_ids: int | Sequence[int], status: ReviewStatus | str,
                   expected_version: int | Mapping[int, int] | None = None) -> list[RegionRow]:  # fmt: skip
        """Accept, reject or reset regions (one event). ``expected_version``: one int, or ``{region id: version}``."""
        if status not in STATUSES:
            raise WorkspaceError(f"Status {status!r} is not one of {', '.join(STATUSES)}; pass one of those.")
        value = ReviewStatus(status).value
        return self._act("set_status", region_ids, lambda state: state | {"status": value}, expected_version)

    def relabel(self, region_id: int, label: str, expected_version: int | None = None) -> RegionRow:
        """Give a region another label (mapped onto the label set; a new category joins it)."""
        label = " ".join(str(label or "").split())
        if not label:
            raise WorkspaceError(f"Region #{region_id}: a label cannot be empty; type the class name, e.g. 'car'.")
        return self._act("relabel", region_id, lambda state: state | {"label": label}, expected_version,
                         relabel=True)[0]  # fmt: skip

    def move(self, region_id: int, xyxy: Sequence[float], expected_version: int | None = None) -> RegionRow:
        """Move / resize a region's box (clipped to the image); its polygons and quad follow the box."""
        with self._lock:
            current = self._get(self._conn, region_id)
            row = self._image_row(self._conn, current.image_id)
        box = list(validate_box(xyxy, (int(row["width"]), int(row["height"]))).box)

        def moved(state: dict[str, Any]) -> dict[str, Any]:
            old = state["xyxy"]
            return state | {"xyxy": box, "polygons": [_transform(p, old, box) for p in state["polygons"]],
                            "quad": _transform(state["quad"], old, box) if state["quad"] else None}  # fmt: skip

        return self._act("move", region_id, moved, expected_version)[0]

    def delete(self, region_ids: int | Sequence[int], expected_version: int | Mapping[int, int] | None = None
               ) -> list[RegionRow]:  # fmt: skip
        """Delete regions (a state, so :meth:`undo` brings them back)."""
        return self._act("delete", region_ids, lambda state: state | {"deleted": True}, expected_version)

    def add_region(self, image_id: int, xyxy: Sequence[float], label: str, *,
                   status: ReviewStatus | str = ReviewStatus.ACCEPTED) -> RegionRow:  # fmt: skip
        """A box drawn by hand (no model call), accepted by default: the person drawing it is the reviewer."""
        label = " ".join(str(label or "").split())
        if not label:
            raise WorkspaceError("A drawn region needs a label: pick or type a class, e.g. 'car'.")
        if status not in STATUSES:
            raise WorkspaceError(f"Status {status!r} is not one of {', '.join(STATUSES)}; pass one of those.")
        with self._write() as conn:
            row = self._image_row(conn, image_id)
            box = list(validate_box(xyxy, (int(row["width"]), int(row["height"]))).box)
            label = self._canonical(conn, label)
            self._ensure_label(conn, label)
            cur = conn.execute(
                "INSERT INTO regions (image_id, run_id, label, xyxy, source_task, status) VALUES (?, NULL, ?, ?, ?, ?)",
                (image_id, label, json.dumps(box), HAND_DRAWN_TASK, ReviewStatus(status).value),
            )
            created = self._get(conn, int(cur.lastrowid))
            after = self._state(created)
            self._record(conn, "add_region", [{"region": created.id, "before": after | {"deleted": True},
                                               "after": after, "version": created.version}])  # fmt: skip
            return created

    @staticmethod
    def _state(region: RegionRow) -> dict[str, Any]:
        return {"label": region.label, "xyxy": list(region.xyxy), "polygons": region.polygons, "quad": region.quad,
                "status": region.status.value, "deleted": region.deleted}  # fmt: skip

    def _act(self, action: str, region_ids: int | Sequence[int], change: Callable[[dict], dict],
             expected: int | Mapping[int, int] | None, *, relabel: bool = False) -> list[RegionRow]:  # fmt: skip
        ids = [int(region_ids)] if isinstance(region_ids, int | str) else [int(i) for i in region_ids]
        if not ids:
            return []
        with self._write() as conn:
            changes, out = [], []
            for region_id in ids:
                current = self._get(conn, region_id)
                want = expected.get(region_id) if isinstance(expected, Mapping) else expected
                if want is not None and int(want) != current.version:
                    raise self._conflict(conn, current, int(want))
                if current.deleted:
                    raise WorkspaceError(f"Region #{region_id} ({current.label}) was deleted; undo the deletion "
                                         "to edit it again.")  # fmt: skip
                before = self._state(current)
                after = change(dict(before))
                if relabel:
                    after["label"] = self._canonical(conn, after["label"])
                    if not current.region().is_text:
                        self._ensure_label(conn, after["label"])
                self._apply(conn, region_id, after)
                changes.append({"region": region_id, "before": before, "after": after, "version": current.version + 1})
                out.append(self._get(conn, region_id))
            self._record(conn, action, changes)
            return out

    @staticmethod
    def _apply(conn: sqlite3.Connection, region_id: int, state: Mapping[str, Any]) -> None:
        conn.execute(
            "UPDATE regions SET label = ?, xyxy = ?, polygons = ?, quad = ?, status = ?, deleted = ?, "
            "version = version + 1 WHERE id = ?",
            (state["label"], json.dumps(list(state["xyxy"])), json.dumps(state["polygons"]),
             json.dumps(state["quad"]) if state["quad"] else None, state["status"], int(bool(state["deleted"])),
             region_id),
        )  # fmt: skip

    @staticmethod
    def _record(conn: sqlite3.Connection, action: str, changes: list[dict[str, Any]]) -> None:
        conn.execute("UPDATE events SET state = 'dropped' WHERE state = 'undone'")  # a new action ends the redo branch
        conn.execute("INSERT INTO events (at, action, changes) VALUES (?, ?, ?)", (_now(), action, json.dumps(changes)))

    def _conflict(self, conn: sqlite3.Connection, current: RegionRow, expected: int) -> ConflictError:
        """The refusal, naming what changed since ``expected`` (read from the event log)."""
        what: list[str] = []
        for row in conn.execute("SELECT action, changes FROM events WHERE changes LIKE ? ORDER BY id DESC LIMIT 50",
                                (f'%"region": {current.id},%',)):  # fmt: skip
            for change in json.loads(row["changes"]):
                if change["region"] == current.id and change.get("version", 0) > expected:
                    what.append(_describe(row["action"], change["before"], change["after"]))
        changed = "; ".join(reversed(what)) or f"now at version {current.version}"
        return ConflictError(
            f"Region #{current.id} ({current.label}) was changed by someone else since you loaded it "
            f"(you had version {expected}, it is at {current.version}: {changed}). Nothing was saved: reload the "
            "image's review and make your edit again.",
            region_id=current.id, expected=expected, actual=current.version,
        )  # fmt: skip

    # ---- undo / redo -----------------------------------------------------------------------
    def undo(self) -> Event | None:
        """Undo the last review action (of anyone, in this workspace); None when there is nothing to undo."""
        return self._step("done", "before", "after", "undone", "DESC")

    def redo(self) -> Event | None:
        """Redo the last undone action; None when there is nothing to redo (a new action drops the redo branch)."""
        return self._step("undone", "after", "before", "done", "ASC")

    def _step(self, state: str, target: str, expect: str, new_state: str, order: str) -> Event | None:
        with self._write() as conn:
            row = conn.execute(f"SELECT * FROM events WHERE state = ? ORDER BY id {order} LIMIT 1", (state,)).fetchone()
            if row is None:
                return None
            changes = json.loads(row["changes"])
            for change in changes:
                current = self._get(conn, change["region"])
                if self._state(current) != change[expect]:
                    verb = "undo" if new_state == "undone" else "redo"
                    raise ConflictError(
                        f"Cannot {verb} '{row['action']}': region #{current.id} ({current.label}) was changed since "
                        f"(it is at version {current.version}). Nothing was changed; edit the region directly instead.",
                        region_id=current.id, expected=None, actual=current.version,
                    )  # fmt: skip
            for change in changes:
                self._apply(conn, change["region"], change[target])
            conn.execute("UPDATE events SET state = ? WHERE id = ?", (new_state, row["id"]))
            return Event(int(row["id"]), row["action"], tuple(c["region"] for c in changes), new_state)

    def history(self, limit: int = 100) -> list[Event]:
        """The latest events, newest first (the audit log; ``state`` is done, undone or dropped)."""
        rows = self._read("SELECT * FROM events ORDER BY id DESC LIMIT ?", (int(limit),))
        return [Event(int(r["id"]), r["action"], tuple(c["region"] for c in json.loads(r["changes"])), r["state"])
                for r in rows]  # fmt: skip

    # ---- the queue -------------------------------------------------------------------------
    _SUMMARY = """
        SELECT i.id, i.identity, i.name, i.path, i.width, i.height,
               COALESCE(SUM(r.status = 'pending'), 0) AS pending,
               COALESCE(SUM(r.status = 'accepted'), 0) AS accepted,
               COALESCE(SUM(r.status = 'rejected'), 0) AS rejected,
               MIN(CASE WHEN r.status = 'pending' THEN r.score END) AS min_pending_score,
               (SELECT COUNT(*) FROM runs WHERE runs.image_id = i.id) AS runs
        FROM images i LEFT JOIN regions r ON r.image_id = i.id AND r.deleted = 0
    """

    @staticmethod
    def _summary(row: sqlite3.Row) -> ImageSummary:
        counts = {s: int(row[s]) for s in STATUSES}
        if counts["pending"]:
            status = ImageStatus.PENDING
        elif row["runs"] or counts["accepted"] or counts["rejected"]:
            status = ImageStatus.REVIEWED
        else:
            status = ImageStatus.NEW
        return ImageSummary(int(row["id"]), row["identity"], row["name"], row["path"], int(row["width"]),
                            int(row["height"]), status, counts, int(row["runs"]), row["min_pending_score"])  # fmt: skip

    def image(self, image_id: int) -> ImageSummary:
        rows = self._read(self._SUMMARY + " WHERE i.id = ? GROUP BY i.id", (int(image_id),))
        if not rows:
            raise WorkspaceError(f"Image #{image_id} is not in workspace {self.name!r}; add it first (add_image).")
        return self._summary(rows[0])

    def images(self, *, status: ImageStatus | str | None = None, has_pending: bool | None = None,
               label: str | None = None, low_confidence_first: bool = False) -> list[ImageSummary]:  # fmt: skip
        """The queue, in the order images were added, filtered.

        ``status``: new / pending / reviewed; ``has_pending``: with (True) or
        without (False) pending regions; ``label``: images with a live region of
        that label (mapped through the label set); ``low_confidence_first``: the
        weakest pending region first (images with nothing scored pending last).
        """
        if status is not None and status not in tuple(ImageStatus):
            raise WorkspaceError(f"Image status {status!r} is not one of {', '.join(ImageStatus)}; pass one of those.")
        where, params = "", []
        if label is not None:
            where = " WHERE EXISTS (SELECT 1 FROM regions x WHERE x.image_id = i.id AND x.deleted = 0 AND x.label = ?)"
            params.append(self.canonical_label(label))
        out = [self._summary(r) for r in self._read(self._SUMMARY + where + " GROUP BY i.id ORDER BY i.id", params)]
        if status is not None:
            out = [s for s in out if s.status == status]
        if has_pending is not None:
            out = [s for s in out if bool(s.counts["pending"]) == has_pending]
        if low_confidence_first:
            out.sort(key=lambda s: (s.min_pending_score is None, s.min_pending_score or 0.0, s.id))
        return out

    def progress(self) -> Progress:
        """Images by status and live regions by status; ``str()`` is "37 / 120 reviewed"."""
        summaries = self.images()
        images = {s.value: sum(1 for i in summaries if i.status == s) for s in ImageStatus}
        regions = {s: sum(i.counts[s] for i in summaries) for s in STATUSES}
        return Progress(images[ImageStatus.REVIEWED], len(summaries), images, regions)

    # ---- outputs -----------------------------------------------------------------------------
    def labeled_images(self, *, include_unreviewed: bool = False) -> list[LabeledImage]:
        """Every reviewed image (and any with accepted regions) with its accepted, live regions, for the exporters.

        A reviewed image with nothing accepted is kept (a true negative); an
        image still pending keeps only what was accepted so far; a new image is
        left out unless ``include_unreviewed``. Export with
        ``classes=workspace.class_names()`` so ids follow the label set.
        """
        out = []
        for summary in self.images():
            if not (summary.status == ImageStatus.REVIEWED or summary.counts["accepted"] or include_unreviewed):
                continue
            with self._lock:
                image = self._image_row(self._conn, summary.id)
                run = self._conn.execute("SELECT model, revision FROM runs WHERE image_id = ? ORDER BY id DESC LIMIT 1",
                                         (summary.id,)).fetchone()  # fmt: skip
            accepted = [r.region() for r in self.regions(summary.id) if r.status == ReviewStatus.ACCEPTED]
            item = LabeledImage(width=summary.width, height=summary.height, regions=accepted, name=image["name"],
                                image_path=image["path"], image_data=image["data"],
                                model=run["model"] if run else None, revision=run["revision"] if run else None)  # fmt: skip
            out.append(item)
        return out


def _describe(action: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """One event's change in words ("status pending → rejected"), for conflict messages."""
    if after.get("deleted") and not before.get("deleted"):
        return "deleted"
    parts = []
    if before.get("status") != after.get("status"):
        parts.append(f"status {before.get('status')} → {after.get('status')}")
    if before.get("label") != after.get("label"):
        parts.append(f"label {before.get('label')!r} → {after.get('label')!r}")
    if before.get("xyxy") != after.get("xyxy"):
        parts.append(f"box moved to {[round(v, 1) for v in after['xyxy']]}")
    if before.get("deleted") and not after.get("deleted"):
        parts.append("restored")
    return ", ".join(parts) or action


__all__ = ["HAND_DRAWN_TASK", "Event", "ImageStatus", "ImageSummary", "ImportReport", "LabelClass", "Progress",
           "RegionRow", "Workspace"]  # fmt: skip
