"""Drawing Florence-2 answers with supervision's annotators. Pure: PIL in, PIL out, no gradio.

Everything drawable becomes a :class:`Mark` first (from a fresh
``FlorenceResult`` or from the review items of a session), because one picture
mixes kinds that a single ``sv.Detections`` cannot hold together (masks for
segmentation rows, quads for OCR lines, plain boxes). :func:`draw` then groups
the marks and hands each group to the matching annotator:

* masks + outlines (``MaskAnnotator`` + ``PolygonAnnotator``) for segmentation,
* ``OrientedBoxAnnotator`` for OCR quadrilaterals,
* ``BoxAnnotator`` for boxes, ``BoxCornerAnnotator`` for the user's prompt boxes,
* ``RichLabelAnnotator`` (a real font, so accents, ``✓`` and CJK OCR text render) at places chosen by
  :func:`place_labels`: inside the picture, never on top of one another.

Colours come from ``ColorLookup.CLASS`` with the engine's stable class ids, so
"car" has the same colour in every task and every image. Accepted regions are
drawn with a thicker outline, a tint and a ``✓``; pending ones plainly.
Small images are upscaled by an integer factor and line widths / font sizes
grow with the image, so labels stay readable from 64 px icons to 6000 px scans.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image, ImageDraw

from florence_ui.core.fields import CLASS_NAME, POLYGONS, PROMPT_BOX, QUADS
from florence_ui.core.images import to_rgb
from florence_ui.core.review import ACCEPTED, PENDING, ReviewStatus
from florence_ui.core.tasks import get_task

#: images whose longer side is below this are upscaled (integer factor) before drawing
MIN_RENDER_SIDE = 640
PALETTE = sv.ColorPalette.DEFAULT
PROMPT_BOX_COLOR = sv.Color.WHITE
CHECK = "✓ "

_FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    str(Path.home() / ".fonts"),
    str(Path.home() / ".local/share/fonts"),
    "/Library/Fonts",
    "/System/Library/Fonts",
    "C:/Windows/Fonts",
)
_LATIN_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf")
_CJK_FONTS = (
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "DroidSansFallbackFull.ttf",
    "Arial Unicode.ttf",
    "msyh.ttc",
)


@dataclass(eq=False)  # identity semantics: marks hold numpy arrays
class Mark:
    """One thing to draw, in pixels of the original image."""

    xyxy: tuple[float, float, float, float]
    label: str = ""
    class_id: int = 0
    score: float | None = None
    #: segmentation polygons, each an (N, 2) array of pixel points
    polygons: list[np.ndarray] = field(default_factory=list)
    #: OCR quadrilateral, (4, 2)
    quad: np.ndarray | None = None
    #: a boolean (H, W) mask, for masks that came without polygons
    mask: np.ndarray | None = None
    #: the box the user drew, for region tasks
    prompt_box: tuple[float, float, float, float] | None = None
    #: the prompt box's number (1-based) for region tasks, shown as ``#n``
    number: int | None = None
    state: ReviewStatus = PENDING


# ---- fonts and sizes -------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _font_index() -> dict[str, str]:
    """File name → path of every font in the usual font folders (walked once per process)."""
    index: dict[str, str] = {}
    for folder in _FONT_DIRS:
        if os.path.isdir(folder):
            for root, _dirs, files in os.walk(folder):
                for name in files:
                    index.setdefault(name, os.path.join(root, name))
    return index


def _find_font(names: tuple[str, ...]) -> str | None:
    index = _font_index()
    return next((index[name] for name in names if name in index), None)


def _has_cjk(text: str) -> bool:
    return any("\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uff00" <= ch <= "\uffef" for ch in text)


def font_for(texts: Iterable[str]) -> str | None:
    """A TrueType font that covers the labels: a CJK one when needed, else DejaVu/Noto; None = PIL's own."""
    env = os.environ.get("FLORENCE_UI_FONT")
    if env and os.path.isfile(env):
        return env
    if any(_has_cjk(t) for t in texts):
        found = _find_font(_CJK_FONTS)
        if found:
            return found
    return _find_font(_LATIN_FONTS)


