"""Coordinates: pixel boxes in, ``<loc_N>`` bins out, and back.

Florence-2 sees positions as 1000 bins per axis. A pixel ``x`` falls in bin
``floor(x / (width / 1000))`` and a bin is read back at its centre,
``(bin + 0.5) * width / 1000``. Quantisation itself is done by the processor's
own quantiser (``processor.post_processor.quantize``) so prompts match what the
model was trained on; this module validates user boxes and explains the mapping
for the teaching view. Pure functions only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from florence_ui.errors import BoxError

NUM_BINS = 1000
#: the last bin: Florence-2's vocabulary has ``<loc_0>`` … ``<loc_999>`` and nothing beyond
MAX_BIN = NUM_BINS - 1
LOC_RE = re.compile(r"<loc_(\d+)>")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class BoxFix:
    """A validated box and what was done to it, so the UI can say so."""

    box: Box
    notes: tuple[str, ...] = ()


#: pixel tolerance of the 1-px minimum (float sums such as 0.05 + 1 land an ulp either side)
_EPS = 1e-9


def validate_box(box: Sequence[float], image_size: tuple[int, int]) -> BoxFix:
    """Return a usable pixel box for a prompt, or raise :class:`BoxError`.

    Reversed corners are swapped, the box is clipped to the image, and a box
    that is zero-area after clipping is grown to at least one pixel (a click
    without a drag is still a valid, tiny region). A box entirely outside the
    image is an error: there is nothing to ask about. So is anything but 4
    finite numbers: NaN or ±inf mean the caller computed the box wrongly (an
    infinite corner would silently become the image edge), and a string such
    as ``"1234"`` is not 4 numbers even though it iterates as 4 digits.
    """
    message = f"A box must be 4 numbers [x1, y1, x2, y2], all finite, got {box!r}"
    if isinstance(box, str | bytes):
        raise BoxError(message)
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError, OverflowError) as exc:
        raise BoxError(message) from exc
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise BoxError(message)
    width, height = image_size
    if not (width >= 1 and height >= 1):  # also catches NaN sizes
        raise BoxError(f"A {width}x{height} image has no pixels to put a box on")
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
    # grown from the start corner, which moves only when the image edge stops the end (moving it by
    # "end - 1" otherwise would shift it by a rounding error: 0.05 + 1 - 1 != 0.05); an ulp short of 1 px is 1 px
    if cx2 - cx1 < 1 - _EPS:
        cx1, cx2 = (cx1, cx1 + 1) if cx1 + 1 <= width else (float(width) - 1, float(width))
        notes.append("widened to 1 px")
    if cy2 - cy1 < 1 - _EPS:
        cy1, cy2 = (cy1, cy1 + 1) if cy1 + 1 <= height else (float(height) - 1, float(height))
        notes.append("heightened to 1 px")
    return BoxFix((cx1, cy1, cx2, cy2), tuple(notes))


def loc_tokens(bins: Iterable[int]) -> str:
    """``[52, 332, 932, 774]`` → ``"<loc_52><loc_332><loc_932><loc_774>"``."""
    return "".join(f"<loc_{int(b)}>" for b in bins)


def clamp_bin(digits: str) -> int:
    """The digits of a ``<loc_N>`` as a bin in ``0..MAX_BIN``.

    The model can only emit ``<loc_0>`` … ``<loc_999>``, but text handed to
    :meth:`parse` (a hand-edited JSONL row, a pasted answer) can say
    ``<loc_1000>`` or ``<loc_99999999999999999999>``: unclamped, those become
    boxes far outside the image or overflow torch's int64 in the processor's
    dequantiser (and past 4300 digits overflow ``int()`` itself), so they are
    read as the last bin. Leading zeros are ignored.
    """
    significant = digits.lstrip("0") or "0"
    return MAX_BIN if len(significant) > len(str(MAX_BIN)) else min(int(significant), MAX_BIN)


def canonical_locs(text: str) -> str:
    """``text`` with every ``<loc_N>`` rewritten as an in-range bin (see :func:`clamp_bin`).

    Run before the processor's parser, so every layer after it (dequantiser,
    supervision, scoring, teaching view) only ever sees bins the model could emit.
    """
    return LOC_RE.sub(lambda m: f"<loc_{clamp_bin(m.group(1))}>", text)


def parse_loc_bins(text: str) -> list[int]:
    """All ``<loc_N>`` bins in a string, in order, clamped to ``0..MAX_BIN``."""
    return [clamp_bin(m) for m in LOC_RE.findall(text)]


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
