"""The workspace page's logic, without gradio: which workspace a browser has open, what it shows, what it did.

A browser's :class:`WorkspaceState` (kept in its :class:`~florence_ui.ui.session.UISession`) holds only plain
data (the workspace's name, the image on screen, what the box editor was last given); the
:class:`~florence_ui.workspace.Workspace` objects themselves (an SQLite connection each) live in one
process-wide registry, shared by every browser that opens the same name, so all of them read and write one file.

Everything a person decides goes straight to the workspace file, so a refresh, a closed tab or a restart loses
nothing; the page is only a view of it. The box editor (``gradio_image_annotation``) reports the whole list of
boxes after each edit, with no ids, so :func:`diff_boxes` works out what changed against the layout the page
sent it (boxes keep their order; a new one is put first; a deleted one leaves a gap).
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florence_ui.core.review import ReviewStatus
from florence_ui.core.tasks import get_task
from florence_ui.errors import WorkspaceError
from florence_ui.workspace import ImageStatus, ImageSummary, RegionRow, Workspace, data_dir

if TYPE_CHECKING:
    from florence_ui.ui.session import UISession

#: the colour of a box by its review state: amber pending, green accepted, red rejected
STATUS_COLORS: dict[str, tuple[int, int, int]] = {
    ReviewStatus.PENDING.value: (245, 158, 11),
    ReviewStatus.ACCEPTED.value: (34, 197, 94),
    ReviewStatus.REJECTED.value: (239, 68, 68),
}
#: what the queue filter offers (value → shown label)
QUEUE_FILTERS = {"all": "All images", "pending": "Has pending", "new": "New (no run yet)", "reviewed": "Reviewed",
                 "unmatched": "Unmatched labels"}  # fmt: skip
#: how many queue entries the page draws at once (the current image is kept inside the window)
QUEUE_WINDOW = 24
#: the keyboard shortcuts, as the page lists them (the page's script maps the same keys)
SHORTCUTS = (("A", "accept the selected region"), ("X", "reject it"), ("J / K", "select the next / previous region"),
             ("N / P", "next / previous image"), ("Ctrl+Z / U", "undo"), ("Ctrl+Shift+Z / Ctrl+Y", "redo"),
             ("Shift+A", "accept every pending region of the image"),
             ("C / D / E / Delete", "editor: create a box / drag / edit label / delete the selected box"))  # fmt: skip
#: where folders may be opened from on this server (unset: the user's home, and only when the app is local)
FOLDER_ROOT_ENV = "FLORENCE_UI_FOLDER_ROOT"


@dataclass
class WorkspaceState:
    """What one browser has open in the workspace tab: plain data only (it is copied per browser)."""

    name: str | None = None
    image_id: int | None = None
    #: the regions the box editor was given, in its order: (region id, version, [x1, y1, x2, y2], label)
    layout: list[tuple[int, int, list[float], str]] = field(default_factory=list)
    selected: int | None = None
    queue_filter: str = "all"
    label_filter: str | None = None
    low_first: bool = False
    show_rejected: bool = False
    #: the workspace's change mark when this browser last drew it (another browser's edit moves it)
    mark: int = 0


class _Registry:
    """One open :class:`Workspace` per (data folder, name), shared by every browser of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], Workspace] = {}

    def get(self, name: str) -> Workspace:
        key = (str(data_dir()), name)
        with self._lock:
            ws = self._open.get(key)
            if ws is None:
                ws = self._open[key] = Workspace.open(name)
            return ws

    def close_all(self) -> None:
        with self._lock:
            for ws in self._open.values():
                ws.close()
            self._open.clear()


REGISTRY = _Registry()


def require(state: WorkspaceState) -> Workspace:
    if not state.name:
        raise WorkspaceError("No workspace is open: type a name (e.g. street-photos) and press Open.")
    return REGISTRY.get(state.name)


def open_workspace(state: WorkspaceState, name: str) -> Workspace:
    """Open (creating) ``name`` for this browser and go to the image last worked on (or the first to review)."""
    name = (name or "").strip()
    ws = REGISTRY.get(name)  # a bad name or a damaged file raises WorkspaceError with the sentence to show
    if state.name != name:
        state.name, state.image_id, state.layout, state.selected = name, None, [], None
    if state.image_id is None:
        state.image_id = last_worked_on(ws)
    return ws


