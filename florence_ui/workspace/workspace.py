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
  so ids agree across images and across exports. Free-text regions
  (descriptions, OCR lines) are not categories and stay out of it.
* **the label set decides what is a class**: a phrase maps onto it by a class's
  name, then a synonym (case-insensitive). While no person has defined a class
  (``origin`` 'user': :meth:`Workspace.add_label`, :meth:`Workspace.set_label_set`),
  a category the model names is appended the first time it is seen (origin
  'seen'). Once a person has defined one, a model phrase that matches nothing
  keeps its phrase as the region's label but does not join the set: it is
  *unmatched* (:meth:`Workspace.unmatched_labels`, ``images(unmatched=True)``,
  fixed in bulk with :meth:`Workspace.relabel_all`). A label a person types
  (a drawn box, a relabel) always joins the set, as 'user' once the set is curated.
* **duplicates across runs** (OD, open-vocabulary and grounding boxes of one
  object) are merged in one action: :meth:`Workspace.merge_duplicates` (its
  docstring holds the rule).
* **a file that cannot be written** opens read-only (``ws.readonly``): reads
  and exports work, every write raises a :class:`WorkspaceError` saying so.
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

import numpy as np
import supervision as sv
from PIL import Image, UnidentifiedImageError

from florence_ui.core.fields import SOURCE_TASK  # the column is named after the field
from florence_ui.core.geometry import validate_box
from florence_ui.core.images import image_identity, open_image
from florence_ui.core.labels import LabeledImage, Region, regions_from_result
from florence_ui.core.review import STATUSES, ReviewStatus
from florence_ui.core.tasks import DEFAULT_TASK, TASKS, get_task
from florence_ui.errors import ConflictError, ImageLoadError, WorkspaceError
from florence_ui.workspace import folders
from florence_ui.workspace.store import (
    BUSY_TIMEOUT_MS,
    DATA_ENV,
    MIGRATIONS,
    Migration,
    check_name,
    is_readonly_error,
    open_store,
    workspace_path,
)

#: the task a hand-drawn box is recorded under: plain detection (a category label, a box)
HAND_DRAWN_TASK = DEFAULT_TASK.token
#: the region fields a review action changes, and so what an event's before / after hold
_STATE = ("label", "xyxy", "polygons", "quad", "status", "deleted")
#: tasks whose region labels are free text (descriptions, OCR): never classes, never unmatched, never merged
_TEXT_TASKS = tuple(t.token for t in TASKS if t.free_text_labels)
_NOT_TEXT = f"source_task NOT IN ({', '.join('?' * len(_TEXT_TASKS))})"
#: a live category region whose label is no class name of the label set (alias ``x``; params: _TEXT_TASKS)
_UNMATCHED = ("x.deleted = 0 AND x.label != '' AND x." + _NOT_TEXT +
              " AND x.label NOT IN (SELECT name FROM labels)")  # fmt: skip
#: how many sources :meth:`Workspace.add_images` writes per transaction (a crash loses at most one chunk's work,
#: and other writers wait for one chunk, not for the whole folder)
ADD_CHUNK = 64
#: the thumbnail sizes (longest side, px) :meth:`Workspace.thumbnail` makes
THUMBNAIL_MIN, THUMBNAIL_MAX = 16, 1024


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
    #: 'user' (a person defined it) or 'seen' (appended because the model named it)
    origin: str = "seen"


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


@dataclass(frozen=True)
class DuplicateGroup:
    """Regions of one object: ``keep`` stays, ``duplicates`` are what :meth:`Workspace.merge_duplicates` deletes."""

    #: the class they share, mapped onto the label set (the phrase itself when it matches no class)
    label: str
    keep: RegionRow
    duplicates: tuple[RegionRow, ...]

    @property
    def region_ids(self) -> tuple[int, ...]:
        return (self.keep.id, *(d.id for d in self.duplicates))


@dataclass
class AddReport:
    """What :meth:`Workspace.add_images` / :meth:`Workspace.add_folder` did."""

    #: sources given (for a folder: image files found)
    total: int = 0
    #: the image id of every source that could be read, in order (new or already there)
    ids: list[int] = field(default_factory=list)
    added: int = 0
    #: sources whose bytes were already in the workspace (or earlier in the same call): nothing added
    already_there: int = 0
    #: one sentence per source that was not added (unreadable, not an image, a link out of the allowed root)
    skipped: list[str] = field(default_factory=list)
    #: files of a folder without an image extension (ignored, not errors)
    not_images: int = 0

    def summary(self) -> str:
        text = f"{self.total} images: {self.added} added, {self.already_there} already in the workspace"
        return text + (f", {len(self.skipped)} skipped" if self.skipped else "")


