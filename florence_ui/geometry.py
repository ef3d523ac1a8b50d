"""Coordinates: pixel boxes in, ``<loc_N>`` bins out, and back.

Florence-2 sees positions as 1000 bins per axis. A pixel ``x`` falls in bin
``floor(x / (width / 1000))`` and a bin is read back at its centre,
``(bin + 0.5) * width / 1000``. Quantisation itself is done by the processor's
own quantiser (``processor.post_processor.quantize``) so prompts match what the
model was trained on; this module validates user boxes and explains the mapping
for the teaching view. Pure functions only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NUM_BINS = 1000
LOC_RE = re.compile(r"<loc_(\d+)>")

Box = tuple[float, float, float, float]


class BoxError(ValueError):
    """A prompt box that cannot be used (not 4 numbers, or outside the image)."""


@dataclass(frozen=True)
class BoxFix:
    """A validated box and what was done to it, so the UI can say so."""

    box: Box
    notes: tuple[str, ...] = ()


def validate_box(box: Sequence[float], image_size: tuple[int, int]) -> BoxFix:
    """Return a usable pixel box for a prompt, or raise :class:`BoxError`.

    Reversed corners are swapped, the box is clipped to the image, and a box
    that is zero-area after clipping is grown to at least one pixel (a click
    without a drag is still a valid, tiny region). A box entirely outside the
    image is an error: there is nothing to ask about.
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError) as exc:
        raise BoxError(f"A box must be 4 numbers [x1, y1, x2, y2], got {box!r}") from exc
    if len(values) != 4 or any(v != v for v in values):  # NaN check
        raise BoxError(f"A box must be 4 numbers [x1, y1, x2, y2], got {box!r}")
    width, height = image_size
    x1, y1, x2, y2 = values
    notes: list[str] = []
    if x1 > x2 or y1 > y2:
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        notes.append("corners swapped")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise BoxError(f"Box {values} lies outside the {width}x{height} image")
    cx1, cy1 = max(0.0, x1), max(0.0, y1)
    cx2, cy2 = min(float(width), x2), min(float(height), y2)
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
        notes.append("clipped to the image")
    if cx2 - cx1 < 1:
        cx2 = min(float(width), cx1 + 1)
        cx1 = cx2 - 1
        notes.append("widened to 1 px")
    if cy2 - cy1 < 1:
        cy2 = min(float(height), cy1 + 1)
        cy1 = cy2 - 1
        notes.append("heightened to 1 px")
    return BoxFix((cx1, cy1, cx2, cy2), tuple(notes))


def loc_tokens(bins: Iterable[int]) -> str:
    """``[52, 332, 932, 774]`` → ``"<loc_52><loc_332><loc_932><loc_774>"``."""
    return "".join(f"<loc_{int(b)}>" for b in bins)


def parse_loc_bins(text: str) -> list[int]:
    """All ``<loc_N>`` bins in a string, in order."""
    return [int(m) for m in LOC_RE.findall(text)]


def bin_to_pixel(bin_index: int, size: int) -> float:
    """The reference dequantisation: the centre of the bin, in pixels."""
    return (bin_index + 0.5) * size / NUM_BINS


def bins_to_xyxy(bins: Sequence[int], image_size: tuple[int, int]) -> Box:
    """Four bins (x1, y1, x2, y2) → pixel box, reference dequantisation."""
    width, height = image_size
    x1, y1, x2, y2 = bins
    return (
        bin_to_pixel(x1, width),
        bin_to_pixel(y1, height),
        bin_to_pixel(x2, width),
        bin_to_pixel(y2, height),
    )


def explain_bins(bins: Sequence[int], image_size: tuple[int, int]) -> list[dict[str, object]]:
    """One row per bin for the teaching view: token, axis, bin, pixel formula and value.

    Bins alternate x, y (boxes are x1 y1 x2 y2, polygons and quads are x y pairs).
    """
    width, height = image_size
    rows: list[dict[str, object]] = []
    for i, b in enumerate(bins):
        axis, size = ("x", width) if i % 2 == 0 else ("y", height)
        rows.append(
            {
                "token": f"<loc_{b}>",
                "axis": axis,
                "bin": int(b),
                "formula": f"({b} + 0.5) × {size} / {NUM_BINS}",
                "pixel": round(bin_to_pixel(int(b), size), 2),
            }
        )
    return rows