def last_worked_on(ws: Workspace) -> int | None:
    """The image of the latest review action, else the first image still to review, else the first image."""
    for event in ws.history(limit=5):
        for region_id in event.region_ids:
            try:
                return ws.region(region_id).image_id
            except WorkspaceError:
                continue
    queue = ws.images()
    todo = [s for s in queue if s.status != ImageStatus.REVIEWED]
    return (todo or queue)[0].id if queue else None


def summary(ws: Workspace) -> dict[str, Any]:
    """The workspace as ``/workspace_open`` returns it: images, counts by status, label set, progress."""
    progress = ws.progress()
    return {"name": ws.name, "file": str(ws.path), "images": progress.total, "progress": str(progress),
            "images_by_status": progress.images, "regions_by_status": progress.regions,
            "label_set": [{"name": c.name, "synonyms": list(c.synonyms), "id": c.position} for c in ws.label_set()]}  # fmt: skip


# ---- the queue --------------------------------------------------------------------------------------
def queue(ws: Workspace, state: WorkspaceState) -> list[ImageSummary]:
    """The images in the order the filters give (the order next / previous walk)."""
    kind = state.queue_filter
    kwargs: dict[str, Any] = {"low_confidence_first": state.low_first}
    if kind in (ImageStatus.NEW, ImageStatus.REVIEWED):
        kwargs["status"] = kind
    elif kind == "pending":
        kwargs["has_pending"] = True
    elif kind == "unmatched":
        kwargs["unmatched"] = True
    if state.label_filter:
        kwargs["label"] = state.label_filter
    return ws.images(**kwargs)


def step(ws: Workspace, state: WorkspaceState, delta: int) -> int | None:
    """Move to the next (+1) or previous (-1) image of the filtered queue; returns the new image id."""
    items = queue(ws, state)
    if not items:
        raise WorkspaceError("The queue is empty with these filters: choose “All images” or add images.")
    ids = [s.id for s in items]
    if state.image_id in ids:
        index = ids.index(state.image_id) + delta
        if not 0 <= index < len(ids):
            edge = "last" if delta > 0 else "first"
            raise WorkspaceError(f"This is the {edge} image of the queue ({len(ids)} with these filters).")
    else:
        index = 0 if delta > 0 else len(ids) - 1
    go_to(state, ids[index])
    return state.image_id


def go_to(state: WorkspaceState, image_id: int | None) -> None:
    if image_id != state.image_id:
        state.image_id, state.layout, state.selected = image_id, [], None


def progress_markdown(ws: Workspace, state: WorkspaceState, items: Sequence[ImageSummary] | None = None) -> str:
    """The progress line; ``items``: the filtered queue when the caller has it already (one query, not two)."""
    p = ws.progress()
    if not p.total:
        return f"**{ws.name}**: no images yet. Add photos, a server folder or a results.jsonl below."
    where = ""
    items = queue(ws, state) if items is None else items
    ids = [s.id for s in items]
    if state.image_id in ids:
        where = f" · image {ids.index(state.image_id) + 1} of {len(ids)} in this view"
    regions = ", ".join(f"{n} {s}" for s, n in p.regions.items())
    return (f"**{ws.name}** — **{p}** · {p.images.get('pending', 0)} with pending, {p.images.get('new', 0)} new"
            f"{where} · regions: {regions}")  # fmt: skip


def _badge(status: str) -> str:
    return f'<span class="ws-badge ws-{html.escape(status)}">{html.escape(status)}</span>'