@dataclass(frozen=True)
class _Probe:
    """An image read and measured outside any transaction, ready to insert."""

    identity: str
    name: str
    path: str | None
    data: bytes | None
    width: int
    height: int


def _probe(source: str | Path | bytes, name: str | None) -> _Probe:
    """Identity and size of a source (reads the file once for the hash, the header for the size)."""
    if isinstance(source, bytearray | memoryview):
        source = bytes(source)
    identity = image_identity(source)
    width, height = _size(source)
    if isinstance(source, bytes):
        return _Probe(identity, name or f"image-{identity[:12]}.png", None, source, width, height)
    return _Probe(identity, name or Path(source).name, str(Path(source).resolve()), None, width, height)


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split())


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

    def __init__(self, path: str | Path, *, name: str | None = None, migrations: Sequence[Migration] = MIGRATIONS,
                 readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS):  # fmt: skip
        self.path = Path(path)
        self.name = name or self.path.stem
        store = open_store(self.path, migrations, readonly=readonly, busy_timeout_ms=busy_timeout_ms)
        self._conn = store.conn
        #: True when opened read-only (asked for, or the file could not be written): every write raises
        self.readonly = store.readonly
        #: why it is read-only, a sentence; None when writable
        self.readonly_reason = store.reason
        self._lock = threading.RLock()

    @classmethod
    def open(cls, name: str, root: str | Path | None = None, *, readonly: bool = False) -> Workspace:
        """Open or create workspace ``name`` under the data folder (``root`` replaces ``FLORENCE_UI_DATA``).

        ``readonly``: never write (an existing file only). A file that cannot be
        written is opened read-only without being asked; check ``readonly``.
        """
        return cls(workspace_path(check_name(name), root), name=name, readonly=readonly)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions ---------------------------------------------------------------------
    def _readonly_error(self, detail: object = None) -> WorkspaceError:
        why = self.readonly_reason or detail or "SQLite refused to write it"
        return WorkspaceError(
            f"Workspace {self.name!r} ({self.path}) is read-only: {why}. Nothing was saved; fix the file's or its "
            f"folder's permissions, or copy it to a writable folder (set {DATA_ENV} there), and open it again."
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the lock is taken before anything is read, so check + write is atomic."""
        if self.readonly:
            raise self._readonly_error()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_readonly_error(exc):
                    raise self._readonly_error(exc) from exc
                raise WorkspaceError(
                    f"The workspace file {self.path} is locked by another program ({exc}); try again, or close "
                    "the other florence-ui using it."
                ) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._conn.execute("ROLLBACK")
                if is_readonly_error(exc):  # the filesystem went read-only under us
                    raise self._readonly_error(exc) from exc
                raise
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def change_mark(self) -> int:
        """A number that grows with every change anyone makes to this workspace (one cheap read).

        Triggers on images, runs, regions, events and labels count every row
        written, by any process, undo and redo included; thumbnails do not
        count. A page keeps the mark it drew at and redraws when it differs.
        """
        return int(self._read("SELECT n FROM changes WHERE id = 1")[0]["n"])

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ---- images and runs ----------------------------------------------------------------
    def add_image(self, source: str | Path | bytes, *, name: str | None = None) -> int:
        """Add an image (a file, kept where it is, or its bytes, stored); returns its id. Idempotent by identity."""
        with self._write() as conn:
            return self._add_image(conn, source, name)[0]

    def add_images(self, sources: Sequence[str | Path | bytes], *, names: Sequence[str | None] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> AddReport:  # fmt: skip
        """Add many images (files kept where they are, bytes stored), in chunks of :data:`ADD_CHUNK` per transaction.

        Files are read and measured outside the transaction; one that cannot be
        read (missing, not an image) is reported in ``skipped`` and the rest go
        on. The same bytes twice (here or already in the workspace) are one
        image, counted in ``already_there``. ``progress(done, total)`` is called
        at the start and after each chunk is committed.
        """
        if self.readonly:
            raise self._readonly_error()
        sources = list(sources)
        names = list(names) if names is not None else [None] * len(sources)
        if len(names) != len(sources):
            raise WorkspaceError(f"add_images got {len(sources)} images but {len(names)} names; pass one name each.")
        report = AddReport(total=len(sources))
        if progress:
            progress(0, len(sources))
        for start in range(0, len(sources), ADD_CHUNK):
            probes = []
            for i in range(start, min(start + ADD_CHUNK, len(sources))):
                source, name = sources[i], names[i]
                what = str(source) if isinstance(source, str | Path) else (name or f"upload #{i + 1}")
                try:
                    probes.append(_probe(source, name))
                except ImageLoadError as exc:
                    report.skipped.append(f"{what}: {exc}")
                except OSError as exc:
                    report.skipped.append(f"{what}: cannot be read ({exc.strerror or exc}).")
            with self._write() as conn:
                for probe in probes:
                    image_id, new = self._insert_probe(conn, probe)
                    report.ids.append(image_id)
                    report.added += int(new)
                    report.already_there += int(not new)
            if progress:
                progress(min(start + ADD_CHUNK, len(sources)), len(sources))
        return report

    def add_folder(self, folder: str | Path, *, allowed_root: str | Path, recursive: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> AddReport:  # fmt: skip
        """Add every image file of a folder on the server, which must lie inside ``allowed_root``.

        The rules (where a folder may be, which files are images, links) are
        :func:`florence_ui.workspace.folders.scan_folder`'s; a folder outside
        the root is refused with a :class:`WorkspaceError`. Images are named by
        their path relative to the folder and added in sorted order.
        """
        if self.readonly:
            raise self._readonly_error()
        scan = folders.scan_folder(folder, allowed_root=allowed_root, recursive=recursive)
        report = self.add_images(scan.files, names=[f.relative_to(scan.folder).as_posix() for f in scan.files],
                                 progress=progress)  # fmt: skip
        report.skipped[:0] = scan.skipped
        report.total += len(scan.skipped)
        report.not_images = scan.not_images
        return report

    def _insert_probe(self, conn: sqlite3.Connection, probe: _Probe) -> tuple[int, bool]:
        row = conn.execute("SELECT id FROM images WHERE identity = ?", (probe.identity,)).fetchone()
        if row is not None:
            return int(row["id"]), False
        cur = conn.execute(
            "INSERT INTO images (identity, name, path, data, width, height, added) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (probe.identity, probe.name, probe.path, probe.data, probe.width, probe.height, _now()),
        )
        return int(cur.lastrowid), True

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
                self._ensure_label(conn, label, person=False)
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
        """Add a class (at the end: its position is its class id) or set an existing one's synonyms.

        A class added here is a person's ('user'): from then on the model's
        phrases that match no class stay unmatched instead of joining the set.
        """
        name = _norm(name)
        if not name:
            raise WorkspaceError("A label set class needs a name: pass a non-empty label, e.g. 'car'.")
        with self._write() as conn:
            self._ensure_label(conn, name, person=True)
            conn.execute("UPDATE labels SET synonyms = ?, origin = 'user' WHERE name = ?",
                         (json.dumps([_norm(s) for s in synonyms if _norm(s)]), name))  # fmt: skip
        return next(c for c in self.label_set() if c.name == name)

    def set_label_set(self, classes: Sequence[tuple[str, Sequence[str]]]) -> list[LabelClass]:
        """Replace the label set with ``[(name, synonyms), ...]``, in this order (class id = position), all 'user'.

        Names must differ (case-insensitive) and a synonym may belong to one
        class only and be no other class's name, else nothing changes and a
        :class:`WorkspaceError` says which. Regions are not relabelled: one whose
        label left the set is unmatched (:meth:`unmatched_labels`). Not an undoable
        review action: the label set is configuration.
        """
        cleaned: list[tuple[str, list[str]]] = []
        owner: dict[str, str] = {}
        for item in classes:
            name, synonyms = (item, ()) if isinstance(item, str) else item
            name = _norm(name)
            if not name:
                raise WorkspaceError(
                    "A label set class needs a name: remove the empty row or type a class, e.g. 'car'."
                )
            if name.casefold() in owner:
                raise WorkspaceError(f"The label set names {name!r} twice (or as a synonym of {owner[name.casefold()]!r}); "
                                     "keep one.")  # fmt: skip
            owner[name.casefold()] = name
            cleaned.append((name, [s for s in dict.fromkeys(_norm(s) for s in synonyms) if s]))
        for name, synonyms in cleaned:
            for synonym in synonyms:
                other = owner.get(synonym.casefold())
                if other is not None and other != name:
                    raise WorkspaceError(f"Synonym {synonym!r} of {name!r} is also {other!r} (a class or one of its "
                                         "synonyms); a phrase can map onto one class only, remove one of them.")  # fmt: skip
                owner[synonym.casefold()] = name
        with self._write() as conn:
            conn.execute("DELETE FROM labels")
            for position, (name, synonyms) in enumerate(cleaned):
                conn.execute("INSERT INTO labels (name, synonyms, position, origin) VALUES (?, ?, ?, 'user')",
                             (name, json.dumps(synonyms), position))  # fmt: skip
        return self.label_set()

    def remove_label(self, name: str) -> list[int]:
        """Take a class out of the label set; later classes move up one (ids stay dense: 0, 1, 2, ...).

        Returns the ids of the live regions that still carry the name: they keep
        it and are now unmatched (relabel them with :meth:`relabel_all`). Export
        ids of the classes after it change, so remove before exporting, not between
        exports that must agree. Raises a :class:`WorkspaceError` for a name not in the set.
        """
        name = _norm(name)
        with self._write() as conn:
            row = conn.execute("SELECT name FROM labels WHERE name = ?", (self._canonical(conn, name),)).fetchone()
            if row is None:
                raise WorkspaceError(f"{name!r} is not in the label set ({', '.join(self._names(conn)) or 'empty'}); "
                                     "nothing was removed.")  # fmt: skip
            self._drop_label(conn, row["name"])
            rows = conn.execute("SELECT id FROM regions x WHERE x.label = ? AND " + _UNMATCHED + " ORDER BY id",
                                (row["name"], *_TEXT_TASKS)).fetchall()  # fmt: skip
            return [int(r["id"]) for r in rows]

    @staticmethod
    def _drop_label(conn: sqlite3.Connection, name: str) -> None:
        conn.execute("DELETE FROM labels WHERE name = ?", (name,))
        conn.execute("UPDATE labels SET position = -1 - position")  # UNIQUE(position): renumber via negatives
        conn.execute("UPDATE labels SET position = (SELECT COUNT(*) FROM labels o WHERE o.position > labels.position)")

    @staticmethod
    def _names(conn: sqlite3.Connection) -> list[str]:
        return [r["name"] for r in conn.execute("SELECT name FROM labels ORDER BY position")]

    def label_set(self) -> list[LabelClass]:
        rows = self._read("SELECT name, synonyms, position, origin FROM labels ORDER BY position")
        return [LabelClass(r["name"], tuple(json.loads(r["synonyms"])), int(r["position"]), r["origin"]) for r in rows]

    def class_names(self) -> list[str]:
        """The label set in class-id order: what every export of this workspace numbers its classes by."""
        return [c.name for c in self.label_set()]

    def export_classes(self) -> list[str]:
        """:meth:`class_names`, then every unmatched label an accepted live region carries, in first-seen order.

        What to pass an exporter as ``classes``: the label set keeps its ids and
        nothing accepted is lost (an accepted unmatched region is exported under
        its phrase, after the label set). With ``class_names()`` alone the
        exporters append those phrases too, sorted by name.
        """
        rows = self._read("SELECT x.label FROM regions x WHERE x.status = 'accepted' AND " + _UNMATCHED +
                          " GROUP BY x.label ORDER BY MIN(x.id)", _TEXT_TASKS)  # fmt: skip
        return self.class_names() + [r["label"] for r in rows]

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
    def _curated(conn: sqlite3.Connection) -> bool:
        """Has a person defined a class? Then the model's unknown phrases stay unmatched."""
        return conn.execute("SELECT 1 FROM labels WHERE origin = 'user' LIMIT 1").fetchone() is not None

    def _ensure_label(self, conn: sqlite3.Connection, name: str, *, person: bool) -> None:
        """Append ``name`` (already canonical) to the label set unless the rule in the module docstring says not.

        The model's phrase (``person=False``) joins only while no person defined
        a class; a person's label always joins, as 'user' once the set is curated
        (so drawing one box in a fresh workspace does not curate it).
        """
        if not name.strip() or conn.execute("SELECT 1 FROM labels WHERE name = ?", (name,)).fetchone():
            return
        curated = self._curated(conn)
        if curated and not person:
            return
        conn.execute("INSERT INTO labels (name, position, origin) "
                     "VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM labels), ?)",
                     (name, "user" if curated else "seen"))  # fmt: skip

    def _add_synonym(self, conn: sqlite3.Connection, target: str, phrase: str) -> None:
        """Make ``phrase`` map onto class ``target`` from now on (moved from any class that had it).

        A phrase that is itself a class name would win over any synonym: a
        'seen' class of that name (one the model named) is dropped from the set,
        a 'user' class stays and no synonym is added.
        """
        folded = phrase.casefold()
        if folded == target.casefold():
            return
        named = [r for r in conn.execute("SELECT name, origin FROM labels") if r["name"].casefold() == folded]
        if any(r["origin"] == "user" for r in named):
            return
        for row in named:
            self._drop_label(conn, row["name"])
        for row in conn.execute("SELECT name, synonyms FROM labels").fetchall():
            synonyms = [s for s in json.loads(row["synonyms"]) if s.casefold() != folded]
            if row["name"] == target:
                synonyms.append(phrase)
            if synonyms != json.loads(row["synonyms"]):
                conn.execute("UPDATE labels SET synonyms = ? WHERE name = ?", (json.dumps(synonyms), row["name"]))

    def unmatched_labels(self) -> dict[str, int]:
        """Phrases of live category regions that are no class name → how many live regions carry each.

        Phrases differing only in case are one entry (the first-seen spelling),
        as :meth:`relabel_all` treats them; most common first, then first seen.
        Empty while no person has defined a class, unless a class was removed.
        """
        rows = self._read("SELECT x.label, COUNT(*) AS n, MIN(x.id) AS first FROM regions x WHERE " + _UNMATCHED +
                          " GROUP BY x.label ORDER BY first", _TEXT_TASKS)  # fmt: skip
        out: dict[str, int] = {}
        spelling: dict[str, str] = {}
        for row in rows:
            key = spelling.setdefault(row["label"].casefold(), row["label"])
            out[key] = out.get(key, 0) + int(row["n"])
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def relabel_all(self, phrase: str, to: str, *, add_synonym: bool = True) -> int:
        """Relabel every live category region labelled ``phrase`` (case-insensitive) to ``to``: one undoable event.

        ``to`` is mapped onto the label set and joins it when new (a person's
        label). ``add_synonym`` records ``phrase`` as a synonym of ``to`` so later
        runs map it by themselves (see :meth:`_add_synonym` for a phrase that is
        a class itself). :meth:`undo` brings the labels back; the synonym stays
        (edit it with :meth:`add_label` / :meth:`set_label_set`). Returns how many
        regions changed.
        """
        phrase, to = _norm(phrase), _norm(to)
        if not phrase or not to:
            raise WorkspaceError(
                "relabel_all needs the phrase to replace and the class to use, e.g. ('wheels', 'wheel')."
            )
        with self._write() as conn:
            target = self._canonical(conn, to)
            labels = [r["label"] for r in conn.execute("SELECT DISTINCT label FROM regions WHERE deleted = 0")
                      if _norm(r["label"]).casefold() == phrase.casefold() and r["label"] != target]  # fmt: skip
            ids = []
            if labels:
                marks = ", ".join("?" * len(labels))
                ids = [int(r["id"]) for r in conn.execute(
                    f"SELECT id FROM regions WHERE deleted = 0 AND label IN ({marks}) AND {_NOT_TEXT} ORDER BY id",
                    (*labels, *_TEXT_TASKS))]  # fmt: skip
            self._ensure_label(conn, target, person=True)
            if add_synonym:  # as the model spelt it, where regions had it
                self._add_synonym(conn, target, labels[0] if labels else phrase)
            return len(self._change(conn, "relabel_all", ids, lambda state: state | {"label": target}, None))

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
            self._ensure_label(conn, label, person=True)
            cur = conn.execute(
                "INSERT INTO regions (image_id, run_id, label, xyxy, source_task, status) VALUES (?, NULL, ?, ?, ?, ?)",
                (image_id, label, json.dumps(box), HAND_DRAWN_TASK, ReviewStatus(status).value),
            )
            created = self._get(conn, int(cur.lastrowid))
            after = self._state(created)
            self._record(conn, "add_region", [{"region": created.id, "before": after | {"deleted": True},
                                               "after": after, "version": created.version}])  # fmt: skip
            return created

    def accept_above(self, image_id: int, threshold: float, *, include_unscored: bool = False) -> list[RegionRow]:
        """Accept every pending live region of the image scoring ``threshold`` or more, in one undoable event.

        ``include_unscored``: also the pending regions without a score (hand-drawn
        ones, tasks Florence-2 gives no score). Accepted and rejected regions are
        left as they are. Returns the regions accepted (none: no event).
        """
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            threshold = math.nan
        if not 0.0 <= threshold <= 1.0:
            raise WorkspaceError(f"accept_above needs a score threshold between 0 and 1, e.g. 0.5 (got {threshold!r}).")
        with self._write() as conn:
            self._image_row(conn, image_id)
            rows = conn.execute("SELECT id FROM regions WHERE image_id = ? AND deleted = 0 AND status = 'pending' "
                                "AND (score >= ? OR (score IS NULL AND ?)) ORDER BY id",
                                (int(image_id), threshold, int(include_unscored))).fetchall()  # fmt: skip
            accepted = ReviewStatus.ACCEPTED.value
            return self._change(conn, "accept_above", [int(r["id"]) for r in rows],
                                lambda state: state | {"status": accepted}, None)  # fmt: skip

    def duplicates(self, image_id: int, *, iou: float = 0.7) -> list[DuplicateGroup]:
        """The groups :meth:`merge_duplicates` would merge, changing nothing ("3 duplicates — merge")."""
        with self._lock:
            return self._duplicate_groups(self._conn, image_id, iou)

    def merge_duplicates(self, image_id: int, *, iou: float = 0.7) -> list[DuplicateGroup]:
        """Merge the image's duplicate regions in ONE review action: :meth:`undo` brings every one back.

        The rule: two live (not deleted), not rejected, category (not free-text,
        not empty-label) regions of the image are duplicates when their labels
        are equal after mapping onto the label set (name, then synonym,
        case-insensitive) and their boxes overlap with IoU ≥ ``iou``
        (``supervision.box_iou_batch``), whatever run, task or hand drew them.
        Within a label, regions are taken in keep order (accepted first, then
        the highest score, then the earliest) and grouped as non-max suppression
        does: each region not yet grouped keeps every ungrouped one overlapping
        it by ≥ ``iou``. The kept region takes the class name when its stored
        label was a synonym; the others are marked deleted. Rejected regions are
        left out: a rejection is a decision, not a copy. Returns the groups as
        they are after the merge (none: nothing changed, no event).
        """
        with self._write() as conn:
            groups = self._duplicate_groups(conn, image_id, iou)
            changes = []
            for group in groups:
                if group.keep.label != group.label:
                    changes.append((group.keep.id, {"label": group.label}))
                changes += [(d.id, {"deleted": True}) for d in group.duplicates]
            updates = dict(changes)
            self._change(conn, "merge_duplicates", [i for i, _ in changes], None, None, updates=updates)
            return [DuplicateGroup(g.label, self._get(conn, g.keep.id), tuple(self._get(conn, d.id) for d in g.duplicates))
                    for g in groups]  # fmt: skip

    def _duplicate_groups(self, conn: sqlite3.Connection, image_id: int, iou: float) -> list[DuplicateGroup]:
        try:
            iou = float(iou)
        except (TypeError, ValueError):
            iou = math.nan
        if not 0.0 < iou <= 1.0:
            raise WorkspaceError(f"The duplicate overlap (IoU) must be above 0 and at most 1, e.g. 0.7 (got {iou!r}).")
        self._image_row(conn, image_id)
        rows = conn.execute(f"SELECT * FROM regions WHERE image_id = ? AND deleted = 0 AND status != 'rejected' "
                            f"AND label != '' AND {_NOT_TEXT} ORDER BY id", (int(image_id), *_TEXT_TASKS))  # fmt: skip
        by_label: dict[str, list[RegionRow]] = {}
        for row in rows.fetchall():
            region = self._region_of(row)
            by_label.setdefault(self._canonical(conn, region.label).casefold(), []).append(region)
        groups = []
        for members in by_label.values():
            if len(members) < 2:
                continue
            members.sort(key=lambda r: (r.status != ReviewStatus.ACCEPTED, r.score is None, -(r.score or 0.0), r.id))
            boxes = np.array([r.xyxy for r in members], dtype=float)
            overlap = sv.box_iou_batch(boxes, boxes)
            taken = [False] * len(members)
            for i, keep in enumerate(members):
                if taken[i]:
                    continue
                taken[i] = True
                same = [j for j in range(i + 1, len(members)) if not taken[j] and overlap[i, j] >= iou]
                for j in same:
                    taken[j] = True
                if same:
                    label = self._canonical(conn, keep.label)
                    groups.append(
                        DuplicateGroup(label, keep, tuple(sorted((members[j] for j in same), key=lambda r: r.id)))
                    )
        return sorted(groups, key=lambda g: g.keep.id)

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
            return self._change(conn, action, ids, change, expected, relabel=relabel)

    def _change(self, conn: sqlite3.Connection, action: str, ids: Sequence[int], change: Callable[[dict], dict] | None,
                expected: int | Mapping[int, int] | None, *, relabel: bool = False,
                updates: Mapping[int, Mapping[str, Any]] | None = None) -> list[RegionRow]:  # fmt: skip
        """Apply ``change`` (or ``updates[id]``) to each region and record one event, in the caller's transaction.

        No ids: nothing changes and no event is recorded.
        """
        if not ids:
            return []
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
            after = change(dict(before)) if change is not None else dict(before) | dict((updates or {})[region_id])
            if relabel:
                after["label"] = self._canonical(conn, after["label"])
                if not current.region().is_text:
                    self._ensure_label(conn, after["label"], person=True)
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

    #: each ImageStatus as a condition on _SUMMARY's columns (the same rule as _summary, so SQL can filter and count)
    _STATUS_SQL = {
        ImageStatus.PENDING: "pending > 0",
        ImageStatus.REVIEWED: "pending = 0 AND (runs > 0 OR accepted > 0 OR rejected > 0)",
        ImageStatus.NEW: "pending = 0 AND runs = 0 AND accepted = 0 AND rejected = 0",
    }

    def images(self, *, status: ImageStatus | str | None = None, has_pending: bool | None = None,
               label: str | None = None, low_confidence_first: bool = False,
               unmatched: bool | None = None) -> list[ImageSummary]:  # fmt: skip
        """The queue, in the order images were added, filtered (all in one SQL query).

        ``status``: new / pending / reviewed; ``has_pending``: with (True) or
        without (False) pending regions; ``label``: images with a live region of
        that label (mapped through the label set); ``unmatched``: with (True) or
        without (False) a live region whose label is in no class
        (:meth:`unmatched_labels`); ``low_confidence_first``: the weakest pending
        region first (images with nothing scored pending last).
        """
        if status is not None and status not in tuple(ImageStatus):
            raise WorkspaceError(f"Image status {status!r} is not one of {', '.join(ImageStatus)}; pass one of those.")
        where: list[str] = []
        params: list[Any] = []
        # non-correlated ``IN (...)``: computed once; a correlated EXISTS made SQLite walk the label index per image
        if label is not None:
            where.append("i.id IN (SELECT x.image_id FROM regions x WHERE x.deleted = 0 AND x.label = ?)")
            params.append(self.canonical_label(label))
        if unmatched is not None:
            where.append("i.id " + ("" if unmatched else "NOT ") + "IN (SELECT x.image_id FROM regions x WHERE "
                         + _UNMATCHED + ")")  # fmt: skip
            params += _TEXT_TASKS
        having = []
        if status is not None:
            having.append(self._STATUS_SQL[ImageStatus(status)])
        if has_pending is not None:
            having.append("pending > 0" if has_pending else "pending = 0")
        sql = self._SUMMARY + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY i.id"
        sql += (" HAVING " + " AND ".join(having) if having else "") + " ORDER BY "
        sql += "min_pending_score IS NULL, min_pending_score, i.id" if low_confidence_first else "i.id"
        return [self._summary(r) for r in self._read(sql, params)]

    def progress(self) -> Progress:
        """Images by status and live regions by status; ``str()`` is "37 / 120 reviewed" (one SQL aggregate)."""
        counts = ", ".join(f"COALESCE(SUM({cond}), 0) AS {s.value}" for s, cond in self._STATUS_SQL.items())
        row = self._read(f"SELECT COUNT(*) AS total, {counts}, COALESCE(SUM(pending), 0) AS r_pending, "
                         "COALESCE(SUM(accepted), 0) AS r_accepted, COALESCE(SUM(rejected), 0) AS r_rejected "
                         f"FROM ({self._SUMMARY} GROUP BY i.id)")[0]  # fmt: skip
        images = {s.value: int(row[s.value]) for s in ImageStatus}
        regions = {s: int(row[f"r_{s}"]) for s in STATUSES}
        return Progress(images[ImageStatus.REVIEWED], int(row["total"]), images, regions)

    # ---- pixels ------------------------------------------------------------------------------
    def _image_source(self, image_id: int) -> tuple[sqlite3.Row, str | bytes]:
        """The image's row and where its bytes are; a file that has gone is a WorkspaceError saying so."""
        row = self._image_row_locked(image_id)
        if row["data"] is not None:
            return row, bytes(row["data"])
        if not row["path"] or not Path(row["path"]).is_file():
            raise WorkspaceError(
                f"Image #{image_id} ({row['name']}) cannot be shown: its file {row['path']} is gone (moved, renamed "
                "or deleted). Put it back there, or add it again from where it is now."
            )
        return row, str(row["path"])

    def _image_row_locked(self, image_id: int) -> sqlite3.Row:
        with self._lock:
            return self._image_row(self._conn, image_id)

    def image_bytes(self, image_id: int) -> bytes:
        """The image's file as it is on disk (or the uploaded bytes stored in the workspace)."""
        row, source = self._image_source(image_id)
        if isinstance(source, bytes):
            return source
        try:
            return Path(source).read_bytes()
        except OSError as exc:
            raise WorkspaceError(f"Image #{image_id} ({row['name']}): its file {source} cannot be read "
                                 f"({exc.strerror or exc}); check its permissions.") from exc  # fmt: skip

    def image_pil(self, image_id: int) -> Image.Image:
        """The image upright in RGB, as the model and the page see it (:func:`~florence_ui.core.images.open_image`)."""
        row, source = self._image_source(image_id)
        try:
            return open_image(source, name=f"Image #{image_id} ({row['name']})")
        except ImageLoadError as exc:
            raise WorkspaceError(f"{exc} (workspace {self.name!r}, from {row['path'] or 'an upload'})") from exc

    def thumbnail(self, image_id: int, size: int = 160) -> bytes:
        """A JPEG of the image fitting ``size`` × ``size``, made on the first request and stored in the workspace.

        Later requests (from any process) read the stored bytes. A read-only
        workspace makes it every time and stores nothing. The file gone: a
        :class:`WorkspaceError` (see :meth:`image_pil`).
        """
        size = int(size)
        if not THUMBNAIL_MIN <= size <= THUMBNAIL_MAX:
            raise WorkspaceError(f"A thumbnail size must be {THUMBNAIL_MIN} to {THUMBNAIL_MAX} pixels (got {size}).")
        stored = self._read("SELECT data FROM thumbnails WHERE image_id = ? AND size = ?", (int(image_id), size))
        if stored:
            return bytes(stored[0]["data"])
        image = self.image_pil(image_id)  # made outside the lock: other calls go on meanwhile
        image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85, optimize=True)
        data = buffer.getvalue()
        if not self.readonly:
            with self._write() as conn:
                conn.execute("INSERT OR REPLACE INTO thumbnails (image_id, size, data) VALUES (?, ?, ?)",
                             (int(image_id), size, data))  # fmt: skip
        return data

    # ---- outputs -----------------------------------------------------------------------------
    def labeled_images(self, *, include_unreviewed: bool = False) -> list[LabeledImage]:
        """Every reviewed image (and any with accepted regions) with its accepted, live regions, for the exporters.

        A reviewed image with nothing accepted is kept (a true negative); an
        image still pending keeps only what was accepted so far; a new image is
        left out unless ``include_unreviewed``. An accepted *unmatched* region
        (its phrase is in no class) is kept under its phrase: nothing accepted is
        lost. Export with ``classes=workspace.export_classes()`` (the label set,
        then those phrases in first-seen order) so ids follow the label set;
        ``class_names()`` works too (the exporters append the phrases sorted).
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


__all__ = ["ADD_CHUNK", "HAND_DRAWN_TASK", "AddReport", "DuplicateGroup", "Event", "ImageStatus", "ImageSummary",
           "ImportReport", "LabelClass", "Progress", "RegionRow", "Workspace"]  # fmt: skip