def upscale_factor(size: tuple[int, int], min_side: int = MIN_RENDER_SIDE) -> int:
    """Integer factor that brings the longer side of a small image up to ``min_side``."""
    longest = max(1, max(size))
    return 1 if longest >= min_side else math.ceil(min_side / longest)


@dataclass(frozen=True)
class Style:
    """Line widths and font size for one picture size (so drawings look alike at any size)."""

    thickness: int
    font_size: int
    padding: int

    @classmethod
    def for_size(cls, size: tuple[int, int]) -> Style:
        longest = max(size)
        font = max(13, round(longest / 48))
        return cls(thickness=max(2, round(longest / 350)), font_size=font, padding=max(3, font // 3))


def _text_palette(palette: sv.ColorPalette) -> sv.ColorPalette:
    """Black or white text per background colour, whichever reads better."""
    out = []
    for c in palette.colors:
        luminance = 0.299 * c.r + 0.587 * c.g + 0.114 * c.b
        out.append(sv.Color.BLACK if luminance > 150 else sv.Color.WHITE)
    return sv.ColorPalette(out)


TEXT_PALETTE = _text_palette(PALETTE)


# ---- building marks ---------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def marks_from_result(result: Any) -> list[Mark]:
    """Every row of a ``FlorenceResult`` as a pending mark (region tasks numbered by box)."""
    det: sv.Detections = result.detections
    spec = get_task(result.task)
    marks: list[Mark] = []
    for i in range(len(det)):
        polygons = []
        if POLYGONS in det.data:
            polygons = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in det.data[POLYGONS][i]]
        quad = np.asarray(det.data[QUADS][i], dtype=np.float32).reshape(4, 2) if QUADS in det.data else None
        prompt = tuple(float(v) for v in det.data[PROMPT_BOX][i]) if PROMPT_BOX in det.data else None
        class_id = int(det.class_id[i]) if det.class_id is not None else 0
        marks.append(
            Mark(
                xyxy=tuple(float(v) for v in det.xyxy[i]),
                label=str(det.data.get(CLASS_NAME, [""] * len(det))[i]),
                class_id=max(0, class_id),
                score=_num(det.confidence[i]) if det.confidence is not None else None,
                polygons=polygons,
                quad=quad,  # segmentation rows are drawn from their polygons (results hold no masks)
                prompt_box=prompt,
                number=i + 1 if spec.needs_boxes else None,
            )
        )
    return marks


def marks_from_items(
    items: Sequence[Any],
    class_id_for: Callable[[str], int],
    prompt_boxes: dict[int, list[list[float]]] | None = None,
) -> list[Mark]:
    """Review items (``review.ReviewItem``) with a region → marks in their review state.

    A region task's mark is numbered with the box its region answers
    (``Region.box_index``, fixed when the answer arrived), never by its place
    in ``items``: the caller filters items (rejected, latest run, accepted
    only) and a count over what is left would give box #3's answer the label
    "#2" and box #2's prompt bracket. ``prompt_boxes`` maps a run number to
    the boxes the user drew for it, so that answer shows its own box.
    """
    marks: list[Mark] = []
    for item in items:
        region = item.region
        if region is None:
            continue
        number = None
        prompt = None
        if get_task(region.source_task).needs_boxes and region.box_index is not None:
            number = int(region.box_index)
            boxes = (prompt_boxes or {}).get(item.run) or []
            if 1 <= number <= len(boxes):
                prompt = tuple(float(v) for v in boxes[number - 1])
        marks.append(
            Mark(
                xyxy=tuple(float(v) for v in region.xyxy),
                label=region.label,
                class_id=max(0, int(class_id_for(region.label))),
                score=region.score,
                polygons=[np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in region.polygons if len(p) >= 6],
                quad=np.asarray(region.quad, dtype=np.float32).reshape(4, 2) if region.quad else None,
                prompt_box=prompt,
                number=number,
                state=ACCEPTED if item.status == ACCEPTED else PENDING,
            )
        )
    return marks


# ---- drawing ----------------------------------------------------------------------------------
def label_text(mark: Mark, show_scores: bool = True) -> str:
    """``✓ #2 car 0.91``: accepted tick, box number, label, confidence."""
    parts = []
    if mark.number is not None:
        parts.append(f"#{mark.number}")
    if mark.label:
        parts.append(mark.label)
    if show_scores and mark.score is not None:
        parts.append(f"{mark.score:.2f}")
    text = " ".join(parts)
    return (CHECK + text) if text and mark.state == ACCEPTED else text


def describe(marks: Sequence[Mark], show_scores: bool = True) -> str:
    """The picture in words, one label per drawn mark (``✓ #2 car 0.91; #3 wheel``): the result image's alt
    text, so screen readers (and browser tests) read exactly the labels :func:`draw` puts on the picture."""
    texts = [label_text(m, show_scores) or "(unlabelled region)" for m in marks]
    if not texts:
        return "Result image: no regions drawn."
    return f"Result image, {len(texts)} region{'s' if len(texts) != 1 else ''} drawn: " + "; ".join(texts)


def _detections(marks: Sequence[Mark], factor: int) -> sv.Detections:
    det = sv.Detections(xyxy=np.array([m.xyxy for m in marks], dtype=np.float32).reshape(-1, 4) * factor)
    det.class_id = np.array([m.class_id for m in marks], dtype=int)
    return det


def _mask(mark: Mark, size: tuple[int, int], factor: int) -> np.ndarray:
    width, height = size
    if mark.polygons:
        mask = np.zeros((height, width), dtype=bool)
        for poly in mark.polygons:
            points = (poly * factor).round().astype(np.int32)
            mask |= sv.polygon_to_mask(points, (width, height)).astype(bool)
        return mask
    mask = np.asarray(mark.mask, dtype=bool)
    if factor > 1:
        mask = mask.repeat(factor, axis=0).repeat(factor, axis=1)
    return mask[:height, :width]


def draw(
    image: Image.Image,
    marks: Sequence[Mark],
    *,
    show_scores: bool = True,
    show_prompt_boxes: bool = True,
    min_side: int = MIN_RENDER_SIDE,
) -> Image.Image:
    """Draw marks on a copy of ``image``; returns an RGB image (upscaled if the input is small)."""
    base = to_rgb(image)
    factor = upscale_factor(base.size, min_side)
    if factor > 1:
        base = base.resize((base.width * factor, base.height * factor), Image.Resampling.LANCZOS)
    size = base.size
    style = Style.for_size(size)
    scene = np.ascontiguousarray(np.asarray(base)[:, :, ::-1])  # supervision draws on BGR arrays
    t = style.thickness

    segs = [m for m in marks if m.polygons or m.mask is not None]
    quads = [m for m in marks if m.quad is not None and m not in segs]
    boxes = [m for m in marks if m not in segs and m not in quads]

    for state, opacity in ((PENDING, 0.35), (ACCEPTED, 0.55)):
        group = [m for m in segs if m.state == state]
        if group:
            det = _detections(group, factor)
            det.mask = np.stack([_mask(m, size, factor) for m in group])
            scene = sv.MaskAnnotator(color=PALETTE, opacity=opacity).annotate(scene, det)
            width = t if state == PENDING else 2 * t
            scene = sv.PolygonAnnotator(color=PALETTE, thickness=width).annotate(scene, det)
    tinted = [m for m in boxes + quads if m.state == ACCEPTED]
    if tinted:
        scene = sv.ColorAnnotator(color=PALETTE, opacity=0.18).annotate(scene, _detections(tinted, factor))
    for state, width in ((PENDING, t), (ACCEPTED, 2 * t)):
        group = [m for m in quads if m.state == state]
        if group:
            det = _detections(group, factor)
            det.data[QUADS] = np.stack([m.quad * factor for m in group]).astype(np.float32)
            scene = sv.OrientedBoxAnnotator(color=PALETTE, thickness=width).annotate(scene, det)
        group = [m for m in boxes if m.state == state]
        if group:
            scene = sv.BoxAnnotator(color=PALETTE, thickness=width).annotate(scene, _detections(group, factor))
    prompts = [m for m in segs + quads if m.prompt_box is not None] if show_prompt_boxes else []
    if prompts:
        det = sv.Detections(xyxy=np.array([m.prompt_box for m in prompts], dtype=np.float32) * factor)
        corner = max(8, style.font_size)
        annotator = sv.BoxCornerAnnotator(
            color=PROMPT_BOX_COLOR, thickness=t + 1, corner_length=corner, color_lookup=sv.ColorLookup.INDEX
        )
        scene = annotator.annotate(scene, det)

    labelled = [(m, label_text(m, show_scores)) for m in marks]
    labelled = [(m, text) for m, text in labelled if text]
    if labelled:
        texts = [text for _, text in labelled]
        font_path = font_for(texts)
        sizes = label_sizes(texts, font_path, style.font_size, style.padding)
        anchors = np.array([m.xyxy for m, _ in labelled], dtype=np.float32).reshape(-1, 4) * factor
        placed = place_labels(anchors, sizes, size)
        # each label's rectangle is decided here; the annotator draws it at its TOP_LEFT anchor, which sits
        # at the rectangle's bottom-left corner (so a "box" of zero size there puts the label exactly in place)
        det = sv.Detections(xyxy=np.column_stack([placed[:, 0], placed[:, 3], placed[:, 0], placed[:, 3]]))
        det.class_id = np.array([m.class_id for m, _ in labelled], dtype=int)
        annotator = sv.RichLabelAnnotator(
            color=PALETTE,
            text_color=TEXT_PALETTE,
            font_path=font_path,
            font_size=style.font_size,
            text_padding=style.padding,
            text_position=sv.Position.TOP_LEFT,
            max_line_length=LABEL_LINE_LENGTH,
        )
        scene = annotator.annotate(scene, det, labels=texts)
    return Image.fromarray(np.ascontiguousarray(np.asarray(scene)[:, :, ::-1]))


#: labels longer than this many characters wrap onto more lines
LABEL_LINE_LENGTH = 48


#: SAM click markers: an object's click (green) and a click that takes a part away (red)
CLICK_COLOURS = {1: "#16a34a", 0: "#dc2626"}


def draw_clicks(picture: Image.Image, clicks: Sequence[tuple[float, float, int]], factor: int = 1) -> Image.Image:
    """Mark SAM click prompts (``(x, y, label)`` in image pixels) on a drawn picture scaled by ``factor``.

    A ring with a dot, the colour by label, sized for the picture so a click is visible at any size; a copy.
    """
    out = picture.copy()
    pen = ImageDraw.Draw(out)
    radius = max(5, round(min(out.size) / 90))
    for x, y, label in clicks:
        cx, cy = x * factor, y * factor
        colour = CLICK_COLOURS[1 if label else 0]
        pen.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline="white", width=max(2, radius // 3))
        pen.ellipse((cx - radius / 2, cy - radius / 2, cx + radius / 2, cy + radius / 2), fill=colour)
    return out


@lru_cache(maxsize=16)
def _font(font_path: str | None, font_size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(font_path, font_size) if font_path else ImageFont.load_default(font_size)


def label_sizes(texts: Sequence[str], font_path: str | None, font_size: int, padding: int) -> np.ndarray:
    """(N, 2) width and height of each label's background, measured as ``sv.RichLabelAnnotator`` draws it
    (its wrapping, the font's text boxes, ``padding`` around and between lines)."""
    from PIL import ImageDraw
    from supervision.annotators.utils import wrap_text

    font = _font(font_path, font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    out = []
    for text in texts:
        lines = wrap_text(text, LABEL_LINE_LENGTH)
        boxes = [measure.textbbox((0, 0), line, font=font) for line in lines]
        width = max(b[2] - b[0] for b in boxes)
        height = sum(b[3] - b[1] for b in boxes) + (len(lines) - 1) * padding
        out.append((int(width + 2 * padding), int(height + 2 * padding)))
    return np.array(out, dtype=np.float32).reshape(-1, 2)


def _overlaps(rect: np.ndarray, placed: list[np.ndarray]) -> bool:
    return any(rect[0] < p[2] and p[0] < rect[2] and rect[1] < p[3] and p[1] < rect[3] for p in placed)


def _inside(rect: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """Shift (never crop) a rectangle into the frame, top / left edge first (like ``sv``'s ``snap_boxes``)."""
    width, height = frame
    w, h = rect[2] - rect[0], rect[3] - rect[1]
    x = min(max(0.0, float(rect[0])), max(0.0, width - w))
    y = min(max(0.0, float(rect[1])), max(0.0, height - h))
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def place_labels(boxes: np.ndarray, sizes: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """Where each label goes: (N, 4) rectangles inside ``frame`` that do not overlap one another.

    Why not ``sv.RichLabelAnnotator(smart_position=True)``: it snaps labels into the frame and *then*
    spreads overlapping ones apart, so a spread label can leave the frame again (cut at the top edge),
    and it gives up after a number of rounds with labels still piled up ("#1 car" over "#1 turquoise…").
    Here each label, in order, takes the first free spot of: above its box's top-left corner, inside it
    at the top-left, below the box, inside at the bottom, then the same at the right-hand corners, each
    shifted into the frame; failing those, the nearest free row above or below in the same column, then
    any free spot on a grid over the picture. Only a picture too full to hold every label without
    overlap (hundreds of labels) keeps the first spot, overlapping.
    """
    width, height = frame
    placed: list[np.ndarray] = []
    for (x1, y1, x2, y2), (w, h) in zip(boxes.reshape(-1, 4), sizes.reshape(-1, 2), strict=True):
        candidates = [
            (x1, y1 - h), (x1, y1), (x1, y2), (x1, y2 - h),
            (x2 - w, y1 - h), (x2 - w, y1), (x2 - w, y2), (x2 - w, y2 - h),
        ]  # fmt: skip
        rects = [_inside(np.array([x, y, x + w, y + h], dtype=np.float32), frame) for x, y in candidates]
        choice = next((r for r in rects if not _overlaps(r, placed)), None)
        if choice is None:
            first = rects[0]
            step = max(1.0, float(h))
            rows = sorted(np.arange(0.0, max(1.0, height - h + 1), step), key=lambda y: abs(y - first[1]))
            column = (_inside(np.array([first[0], y, first[0] + w, y + h], dtype=np.float32), frame) for y in rows)
            choice = next((r for r in column if not _overlaps(r, placed)), None)
        if choice is None:
            grid = (
                _inside(np.array([x, y, x + w, y + h], dtype=np.float32), frame)
                for y in np.arange(0.0, max(1.0, height - h + 1), max(1.0, float(h)))
                for x in np.arange(0.0, max(1.0, width - w + 1), max(1.0, float(w) / 4))
            )
            choice = next((r for r in grid if not _overlaps(r, placed)), rects[0])
        placed.append(choice)
    return np.array(placed, dtype=np.float32).reshape(-1, 4)


def render_result(image: Image.Image, result: Any, **options: Any) -> Image.Image:
    """A ``FlorenceResult`` drawn on its image (the API's annotated image)."""
    return draw(image, marks_from_result(result), **options)


#: zlib level of :func:`save_png`: 1 is lossless like every level, several times faster than PIL's default 6 on
#: photos, and its files are a little larger (measured in benchmarks/bench_app_overhead.py)
PNG_COMPRESS_LEVEL = 1


def save_png(image: Image.Image, folder: str | Path, name: str = "result.png") -> str:
    """Write ``image`` as a lossless PNG under ``folder/<content hash>/name``; returns the file's path.

    Why not hand the PIL image to ``gr.Image(format="png")``: gradio encodes it at zlib level 6 and then
    hashes the bytes with sha256, most of the app's own time per request (issue 17). Written here at
    level 1 into the component's cache folder (``component.GRADIO_CACHE``), gradio serves the file as it
    is: no second encoding, no copy. Same pixels, a somewhat larger file. The folder is named by a
    blake2b digest of the bytes, so the same picture is one file.
    """
    with io.BytesIO() as buffer:
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        data = buffer.getvalue()
    target = Path(folder) / hashlib.blake2b(data, digest_size=16).hexdigest()
    target.mkdir(parents=True, exist_ok=True)
    path = target / name
    if not path.exists():
        staging = target / f".{name}.{os.getpid()}"
        staging.write_bytes(data)
        os.replace(staging, path)  # a concurrent request for the same picture never reads half a file
    return str(path)