def queue_html(ws: Workspace, state: WorkspaceState, items: Sequence[ImageSummary] | None = None) -> str:
    """A window of the queue around the current image: thumbnail, name, status; a click opens the image."""
    items = queue(ws, state) if items is None else items
    if not items:
        return '<div class="ws-queue-empty">No image matches these filters.</div>'
    ids = [s.id for s in items]
    at = ids.index(state.image_id) if state.image_id in ids else 0
    start = max(0, min(at - QUEUE_WINDOW // 3, len(items) - QUEUE_WINDOW))
    cells = []
    for s in items[start : start + QUEUE_WINDOW]:
        try:
            thumb = base64.b64encode(ws.thumbnail(s.id, 96)).decode()
            img = f'<img alt="" loading="lazy" src="data:image/jpeg;base64,{thumb}">'
        except WorkspaceError:
            img = '<div class="ws-missing" title="the image file is missing">?</div>'
        current = " ws-current" if s.id == state.image_id else ""
        pending = f" · {s.counts['pending']} pending" if s.counts["pending"] else ""
        cells.append(
            f'<button class="ws-thumb{current}" data-act="open" data-image="{s.id}" '
            f'title="{html.escape(s.name)}: {s.status}{pending}">{img}'
            f'<span class="ws-thumb-name">{html.escape(s.name)}</span>{_badge(str(s.status))}</button>'
        )
    more = f'<div class="ws-queue-more">{start + 1}–{start + len(cells)} of {len(items)}</div>'
    return f'<div class="ws-queue">{"".join(cells)}</div>{more}'


# ---- the regions of the image ------------------------------------------------------------------------
def live_regions(ws: Workspace, state: WorkspaceState) -> list[RegionRow]:
    return ws.regions(state.image_id) if state.image_id is not None else []


def _task_name(token: str) -> str:
    try:
        return get_task(token).name
    except (KeyError, ValueError):
        return token


def cards_html(ws: Workspace, state: WorkspaceState, regions: Sequence[RegionRow] | None = None) -> str:
    """The review of the current image as cards (they wrap to one column on a phone): one per region."""
    if state.image_id is None:
        return '<div class="ws-empty">Open a workspace and add images to start reviewing.</div>'
    regions = live_regions(ws, state) if regions is None else regions
    classes = ws.class_names()
    if not regions:
        return (f'<div class="ws-cards" data-image="{state.image_id}"><div class="ws-empty">No regions on this '
                "image yet: run a task or “Detect the label set”, or draw a box on the image (Create box, or C, "
                "then drag).</div></div>")  # fmt: skip
    cards = []
    for n, r in enumerate(regions, 1):
        status = r.status.value
        selected = " ws-selected" if r.id == state.selected else ""
        score = f"{r.score:.2f}" if r.score is not None else "—"
        origin = "drawn by hand" if r.hand_drawn else _task_name(r.source_task)
        x1, y1, x2, y2 = (round(v) for v in r.xyxy)
        options = list(classes) if r.label in classes else [r.label, *classes]
        select = "".join(f'<option value="{html.escape(c)}"{" selected" if c == r.label else ""}>{html.escape(c)}'
                         "</option>" for c in options)  # fmt: skip
        unmatched = "" if r.label in classes else ' <span class="ws-unmatched" title="not in the label set">?</span>'
        data = f'data-region="{r.id}" data-version="{r.version}"'
        cards.append(
            f'<div class="ws-card ws-{status}{selected}" {data} data-act="select">'
            f'<div class="ws-card-head"><b>#{n}</b> <span class="ws-label">{html.escape(r.label)}</span>{unmatched}'
            f" {_badge(status)}</div>"
            f'<div class="ws-card-meta">score {score} · {html.escape(origin)} · [{x1}, {y1}, {x2}, {y2}]</div>'
            f'<div class="ws-card-actions">'
            f'<button data-act="accept" {data} title="Accept (A)">✓ Accept</button>'
            f'<button data-act="reject" {data} title="Reject (X)">✗ Reject</button>'
            f'<button data-act="pending" {data} title="Back to pending">↺</button>'
            f'<button data-act="delete" {data} title="Delete the region (undo brings it back)">Delete</button>'
            f'<select data-act="relabel" {data} aria-label="label of region #{n}">{select}</select>'
            "</div></div>"
        )
    return f'<div class="ws-cards" data-image="{state.image_id}">{"".join(cards)}</div>'


def editor_boxes(regions: Sequence[RegionRow], show_rejected: bool = False) -> list[RegionRow]:
    """The regions the box editor shows: every live one with a box (rejected ones only when asked)."""
    return [r for r in regions if show_rejected or r.status != ReviewStatus.REJECTED]


def editor_value(ws: Workspace, state: WorkspaceState, regions: Sequence[RegionRow] | None = None) -> dict | None:
    """The box editor's value for the current image, and the layout it is given (kept in ``state``)."""
    if state.image_id is None:
        state.layout = []
        return None
    regions = live_regions(ws, state) if regions is None else regions
    shown = editor_boxes(regions, state.show_rejected)
    state.layout = [(r.id, r.version, [float(v) for v in r.xyxy], r.label) for r in shown]
    boxes = [{"xmin": r.xyxy[0], "ymin": r.xyxy[1], "xmax": r.xyxy[2], "ymax": r.xyxy[3], "label": r.label,
              "color": STATUS_COLORS[r.status.value]} for r in shown]  # fmt: skip
    return {"image": image_file(ws, state.image_id), "boxes": boxes}


def image_file(ws: Workspace, image_id: int) -> str:
    """A copy of the image under the system temp folder, which the page may serve.

    Gradio only sends files from the working directory, the temp folder and
    ``allowed_paths``; a workspace's photos live anywhere (a server folder, the
    database's own bytes), so each is copied once, as is (never re-encoded),
    to ``<tmp>/florence-ui-workspace/<sha256><suffix>``.
    """
    info = ws.image(image_id)
    cache = Path(tempfile.gettempdir()) / "florence-ui-workspace"
    cache.mkdir(parents=True, exist_ok=True)
    suffix = Path(info.name).suffix.lower() or ".png"
    path = cache / f"{info.identity[:40]}{suffix}"
    if not path.is_file():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(ws.image_bytes(image_id))
        tmp.replace(path)
    return str(path)


@dataclass
class PageParts:
    """Everything the Workspace tab redraws after an action, made from the workspace file."""

    editor: dict[str, Any] | None
    classes: list[str]
    cards: str
    queue: str
    progress: str
    unmatched: list[str]


def render(ws: Workspace, state: WorkspaceState, *, editor: bool = True) -> PageParts:
    """The tab's parts for ``state`` (its current image re-checked: deleted images fall back to the next)."""
    if state.image_id is not None:
        try:
            ws.image(state.image_id)
        except WorkspaceError:
            state.image_id = None
    if state.image_id is None:
        state.image_id = last_worked_on(ws)
    regions = live_regions(ws, state)
    value = editor_value(ws, state, regions) if editor else None
    cards = cards_html(ws, state, regions)
    if state.image_id is not None:
        info = ws.image(state.image_id)
        size = f'data-width="{info.width}" data-height="{info.height}"'
        cards = cards.replace('class="ws-cards"', f'class="ws-cards" {size}', 1)
        cards = f'<div class="ws-image-name"><b>{html.escape(info.name)}</b> — {info.status}</div>{cards}'
    state.mark = ws.change_mark()
    items = queue(ws, state)
    return PageParts(value, ws.class_names(), cards, queue_html(ws, state, items),
                     progress_markdown(ws, state, items), list(ws.unmatched_labels()))  # fmt: skip


# ---- what the editor did ---------------------------------------------------------------------------------
@dataclass
class BoxChanges:
    """The edits one editor event carries, against the layout the page gave it."""

    moved: list[tuple[int, int, list[float]]] = field(default_factory=list)  # (region id, version, new box)
    relabelled: list[tuple[int, int, str]] = field(default_factory=list)  # (region id, version, new label)
    added: list[tuple[list[float], str]] = field(default_factory=list)
    deleted: list[tuple[int, int]] = field(default_factory=list)
    #: a box being drawn (no size or no label yet): nothing to save until it is finished
    unfinished: int = 0

    @property
    def empty(self) -> bool:
        return not (self.moved or self.relabelled or self.added or self.deleted)


def editor_boxes_of(value: dict[str, Any] | None) -> list[tuple[list[float], str]]:
    """The editor's raw payload as ``([x1, y1, x2, y2] image pixels, label)`` in its own order."""
    out = []
    for box in (value or {}).get("boxes") or []:
        try:
            scale = float(box.get("scaleFactor") or 1.0)
            xyxy = [float(box[k]) / scale for k in ("xmin", "ymin", "xmax", "ymax")]
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        x1, x2 = sorted(xyxy[0::2])
        y1, y2 = sorted(xyxy[1::2])
        out.append(([x1, y1, x2, y2], " ".join(str(box.get("label") or "").split())))
    return out


def _same_box(a: Sequence[float], b: Sequence[float], tolerance: float = 1.0) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def diff_boxes(layout: Sequence[tuple[int, int, list[float], str]], boxes: Sequence[tuple[list[float], str]],
               min_size: float = 4.0) -> BoxChanges:  # fmt: skip
    """What changed between the layout the editor was given and the boxes it reports now.

    The editor keeps its boxes in order, puts a new box first and removes a
    deleted one, so: extra boxes at the front are new (finished once they have a
    size and a label), and the rest are walked in step with the layout: a layout
    entry with no matching box left is deleted, a paired entry whose box or label
    differs was moved / resized or relabelled (1 px of rounding is no move).
    """
    changes = BoxChanges()
    extra = len(boxes) - len(layout)
    rest = list(boxes)
    if extra > 0:
        for xyxy, label in rest[:extra]:
            if xyxy[2] - xyxy[0] < min_size or xyxy[3] - xyxy[1] < min_size or not label:
                changes.unfinished += 1
            else:
                changes.added.append((xyxy, label))
        rest = rest[extra:]
    if len(rest) == len(layout):
        pairs = list(zip(layout, rest, strict=True))
    else:  # fewer boxes than given: find which ones are gone, walking both lists in order
        pairs, j = [], 0
        for k, entry in enumerate(layout):
            left_layout, left_boxes = len(layout) - k, len(rest) - j
            if j < len(rest) and (left_boxes >= left_layout or _same_box(entry[2], rest[j][0])):
                pairs.append((entry, rest[j]))
                j += 1
            else:
                changes.deleted.append((entry[0], entry[1]))
    for (region_id, version, old_box, old_label), (xyxy, label) in pairs:
        if not _same_box(old_box, xyxy):
            changes.moved.append((region_id, version, xyxy))
        if label and label != old_label:
            changes.relabelled.append((region_id, version, label))
    return changes


def apply_changes(ws: Workspace, state: WorkspaceState, changes: BoxChanges) -> list[str]:
    """Save an editor event's edits (each checked against the version the page showed); returns what was done."""
    done: list[str] = []
    versions: dict[int, int] = {}  # a box moved and relabelled in one event: the relabel follows the move
    for region_id, version, xyxy in changes.moved:
        versions[region_id] = ws.move(region_id, xyxy, expected_version=version).version
        done.append(f"moved #{region_id}")
    for region_id, version, label in changes.relabelled:
        ws.relabel(region_id, label, expected_version=versions.get(region_id, version))
        done.append(f"relabelled #{region_id} → {label}")
    if changes.deleted:
        ws.delete([r for r, _ in changes.deleted], expected_version=dict(changes.deleted))
        done.append(f"deleted {len(changes.deleted)} region(s)")
    for xyxy, label in changes.added:
        if state.image_id is None:
            break
        created = ws.add_region(state.image_id, xyxy, label)
        state.selected = created.id
        done.append(f"added #{created.id} {created.label}")
    return done


def folder_root(public: bool) -> Path | None:
    """Where this server lets a visitor open folders: ``FLORENCE_UI_FOLDER_ROOT``, else the home folder when
    the app is reachable from this machine only; None (no folders) when it is public and nothing was set."""
    configured = os.environ.get(FOLDER_ROOT_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return None if public else Path.home().resolve()


# ---- the page's actions (buttons, cards, keys) -------------------------------------------------------------
def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _target(ws: Workspace, state: WorkspaceState, data: dict[str, Any]) -> tuple[int, int | None]:
    """The region an action is about (the card's, else the selected one) and the version the page showed."""
    region_id = _int(data.get("region"))
    if region_id is None:
        region_id = state.selected
        version = next((v for r, v, _b, _l in state.layout if r == region_id), None)
    else:
        version = _int(data.get("version"))
    if region_id is None:
        raise WorkspaceError("Select a region first: click its card or its box, or press J to select the next one.")
    return region_id, version


def select_step(regions: Sequence[RegionRow], selected: int | None, delta: int) -> int | None:
    """The region J / K select: the next / previous one, starting from the first pending region."""
    if not regions:
        return None
    ids = [r.id for r in regions]
    if selected not in ids:
        pending = [r.id for r in regions if r.status == ReviewStatus.PENDING]
        return (pending or ids)[0 if delta > 0 else -1]
    return ids[(ids.index(selected) + delta) % len(ids)]


def next_pending(regions: Sequence[RegionRow], after: int) -> int:
    """The pending region after ``after`` in card order (wrapping round), else ``after`` itself."""
    ids = [r.id for r in regions]
    start = ids.index(after) + 1 if after in ids else 0
    ordered = list(regions[start:]) + list(regions[:start])
    return next((r.id for r in ordered if r.status == ReviewStatus.PENDING and r.id != after), after)


def pick(regions: Sequence[RegionRow], x: float, y: float) -> int | None:
    """The region under a click on the image: the smallest box containing the point."""
    inside = [r for r in regions if r.xyxy[0] <= x <= r.xyxy[2] and r.xyxy[1] <= y <= r.xyxy[3]]
    inside.sort(key=lambda r: (r.xyxy[2] - r.xyxy[0]) * (r.xyxy[3] - r.xyxy[1]))
    return inside[0].id if inside else None


def act(ws: Workspace, state: WorkspaceState, data: dict[str, Any]) -> tuple[str, bool]:
    """Carry out one action of the page; returns (what happened, whether the box editor must be redrawn).

    ``data`` is what the page's script sends: ``act`` and, for a card,
    ``region`` / ``version`` (the version the card showed: an edit of a region
    changed since is refused, naming the change) and ``label`` for a relabel.
    """
    action = str(data.get("act") or "")
    if action in ("next", "prev"):
        step(ws, state, 1 if action == "next" else -1)
        return f"Image {ws.image(state.image_id).name}.", True
    if action == "open":
        image_id = _int(data.get("image"))
        if image_id is None:
            raise WorkspaceError("That queue entry has no image id; reload the page.")
        ws.image(image_id)  # a clear error when it is gone
        go_to(state, image_id)
        return f"Image {ws.image(image_id).name}.", True
    if action in ("undo", "redo"):
        event = ws.undo() if action == "undo" else ws.redo()
        if event is None:
            return f"Nothing to {action}.", False
        if event.region_ids:
            image_id = ws.region(event.region_ids[0]).image_id
            go_to(state, image_id)
            state.selected = event.region_ids[0]
        return f"{'Undid' if action == 'undo' else 'Redid'} “{event.action.replace('_', ' ')}”.", True
    if state.image_id is None:
        raise WorkspaceError("No image is open: add images to the workspace, then pick one in the queue.")
    regions = live_regions(ws, state)
    if action in ("select_next", "select_prev"):
        state.selected = select_step(regions, state.selected, 1 if action == "select_next" else -1)
        return "", False
    if action == "pick":
        try:
            state.selected = pick(regions, float(data.get("x")), float(data.get("y")))
        except (TypeError, ValueError):
            state.selected = None
        return "", False
    if action == "accept_all":
        pending = {r.id: r.version for r in regions if r.status == ReviewStatus.PENDING}
        if not pending:
            return "Nothing pending on this image.", False
        ws.set_status(list(pending), ReviewStatus.ACCEPTED, expected_version=pending)
        return f"Accepted {len(pending)} pending region(s).", True
    region_id, version = _target(ws, state, data)
    state.selected = region_id
    if action == "select":
        return "", False
    if action in ("accept", "reject", "pending"):
        status = {"accept": ReviewStatus.ACCEPTED, "reject": ReviewStatus.REJECTED, "pending": ReviewStatus.PENDING}
        row = ws.set_status(region_id, status[action], expected_version=version)[0]
        if action != "pending":  # the next pending region is what a reviewer wants next
            state.selected = next_pending(live_regions(ws, state), region_id)
        return f"#{row.id} {row.label}: {row.status.value}.", True
    if action == "delete":
        row = ws.delete(region_id, expected_version=version)[0]
        state.selected = None
        return f"Deleted #{row.id} {row.label} (Undo brings it back).", True
    if action == "relabel":
        row = ws.relabel(region_id, str(data.get("label") or ""), expected_version=version)
        return f"#{row.id} is now {row.label}.", True
    raise WorkspaceError(f"Unknown action {action!r}; reload the page.")


def keep_in_workspace(session: UISession) -> str:
    """Copy the Prompt page's image, its runs and the decisions taken on them into the open workspace.

    The Prompt page's review lives in the browser session (a refresh loses it);
    this files it where it lasts. Region *n* of run *k* is the *n*-th region the
    workspace stores for that run (both come from ``regions_from_result``), so
    accepted / rejected states and edited labels carry over. Image-level texts
    (captions) are not regions and stay on the Prompt page.
    """
    state = session.workspace
    if state is None or not state.name:
        raise WorkspaceError("No workspace is open: open or create one in the Workspace tab first.")
    if session.image is None or not session.results:
        raise WorkspaceError("Nothing to keep yet: run a task on an image first.")
    ws = require(state)
    data = session.image_data
    if data is None:  # a turned image, or one with no file: its pixels, in the frame its regions are in
        import io

        buffer = io.BytesIO()
        session.image.save(buffer, format="PNG")
        data = buffer.getvalue()
    image_id = ws.add_image(data, name=session.image_name)
    carried = 0
    for run, result in enumerate(session.results, 1):
        region_ids = ws.add_result(image_id, result)
        items = [i for i in session.review.items if i.run == run and i.region is not None]
        for item, region_id in zip(items, region_ids, strict=False):
            if item.label != ws.region(region_id).label and item.label.strip():
                ws.relabel(region_id, item.label)
            if item.status != ReviewStatus.PENDING:
                ws.set_status(region_id, item.status)
                carried += 1
    go_to(state, image_id)
    return (f"Kept {session.image_name} in workspace **{ws.name}**: {len(session.results)} run(s), {carried} "
            "decision(s) carried over. Review it in the Workspace tab.")  # fmt: skip
